// serveEcho({ mode: "line" }): line echo, exit/quit, the line limit, and the
// one-shot client against it.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import fc from "./_fast_check.ts";
import { echoOnce, serveEcho } from "../mod.ts";
import {
  captureLogs,
  concat,
  exchange,
  LineClient,
  localPeer,
  readAll,
} from "./_helpers.ts";

const logs = await captureLogs();
const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

engineTest(
  "line mode echoes each line as sent: CRLF, empty lines, any bytes",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, mode: "line" });
    const input = concat([
      bytes("plain\n\ncrlf\r\n\r\n"),
      new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x0a]), // not UTF-8
      bytes("last line, no newline"),
    ]);
    assert.deepEqual(await exchange(server.addr.port, [input]), input);
  },
);

engineTest(
  "line mode: a line cut into one-byte writes comes back once, whole",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, mode: "line" });
    await using client = await LineClient.connect(server.addr.port);
    for (const byte of bytes("tiny writes\r\n")) {
      await client.send(new Uint8Array([byte]));
    }
    await client.count(1);
    assert.deepEqual(client.bytes, bytes("tiny writes\r\n"));
  },
);

engineTest(
  "line mode: any chunking of any lines echoes the same bytes",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      mode: "line",
      maxLineBytes: 64,
    });
    const line = fc.string({ maxLength: 64, unit: "grapheme-ascii" })
      .filter((s) => !s.includes("\n") && s !== "exit" && s !== "quit")
      .map((s) => s + (s.length % 2 ? "\n" : "\r\n"));
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        async (lines, cuts) => {
          const input = bytes(lines.join(""));
          const points = [...new Set(cuts.map((c) => c % (input.length + 1)))]
            .sort((a, b) => a - b);
          const chunks = [...points, input.length].map((end, i, all) =>
            input.slice(i === 0 ? 0 : all[i - 1], end)
          ).filter((chunk) => chunk.length > 0);
          assert.deepEqual(await exchange(server.addr.port, chunks), input);
        },
      ),
      { numRuns: 40 },
    );
  },
);

engineTest(
  "line mode: exit or quit closes that connection after the lines before it",
  async (engine, t) => {
    logs.clear();
    await using server = serveEcho({ engine, port: 0, mode: "line" });
    const cases = [
      ["exit\n", "three\n"],
      ["quit\r\n", "three\n"],
      ["exit", ""], // the last line, with no newline
    ];
    for (const [command, after] of cases) {
      await t.step(JSON.stringify(command), async () => {
        const conn = await Deno.connect({ port: server.addr.port });
        // Everything in one write: what follows the command is never echoed.
        await conn.write(bytes(`one\ntwo\n${command}${after}`));
        if (after === "") await conn.closeWrite();
        assert.deepEqual(await readAll(conn), bytes("one\ntwo\n"));
        conn.close();
        const closed = await logs.closed(localPeer(conn));
        assert.equal(closed.properties.reason, "exit command");
      });
    }
    // The client's own choice, as chat's /quit: not an error.
    assert.equal(server.stats.closed.quitCommand, cases.length);
    assert.equal(server.stats.closed.error, 0);
    await t.step("only the exact word", async () => {
      const input = bytes("exit \n exit\nEXIT\nexited\n");
      assert.deepEqual(await exchange(server.addr.port, [input]), input);
    });
  },
);

engineTest(
  "line mode: a line at the limit is echoed, one byte over gets ERR and is closed",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({
      engine,
      port: 0,
      mode: "line",
      maxLineBytes: 10,
    });
    const port = server.addr.port;
    await using bystander = await LineClient.connect(port);

    const atLimit = bytes("0123456789\r\n0123456789\n0123456789");
    assert.deepEqual(await exchange(port, [atLimit]), atLimit);

    for (const over of ["ok\n0123456789X\nnever\n", "ok\n0123456789XYZ"]) {
      const conn = await Deno.connect({ port });
      const reading = readAll(conn);
      // The long line arrives in pieces, so the limit is enforced before its end.
      for (const piece of over.match(/.{1,4}/gs)!) {
        await conn.write(bytes(piece));
      }
      assert.equal(
        new TextDecoder().decode(await reading),
        "ok\nERR line too long (max 10 bytes)\n",
      );
      conn.close();
      const closed = await logs.closed(localPeer(conn));
      assert.equal(closed.properties.reason, "line too long");
    }

    // Everyone else is still served.
    await bystander.send("still here\n");
    assert.deepEqual(await bystander.count(1), ["still here"]);
  },
);

engineTest(
  "line mode: the one-shot echoOnce works against it",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, mode: "line" });
    assert.equal(await echoOnce("hi", { port: server.addr.port }), "hi");
    assert.equal(
      await echoOnce("a\r\nb\n", { port: server.addr.port }),
      "a\r\nb\n",
    );
  },
);
