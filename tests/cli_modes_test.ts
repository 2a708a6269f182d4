// The CLIs in the line modes: --mode flags, the --operator console and the
// interactive client, through spawned processes with piped stdin.

import assert from "node:assert/strict";
import { type Engine, engineTest } from "./_engines.ts";
import { serveEcho } from "../mod.ts";
import { LineClient } from "./_helpers.ts";
import {
  clientCommand,
  LOCK,
  runClient,
  SERVER,
  ServerProcess,
  Spawned,
  writeStdin,
} from "./_process.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The server CLI on `engine`, with the permissions either needs. */
function startServer(
  engine: Engine,
  args: string[],
  options: Deno.CommandOptions = {},
): Promise<ServerProcess> {
  return ServerProcess.start([...args, "--engine", engine], [
    Deno.execPath(),
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-ffi",
    SERVER,
  ], options);
}

engineTest(
  "server --mode line: the one-shot client and client - get their lines back",
  async (engine) => {
    await using server = await startServer(engine, ["--mode", "line"]);
    const port = String(server.port);
    const hi = await runClient(["--port", port, "hi"]);
    assert.equal(hi.code, 0, hi.stderr);
    assert.equal(decoder.decode(hi.stdout), "hi\n");
    const piped = await runClient(
      ["--port", port, "-"],
      encoder.encode("a\nb"),
    );
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(decoder.decode(piped.stdout), "a\nb");
  },
);

engineTest(
  "server --operator sends stdin lines to every client, then drains on SIGTERM",
  async (engine) => {
    await using server = await startServer(
      engine,
      ["--mode", "chat", "--operator"],
      { stdin: "piped" },
    );
    await using alice = await LineClient.connect(server.port);
    await using bob = await LineClient.connect(server.port);
    await alice.line(/^\* user2 joined lobby$/);
    await bob.line(/^\* user2 joined lobby$/);

    await writeStdin(server.child, "hello from the operator\n");
    for (const c of [alice, bob]) {
      await c.line(/^\[server\] hello from the operator$/);
    }
    await writeStdin(server.child, new Uint8Array([0xff, 0x0a]));
    await server.stderr.waitFor(
      /Operator line not sent: it is not valid UTF-8/,
    );
    await server.child.stdin.close();
    await server.stderr.waitFor(/Operator console closed: stdin ended/);

    server.child.kill("SIGTERM");
    for (const c of [alice, bob]) {
      await c.closed;
      assert.equal(c.lines.at(-1), "[server] shutting down");
    }
    assert.equal((await server.status()).code, 0);
  },
);

engineTest(
  "server --operator in echo mode sends the raw line",
  async (engine) => {
    await using server = await startServer(engine, ["--operator"], {
      stdin: "piped",
    });
    await using client = await LineClient.connect(server.port);
    await client.send("echoed\n");
    await client.count(1);
    await writeStdin(server.child, "notice\n");
    assert.deepEqual(await client.count(2), ["echoed", "notice"]);
    await server.child.stdin.close();
  },
);

Deno.test("server rejects bad mode flags with one line and exit code 2", async (t) => {
  const cases: [string[], string][] = [
    [
      ["--mode", "nope"],
      "Invalid --mode: expected one of echo, line, broadcast, chat, info, proxy, got 'nope'",
    ],
    [
      ["--max-line-bytes", "0"],
      "Invalid --max-line-bytes: must be an integer from 1 to 16777216, got 0",
    ],
    [
      ["--channel-bytes", "1000"],
      "Invalid --channel-bytes: must be an integer from 16652 to 9007199254740991, got 1000",
    ],
    [
      ["--history", "51"],
      "Invalid --history: must be an integer from 0 to 50, got 51",
    ],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      await using server = new Spawned(Deno.execPath(), [
        "run",
        LOCK,
        "--allow-net",
        new URL("../server.ts", import.meta.url).pathname,
        "--port",
        "0",
        ...args,
      ]);
      const status = await server.status();
      assert.equal(status.code, 2);
      assert.deepEqual(server.stderr.lines, [
        `error: ${message} (see --help)`,
      ]);
      assert.deepEqual(server.stdout.lines, []);
    });
  }
});

Deno.test("client --interactive chats, and ends cleanly at the end of its input", async () => {
  await using server = serveEcho({ port: 0, mode: "chat" });
  const port = String(server.addr.port);
  await using watcher = await LineClient.connect(server.addr.port);
  await watcher.line(/^\* user1 joined lobby$/);
  const result = await runClient(
    ["--port", port, "--interactive"],
    encoder.encode("/nick zed\nhello there\n"),
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, "");
  const lines = decoder.decode(result.stdout).split("\n");
  assert.ok(lines.includes("* user2 is now zed"), lines.join("\n"));
  assert.ok(lines.includes("<zed> hello there"), lines.join("\n"));
  await watcher.line(/^<zed> hello there$/);
  await watcher.line(/^\* zed left lobby$/);
});

Deno.test("client -i works against every server mode", async (t) => {
  const expected = {
    echo: ["ping", "pong"],
    line: ["ping", "pong"],
    broadcast: ["ping", "pong"],
    chat: ["<user1> ping", "<user1> pong"],
  };
  for (const [mode, lines] of Object.entries(expected)) {
    await t.step(mode, async () => {
      await using server = serveEcho({
        port: 0,
        mode: mode as keyof typeof expected,
      });
      const result = await runClient(
        ["--port", String(server.addr.port), "-i"],
        encoder.encode("ping\npong"),
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, "");
      const out = decoder.decode(result.stdout).split("\n");
      assert.deepEqual(
        out.filter((l) => /ping|pong/.test(l)),
        lines,
      );
    });
  }
});

Deno.test("client -i: a line 'exit' is not sent and ends the session", async () => {
  await using server = serveEcho({ port: 0, mode: "line" });
  const result = await runClient(
    ["--port", String(server.addr.port), "-i"],
    encoder.encode("one\nexit\ntwo\n"),
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(decoder.decode(result.stdout), "one\n");
  assert.equal(server.stats.bytesIn, 4);
});

Deno.test("client -i: the server closing first ends it with a notice, stdin still open", async () => {
  await using server = serveEcho({ port: 0, mode: "line" });
  const [command, args] = clientCommand([
    "--port",
    String(server.addr.port),
    "-i",
  ]);
  await using client = new Spawned(command, args, { stdin: "piped" });
  await writeStdin(client.child, "bye now\nquit\n");
  const status = await client.status();
  assert.equal(status.code, 0);
  assert.deepEqual(client.stdout.lines, ["bye now"]);
  assert.deepEqual(client.stderr.lines, ["Connection closed by server"]);
  await client.child.stdin.close();
});

Deno.test("client -i: usage and connection errors are one line", async () => {
  const usage = await runClient(["-i", "hi"]);
  assert.equal(usage.code, 2);
  assert.equal(
    usage.stderr,
    "error: Unexpected MESSAGE with --interactive: type the lines instead (see --help)\n",
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const refused = await runClient(
    ["--port", String(port), "-i"],
    encoder.encode("x\n"),
  );
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    new RegExp(
      `^error: Session with 127\\.0\\.0\\.1:${port} failed: Connection refused[^\\n]*\\n$`,
    ),
  );
});
