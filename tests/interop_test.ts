// Interop with peers nobody here wrote: netcat-openbsd and socat as clients of
// our server, socat running `cat` and `nc -l` as servers for our clients, and
// a real terminal (script(1)) for the interactive client.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { echoOnce, echoStream, serveEcho } from "../mod.ts";
import { concat, pseudoRandomBytes } from "./_helpers.ts";
import {
  clientCommand,
  onTerminal,
  run,
  runClient,
  Spawned,
  writeStdin,
} from "./_process.ts";

const encoder = new TextEncoder();

const PAYLOAD = pseudoRandomBytes(1024 * 1024 + 7, 42);

engineTest(
  "netcat-openbsd gets its stdin echoed back exactly",
  async (engine, t) => {
    await using server = serveEcho({ engine, port: 0 });
    const port = String(server.addr.port);
    for (
      const [name, input] of [["1 MiB binary", PAYLOAD], [
        "empty",
        new Uint8Array(),
      ]] as const
    ) {
      await t.step(name, async () => {
        // -N: shut down the socket's write side at EOF on stdin (a half-close).
        const result = await run("nc", ["-N", "127.0.0.1", port], input);
        assert.equal(result.code, 0, result.stderr);
        assert.deepEqual(result.stdout, input);
      });
    }
    assert.equal(server.stats.bytesOut, PAYLOAD.length);
  },
);

engineTest("socat gets its stdin echoed back exactly", async (engine) => {
  await using server = serveEcho({ engine, port: 0 });
  const result = await run(
    "socat",
    ["-t", "30", "-", `TCP:127.0.0.1:${server.addr.port}`],
    PAYLOAD,
  );
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.stdout, PAYLOAD);
});

engineTest(
  "parallel nc clients are each echoed their own bytes",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0 });
    const port = String(server.addr.port);
    const inputs = Array.from(
      { length: 20 },
      (_, i) => pseudoRandomBytes(50_000 + i, i + 5),
    );
    const results = await Promise.all(
      inputs.map((input) => run("nc", ["-N", "127.0.0.1", port], input)),
    );
    results.forEach((result, i) => assert.deepEqual(result.stdout, inputs[i]));
  },
);

/** socat listening on 127.0.0.1, port 0, running `cat` for each client. */
async function socatCat(): Promise<{ port: number; process: Spawned }> {
  const process = new Spawned("socat", [
    "-d",
    "-d",
    "TCP-LISTEN:0,bind=127.0.0.1,fork,reuseaddr",
    "EXEC:cat",
  ]);
  const line = await process.stderr.waitFor(
    /listening on AF=2 127\.0\.0\.1:\d+/,
  );
  return { port: Number(line.match(/:(\d+)$/)![1]), process };
}

