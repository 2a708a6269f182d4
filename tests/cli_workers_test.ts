// server.ts --workers: through `deno task server` (which carries
// --unstable-net), and the one-line errors where workers cannot run.

import assert from "node:assert/strict";
import { LineClient } from "./_helpers.ts";
import { LOCK, runClient, SERVER, ServerProcess, Spawned } from "./_process.ts";

const decoder = new TextDecoder();

/** The server as `deno task server` runs it, without the task. */
const WITH_WORKERS: [string, ...string[]] = [
  Deno.execPath(),
  "run",
  LOCK,
  "--allow-net",
  "--allow-read=lib",
  "--unstable-net",
  SERVER,
];

Deno.test("deno task server --workers 2: a broadcast reaches both workers' clients; SIGTERM drains both", async () => {
  // setsid: the task and the server form their own process group.
  await using server = await ServerProcess.start(
    ["--workers", "2", "--mode", "broadcast", "--log-format", "json"],
    ["setsid", Deno.execPath(), "task", "server"],
  );
  const clients = await Promise.all(
    Array.from({ length: 20 }, () => LineClient.connect(server.port)),
  );
  try {
    // A client hears its own line once it is a member of the relay.
    await Promise.all(clients.map(async (c, i) => {
      await c.send(`ready ${i}\n`);
      await c.line(new RegExp(`^ready ${i}$`));
    }));
    await clients[0].send("hello everyone\n");
    for (const c of clients) await c.line(/^hello everyone$/);

    Deno.kill(-server.child.pid, "SIGTERM");
    for (const c of clients) {
      await c.closed;
      assert.equal(c.lines.at(-1), "[server] shutting down");
    }
    assert.equal((await server.status()).code, 0);
    // Every line but `deno task`'s own "Task server …" is a JSON record.
    const records = server.stderr.lines.filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const opened = records.filter((r) => r.message.startsWith("Opened"));
    assert.equal(opened.length, 20);
    const workers = new Set(opened.map((r) => r.properties.worker));
    assert.deepEqual([...workers].sort(), [0, 1]);
    const stopped = records.find((r) => r.message.startsWith("Stopped:"));
    assert.equal(stopped.properties.accepted, 20);
  } finally {
    await Promise.all(clients.map((c) => c[Symbol.asyncDispose]()));
  }
});

Deno.test("server --workers auto echoes like one server", async () => {
  await using server = await ServerProcess.start(
    ["--workers", "auto"],
    WITH_WORKERS,
  );
  const result = await runClient(["--port", String(server.port), "hi"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(decoder.decode(result.stdout), "hi\n");
  server.child.kill("SIGTERM");
  assert.equal((await server.status()).code, 0);
});

Deno.test("server --workers: where workers cannot run, one line and exit code 2", async (t) => {
  const cases: [string, string[], string[], RegExp][] = [
    [
      "without --unstable-net",
      ["--allow-net", "--allow-read=lib"],
      ["--workers", "2"],
      /^error: Invalid --workers: run Deno with --unstable-net \(SO_REUSEPORT is unstable in Deno\)$/,
    ],
    [
      "without read access to the worker module",
      ["--allow-net", "--unstable-net"],
      ["--workers", "2"],
      /^error: Invalid --workers: they need read access to \/.*\/lib\/workers\/worker\.ts \(--allow-read\)$/,
    ],
    [
      "--workers 0",
      ["--allow-net"],
      ["--workers", "0"],
      /^error: Invalid --workers: must be an integer from 1 to \d+ \(4 per core\) or auto, got 0 \(see --help\)$/,
    ],
    [
      "--workers 1000: more than 4 per core",
      ["--allow-net"],
      ["--workers", String(4 * navigator.hardwareConcurrency + 1)],
      /^error: Invalid --workers: must be an integer from 1 to \d+ \(4 per core\) or auto, got \d+ \(see --help\)$/,
    ],
    [
      "--workers many",
      ["--allow-net"],
      ["--workers", "many"],
      /^error: Invalid --workers: expected an integer, got 'many' \(see --help\)$/,
    ],
  ];
  for (const [name, permissions, args, message] of cases) {
    await t.step(name, async () => {
      await using server = new Spawned(Deno.execPath(), [
        "run",
        LOCK,
        ...permissions,
        SERVER,
        "--port",
        "0",
        ...args,
      ]);
      const status = await server.status();
      assert.equal(status.code, 2);
      assert.equal(server.stderr.lines.length, 1, server.stderr.text);
      assert.match(server.stderr.lines[0], message);
      assert.deepEqual(server.stdout.lines, []);
    });
  }
});

Deno.test("server --workers: a port another server holds is refused, exit 1; the first keeps every client", async () => {
  const command = WITH_WORKERS;
  await using first = await ServerProcess.start(
    ["--workers", "2", "--mode", "echo"],
    command,
  );
  for (const workers of ["2", "1"]) {
    await using second = new Spawned(command[0], [
      ...command.slice(1),
      "--port",
      String(first.port),
      "--workers",
      workers,
      "--mode",
      "line",
    ]);
    // Before the fix it listened too (SO_REUSEPORT), and never exited.
    const exited = second.status().then((s) => `exit ${s.code}`);
    const outcome = await Promise.race([
      exited,
      second.stdout.waitFor(/^Listening on /).then(
        () => "listening",
        () => exited,
      ),
    ]);
    assert.equal(outcome, "exit 1", second.stderr.text);
    assert.deepEqual(second.stdout.lines, []);
    assert.deepEqual(second.stderr.lines, [
      `error: Cannot listen on 127.0.0.1:${first.port}: Address already in use (os error 98)`,
    ]);
  }
  // Every connection still reaches the echo server: raw bytes, no line
  // handling ("exit" would close a line server's connection).
  for (let i = 0; i < 20; i++) {
    const result = await runClient(["--port", String(first.port), "exit"]);
    assert.equal(decoder.decode(result.stdout), "exit\n", result.stderr);
  }
  first.child.kill("SIGTERM");
  assert.equal((await first.status()).code, 0);
});