Deno.test("our client CLI and library work against socat running cat", async (t) => {
  const { port, process } = await socatCat();
  await using _ = process;
  await t.step("client CLI with a message", async () => {
    const result = await runClient(["--port", String(port), "hi"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(new TextDecoder().decode(result.stdout), "hi\n");
  });
  await t.step("client CLI with binary stdin", async () => {
    const result = await runClient(["--port", String(port), "-"], PAYLOAD);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, PAYLOAD);
  });
  await t.step("echoOnce and echoStream", async () => {
    assert.equal(await echoOnce("héllo", { port }), "héllo");
    const chunks = [PAYLOAD.subarray(0, 1000), PAYLOAD.subarray(1000)];
    const echoed = await new Response(echoStream(chunks, { port })).bytes();
    assert.deepEqual(echoed, concat(chunks));
  });
});

engineTest("netcat-openbsd clients chat through the server", async (engine) => {
  await using server = serveEcho({ engine, port: 0, mode: "chat" });
  const port = String(server.addr.port);
  const nc = () =>
    new Spawned("nc", ["-N", "127.0.0.1", port], { stdin: "piped" });
  await using ann = nc();
  await ann.stdout.waitFor(/^\* user1 joined lobby$/);
  await using ben = nc();
  await ben.stdout.waitFor(/^\* user2 joined lobby$/);
  await writeStdin(ann.child, "/nick ann\nhi ben\n");
  await ben.stdout.waitFor(/^<ann> hi ben$/);
  await writeStdin(ben.child, "hi ann\n");
  await ann.stdout.waitFor(/^<user2> hi ann$/);
  // EOF on nc's stdin half-closes; the server then says goodbye and closes.
  await ben.child.stdin.close();
  await ann.stdout.waitFor(/^\* user2 left lobby$/);
  assert.equal((await ben.status()).code, 0);
  await ann.child.stdin.close();
  assert.equal((await ann.status()).code, 0);
  assert.deepEqual(ben.stdout.lines.slice(-2), [
    "<ann> hi ben",
    "<user2> hi ann",
  ]);
});

Deno.test("the interactive client talks to nc -l both ways", async () => {
  await using listener = new Spawned(
    "nc",
    ["-N", "-v", "-l", "127.0.0.1", "0"],
    { stdin: "piped" },
  );
  const port = (await listener.stderr.waitFor(/^Listening on /)).split(" ").at(
    -1,
  )!;
  const [command, args] = clientCommand(["--port", port, "--interactive"]);
  await using client = new Spawned(command, args, { stdin: "piped" });
  await writeStdin(client.child, "from our client\n");
  await listener.stdout.waitFor(/^from our client$/);
  await writeStdin(listener.child, "from nc\n");
  await client.stdout.waitFor(/^from nc$/);
  // Ctrl+D on our side half-closes; nc -l, at EOF from the network, exits
  // and so closes its side: our client ends without a notice.
  await client.child.stdin.close();
  const status = await client.status();
  assert.equal(status.code, 0, client.stderr.text);
  assert.equal(client.stderr.text, "");
  assert.equal((await listener.status()).code, 0);
  await listener.child.stdin.close().catch(() => {});
});

Deno.test("client with no message on a terminal is interactive (script(1) pty)", async () => {
  await using server = serveEcho({ port: 0, mode: "line" });
  const terminal = onTerminal(
    ...clientCommand(["--port", String(server.addr.port)]),
  );
  // The client's stdin is a terminal; \x04 is Ctrl+D.
  const result = await run(
    terminal.command,
    terminal.args,
    encoder.encode("typed line\n\x04"),
    undefined,
    terminal.env,
  );
  assert.equal(result.code, 0, result.stderr);
  // The terminal echoes what was typed; the server's echo follows.
  assert.equal(
    new TextDecoder().decode(result.stdout),
    "typed line\r\ntyped line\r\n",
  );
});

Deno.test("interactive client: control sequences print as U+FFFD on a terminal, as sent through a pipe", async () => {
  await using server = serveEcho({ port: 0, mode: "line" });
  const port = String(server.addr.port);
  const typed = "\x1b[2Jcleared\x07bell\x00nul\ttab";
  // Through a pipe: every byte as the server sent it.
  const piped = await runClient(
    ["--port", port, "--interactive"],
    encoder.encode(`${typed}\n`),
  );
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(new TextDecoder().decode(piped.stdout), `${typed}\n`);
  // On a terminal (script(1)'s pty): nothing reaches it raw. The terminal's
  // own echo of the typed line shows ESC as ^[ and BEL as ^G.
  const terminal = onTerminal(...clientCommand(["--port", port]));
  const result = await run(
    terminal.command,
    terminal.args,
    encoder.encode(`${typed}\n\x04`),
    undefined,
    terminal.env,
  );
  assert.equal(result.code, 0, result.stderr);
  const shown = new TextDecoder().decode(result.stdout);
  const R = "\uFFFD";
  assert.ok(
    shown.endsWith(`${R}[2Jcleared${R}bell${R}nul\ttab\r\n`),
    JSON.stringify(shown),
  );
  // deno-lint-ignore no-control-regex -- no control may reach the terminal
  assert.ok(!/[\x00\x07\x1b]/.test(shown), JSON.stringify(shown));
});
