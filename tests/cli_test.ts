import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };
import { echoOnce } from "../mod.ts";
import { limit, timeout, wait } from "../lib/cli/flags.ts";
import { SERVER_FLAGS, SERVER_GROUPS } from "../lib/cli/server_flags.ts";
import { CLIENT_FLAGS, CLIENT_GROUPS } from "../lib/cli/client_flags.ts";
import { type Engine, ENGINES } from "./_engines.ts";
import {
  pseudoRandomBytes,
  readAll,
  readExactly,
  writeAll,
} from "./_helpers.ts";
import {
  assertUsageErrors,
  CLIENT,
  LOCK,
  ROOT,
  run,
  runClient,
  SERVER,
  ServerProcess,
} from "./_process.ts";

const decoder = new TextDecoder();

/** Opens a connection and completes one round trip on it. */
async function openEchoing(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ port });
  await writeAll(conn, new Uint8Array([42]));
  assert.deepEqual(await readExactly(conn, 1), new Uint8Array([42]));
  return conn;
}

Deno.test("server prints one listening line and echoes for the client CLI", async () => {
  await using server = await ServerProcess.start();
  assert.match(server.stdout.lines[0], /^Listening on 127\.0\.0\.1:\d+$/);
  assert.notEqual(server.port, 0);

  const hi = await runClient(["--port", String(server.port), "hi"]);
  assert.equal(hi.code, 0, hi.stderr);
  assert.equal(decoder.decode(hi.stdout), "hi\n");
  assert.equal(hi.stderr, "");

  const words = await runClient(["--port", String(server.port), "a", "b  c"]);
  assert.equal(decoder.decode(words.stdout), "a b  c\n");

  await server.stderr.waitFor(
    /Closed 127\.0\.0\.1:\d+ after \d+ ms: 6 bytes in, 6 bytes out \(closed by client\)/,
  );
  server.child.kill("SIGTERM");
  const status = await server.status();
  assert.equal(status.code, 0);
  assert.deepEqual(server.stdout.lines, [
    `Listening on 127.0.0.1:${server.port}`,
  ]);
  assert.match(
    server.stderr.text,
    /\[INF\] tcp-echo·server: Opened 127\.0\.0\.1:\d+ \(1 open\)/,
  );
  assert.match(server.stderr.text, /2 bytes in, 2 bytes out/);
});

Deno.test("client - sends stdin raw and writes the echo byte for byte", async () => {
  await using server = await ServerProcess.start(["--log-level", "error"]);
  const all = new Uint8Array(256 * 4096).map((_, i) => i % 256);
  for (
    const input of [
      all,
      new Uint8Array(),
      new TextEncoder().encode("no newline"),
    ]
  ) {
    const result = await runClient(["--port", String(server.port), "-"], input);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, input);
    assert.equal(result.stderr, "");
  }
});

Deno.test("client reports a refused connection in one line naming the address", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const result = await runClient(["--port", String(port), "hi"]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout.length, 0);
  assert.equal(
    result.stderr,
    `error: Echo via 127.0.0.1:${port} failed: Connection refused (os error 111)\n`,
  );
});

Deno.test("client reports a timeout and a short echo with exit code 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(listener.addr.port);
  const silent = runClient([
    "--port",
    port,
    "--timeout",
    "200",
    "hello",
  ]);
  using conn = await listener.accept();
  const timedOut = await silent;
  assert.equal(timedOut.code, 1);
  assert.equal(
    timedOut.stderr,
    `error: Echo via 127.0.0.1:${port} failed: Timed out after 200 ms waiting for 5 more echoed bytes\n`,
  );

  const short = runClient(["--port", port, "hello"]);
  using conn2 = await listener.accept();
  const received = await readAll(conn2);
  await writeAll(conn2, received.subarray(0, 3));
  conn2.close();
  const result = await short;
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `error: Echo via 127.0.0.1:${port} failed: Echo is short: the server closed after 3 of 5 bytes\n`,
  );
  conn.close();
  listener.close();
});

Deno.test("client usage errors exit 2 with one line", async () => {
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", CLIENT],
    [
      [["--bogus", "x"], "Unknown option '--bogus'"],
      [
        [],
        "Missing MESSAGE: give the text to send, - for stdin, or --interactive",
      ],
      [
        ["--port", "0", "x"],
        "Invalid --port: must be an integer from 1 to 65535, got 0",
      ],
      [
        ["--port", "http", "x"],
        "Invalid --port: expected an integer, got 'http'",
      ],
      [
        ["--timeout=-5", "x"],
        "Invalid --timeout: must be a whole number of milliseconds from 0 to 2147483647, got -5",
      ],
      [
        ["--timeout", "soon", "x"],
        "Invalid --timeout: expected an integer, got 'soon'",
      ],
      [
        ["--log-level", "loud", "x"],
        "Invalid --log-level: expected one of trace, debug, info, warning (or warn), error (or err) or fatal, got 'loud'",
      ],
    ],
  );
  // Every bad value of a load test is a usage error before it connects
  // (port 1 would refuse it: exit 1), with the client task's permissions.
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "-A", CLIENT],
    [
      [
        ["--port", "1", "--size", "0"],
        "Invalid --size: must be a positive integer, got 0",
      ],
      [
        ["--port", "1", "--count", "0"],
        "Invalid --count: must be a positive number, got 0",
      ],
      [
        ["--port", "1", "--count", "1", "--plot", "/nonexistent/x.svg"],
        "Invalid --plot: cannot write it (no folder /nonexistent), got '/nonexistent/x.svg'",
      ],
      [
        ["--port", "1", "--count", "1", "--plot", "x.png"],
        "Invalid --plot: expected a file name ending in .svg, got 'x.png'",
      ],
      [
        ["--port", "1", "--count", "1", "--histogram", "/tmp"],
        "Invalid --histogram: cannot write it (a folder), got '/tmp'",
      ],
    ],
  );
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", CLIENT],
    [
      [
        ["--port", "1", "--count", "1", "--plot", "x.svg"],
        "Invalid --plot: cannot write it (no write permission: --allow-write), got 'x.svg'",
      ],
      [["--hostname", "", "x"], "Invalid --hostname: empty, got ''"],
      [
        ["--timeout", "2147483648", "x"],
        "Invalid --timeout: must be a whole number of milliseconds from 0 to 2147483647, got 2147483648",
      ],
      [["--message", "a", "b"], "Give MESSAGE or --message, not both"],
      [
        ["--server-port", "1", "--port", "2", "x"],
        "Give --port or --server-port, not both",
      ],
    ],
  );
});

Deno.test("server usage and runtime errors exit 2 and 1 with one line", async () => {
  await using busy = await ServerProcess.start(["--log-level", "error"]);
  for (
    const [args, code, pattern] of [
      [["--bogus"], 2, /^error: Unknown option '--bogus' \(see --help\)$/],
      [["extra"], 2, /^error: Unexpected argument 'extra'/],
      [
        ["--port", "65536"],
        2,
        /^error: Invalid --port: must be an integer from 0 to 65535, got 65536 \(see --help\)$/,
      ],
      [
        ["--max-connections", "0"],
        2,
        /^error: Invalid --max-connections: expected a positive integer or unlimited, got '0'/,
      ],
      [
        ["--max-connections-per-ip", "Infinity"],
        2,
        /^error: Invalid --max-connections-per-ip: expected a positive integer or unlimited, got 'Infinity'/,
      ],
      [
        ["--connect-rate", "0"],
        2,
        /^error: Invalid --connect-rate: expected a positive integer or unlimited, got '0'/,
      ],
      [
        ["--idle-timeout", "1.5"],
        2,
        /^error: Invalid --idle-timeout: expected an integer/,
      ],
      [
        ["--grace-period", "soon"],
        2,
        /^error: Invalid --grace-period: expected an integer/,
      ],
      [
        ["--log-level", "loud"],
        2,
        /^error: Invalid --log-level: expected one of trace, debug, info, warning \(or warn\), error \(or err\) or fatal, got 'loud'/,
      ],
      [
        ["--log-format", "xml"],
        2,
        /^error: Invalid --log-format: expected one of pretty, json/,
      ],
      [
        ["--port", String(busy.port)],
        1,
        new RegExp(
          `^error: Cannot listen on 127\\.0\\.0\\.1:${busy.port}: Address already in use \\(os error 98\\)$`,
        ),
      ],
      [
        ["--hostname", "no-such-host.invalid"],
        1,
        /^error: Cannot listen on no-such-host\.invalid:9000: failed to lookup address information/,
      ],
      [
        ["--hostname", "192.0.2.1", "--port", "0"],
        1,
        /^error: Cannot listen on 192\.0\.2\.1:0: /,
      ],
    ] as const
  ) {
    const result = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      SERVER,
      ...args,
    ]);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0], pattern);
    assert.equal(result.stdout.length, 0);
  }
});

/** The server CLI with `engine`, and the permissions that engine needs. */
function serverCommand(engine: Engine): [string, ...string[]] {
  return engine === "native"
    ? [
      Deno.execPath(),
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      "--allow-ffi",
      SERVER,
      "--engine",
      "native",
    ]
    : [Deno.execPath(), "run", LOCK, "--allow-net", SERVER];
}

Deno.test("--help and --version document the flags and exit codes", async () => {
  for (
    const [script, flags] of [
      [SERVER, [
        "--hostname",
        "--port",
        "--max-connections",
        "--idle-timeout",
        "--grace-period",
        "--log-level",
        "--log-format",
        "--help",
        "--version",
      ]],
      [CLIENT, ["--hostname", "--port", "--timeout", "--help", "--version"]],
    ] as const
  ) {
    const help = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      script,
      "--help",
    ]);
    const text = decoder.decode(help.stdout);
    assert.equal(help.code, 0);
    for (const flag of flags) {
      assert.ok(text.includes(flag), `${script} --help lacks ${flag}`);
    }
    assert.match(text, /Exit codes:/);
    assert.match(text, /\nExamples:\n/);
    assert.match(text, /\nMore options: --help all, or --help TOPIC/);
    assert.ok(text.split("\n").length <= 80, "plain --help is short");
    const version = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      script,
      "-V",
    ]);
    assert.equal(decoder.decode(version.stdout), `${denoJson.version}\n`);
  }
});

Deno.test("--help all lists every flag by group, --help TOPIC one group, a bad topic is exit 2", async () => {
  for (
    const [script, table, groups] of [
      [SERVER, SERVER_FLAGS, SERVER_GROUPS],
      [CLIENT, CLIENT_FLAGS, CLIENT_GROUPS],
    ] as const
  ) {
    const help = (args: string[]) =>
      run(Deno.execPath(), ["run", LOCK, "--allow-net", script, ...args]);
    const all = decoder.decode((await help(["--help", "all"])).stdout);
    const flags: Record<string, { group?: string }> = table;
    for (const [name, flag] of Object.entries(flags)) {
      assert.match(all, new RegExp(`\\n  (-\\w, )?--${name}(?=[ \\n])`), name);
      assert.ok(flag.group !== undefined && flag.group in groups, name);
    }
    for (const [topic, group] of Object.entries(groups)) {
      const one = await help([`--help=${topic}`]);
      assert.equal(one.code, 0);
      const text = decoder.decode(one.stdout);
      assert.ok(text.startsWith(`${group.title}:\n`), topic);
      for (const [name, flag] of Object.entries(flags)) {
        const listed = new RegExp(`\\n  (-\\w, )?--${name}(?=[ \\n])`).test(
          text,
        );
        assert.equal(listed, flag.group === topic, `${topic}: --${name}`);
      }
    }
    const bad = await help(["--help", "nope"]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /^error: Unknown help topic 'nope': give all, or one of /,
    );
  }
});

Deno.test("server flags reach the library: max connections and idle timeout", async () => {
  await using server = await ServerProcess.start([
    "--max-connections",
    "1",
    "--idle-timeout",
    "300",
  ]);
  using first = await openEchoing(server.port);
  using second = await Deno.connect({ port: server.port });
  const rejected = await second.read(new Uint8Array(1)).catch(() => null);
  assert.equal(rejected, null);
  await server.stderr.waitFor(
    /Rejected 127\.0\.0\.1:\d+: 1 connection open, the maximum is 1/,
  );
  assert.equal(await first.read(new Uint8Array(1)), null);
  await server.stderr.waitFor(/\(idle timeout\)$/);
});

Deno.test("every limit that can be off takes unlimited, and --log-level takes warn", async () => {
  assert.equal(limit("unlimited"), Infinity);
  assert.equal(limit("7"), 7);
  assert.equal(timeout("unlimited"), 0);
  assert.equal(wait("unlimited"), Infinity);
  await using server = await ServerProcess.start([
    ...["--max-connections", "unlimited", "--max-connections-per-ip"],
    ...["unlimited", "--connect-rate", "unlimited", "--max-bytes-per-second"],
    ...["unlimited", "--idle-timeout", "unlimited", "--grace-period"],
    ...["unlimited", "--udp", "--udp-rate", "unlimited", "--log-level"],
    "warn",
  ], [Deno.execPath(), "run", LOCK, "--allow-net", "--unstable-net", SERVER]);
  assert.equal(await echoOnce("free", { port: server.port }), "free");
  const client = await runClient([
    ...["--port", String(server.port), "--timeout", "unlimited", "x"],
  ]);
  assert.equal(client.code, 0, client.stderr);
  const load = await runClient([
    ...["--port", String(server.port), "--rate", "unlimited", "--count"],
    ...["200", "--json"],
  ]);
  assert.equal(load.code, 0, load.stderr);
  assert.equal(
    JSON.parse(new TextDecoder().decode(load.stdout)).roundTrips,
    200,
  );
  server.child.kill("SIGTERM");
  assert.equal((await server.status()).code, 0);
  // At warn, none of the info records (Opened, Closed, Stopped).
  assert.deepEqual(server.stderr.lines, []);
});

Deno.test("server logs JSON lines with --log-format json", async () => {
  await using server = await ServerProcess.start(["--log-format", "json"]);
  assert.equal(await echoOnce("json", { port: server.port }), "json");
  await server.stderr.waitFor(/"Closed /);
  server.child.kill("SIGTERM");
  assert.equal((await server.status()).code, 0);
  const records = server.stderr.lines.map((line) => JSON.parse(line));
  const closed = records.find((r) => r.message.startsWith("Closed "));
  // The message as the text logs show it; the values in properties.
  assert.match(
    closed.message,
    /^Closed 127\.0\.0\.1:\d+ after \d+ ms: 4 bytes in, 4 bytes out \(closed by client\)$/,
  );
  assert.match(closed.properties.peer, /^127\.0\.0\.1:\d+$/);
  assert.equal(closed.level, "INFO");
  assert.deepEqual(closed.logger, "tcp-echo.server");
  assert.equal(closed.properties.bytesIn, 4);
  assert.equal(closed.properties.bytesOut, 4);
  assert.equal(closed.properties.reason, "closed by client");
});

Deno.test("SIGINT drains: new connections refused, open ones served, exit 0", async () => {
  await using server = await ServerProcess.start([
    "--log-level",
    "debug",
    "--grace-period",
    "60000",
  ]);
  using conn = await openEchoing(server.port);
  // One Ctrl+C reaches the server as two SIGINTs within milliseconds.
  server.child.kill("SIGINT");
  server.child.kill("SIGINT");
  await server.stderr.waitFor(/Stopped accepting on /);
  await assert.rejects(
    Deno.connect({ port: server.port }),
    Deno.errors.ConnectionRefused,
  );
  await writeAll(conn, new Uint8Array([1, 2, 3]));
  assert.deepEqual(await readExactly(conn, 3), new Uint8Array([1, 2, 3]));
  await conn.closeWrite();
  assert.equal(await conn.read(new Uint8Array(1)), null);
  const status = await server.status();
  assert.equal(status.code, 0, server.stderr.text);
  assert.doesNotMatch(server.stderr.text, /again: stopping now/);
});

Deno.test("SIGTERM closes what is still open when the grace period ends", async () => {
  await using server = await ServerProcess.start(["--grace-period", "200"]);
  using conn = await openEchoing(server.port);
  server.child.kill("SIGTERM");
  assert.equal(await conn.read(new Uint8Array(1)), null);
  assert.equal((await server.status()).code, 0);
  assert.match(server.stderr.text, /\(grace period over\)/);
});

Deno.test("a second Ctrl+C later stops at once with exit code 130", async () => {
  await using server = await ServerProcess.start(["--grace-period", "60000"]);
  using conn = await openEchoing(server.port);
  server.child.kill("SIGINT");
  await server.stderr.waitFor(/Received SIGINT: shutting down/);
  // A separate press comes well after the first; time is the subject here.
  await new Promise((resolve) => setTimeout(resolve, 400));
  server.child.kill("SIGINT");
  const end = await conn.read(new Uint8Array(1)).catch(() => null);
  assert.equal(end, null);
  assert.equal((await server.status()).code, 130);
  assert.match(server.stderr.text, /Received SIGINT again: stopping now/);
  assert.match(server.stderr.text, /\(server stopped\)/);
});

Deno.test("Ctrl+C on `deno task server` (SIGINT to the process group) drains", async () => {
  // setsid makes the task its own process group, as a terminal would.
  await using server = await ServerProcess.start([], [
    "setsid",
    Deno.execPath(),
    "task",
    "server",
  ]);
  using conn = await openEchoing(server.port);
  Deno.kill(-server.child.pid, "SIGINT");
  await server.stderr.waitFor(/Received SIGINT: shutting down/);
  await writeAll(conn, new Uint8Array([7]));
  assert.deepEqual(await readExactly(conn, 1), new Uint8Array([7]));
  await conn.closeWrite();
  assert.equal(await conn.read(new Uint8Array(1)), null);
  await server.stderr.waitFor(/Stopped: /);
  await server.status();
  assert.doesNotMatch(server.stderr.text, /again: stopping now/);
  assert.match(server.stderr.text, /\(closed by client\)/);
});

for (const engine of ENGINES) {
  Deno.test(`accept failures (too many open files) are logged and retried [${engine}]`, async () => {
    // About 25 descriptors are Deno's own: 40 leaves room for a few clients.
    await using server = await ServerProcess.start(["--log-level", "warning"], [
      "bash",
      "-c",
      `ulimit -n 40 && exec "$0" "$@"`,
      ...serverCommand(engine),
    ]);
    const conns: Deno.TcpConn[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        conns.push(await Deno.connect({ port: server.port }));
      }
      await server.stderr.waitFor(
        /Accept failed, retrying in \d+ ms: .*(Too many open files|os error 24)/,
      );
    } finally {
      for (const conn of conns) conn.close();
    }
    assert.equal(
      await echoOnce("recovered", { port: server.port, timeout: 5000 }),
      "recovered",
    );
    server.child.kill("SIGTERM");
    assert.equal((await server.status()).code, 0);
  });

  Deno.test(`accepted sockets have Nagle off (TCP_NODELAY), seen by strace [${engine}]`, async () => {
    await using server = await ServerProcess.start(["--log-level", "error"], [
      "strace",
      "-f",
      "-qq",
      "-e",
      "trace=accept4,setsockopt",
      ...serverCommand(engine),
    ]);
    // strace (6.1: no --kill-on-exit) would leave the server running if it
    // were killed itself, so the server is stopped by its own PID.
    // Lines read "[pid  7606] setsockopt(...)"; the listener's own options come
    // before the listening line, so one is there already.
    const pid = Number(
      (await server.stderr.waitFor(/^\[pid +\d+\] /))
        .match(/^\[pid +(\d+)\]/)![1],
    );
    try {
      assert.equal(await echoOnce("nagle", { port: server.port }), "nagle");
      // With -f a call may be split: "accept4(...<unfinished ...>" and
      // "<... accept4 resumed>...) = 24".
      const accepted = await server.stderr.waitFor(/accept4.*\) = \d+$/);
      const fd = accepted.match(/= (\d+)$/)![1];
      await server.stderr.waitFor(
        new RegExp(`setsockopt\\(${fd}, SOL_TCP, TCP_NODELAY, \\[1\\]`),
      );
    } finally {
      Deno.kill(pid, "SIGTERM");
    }
    assert.equal((await server.status()).code, 0);
  });
}

Deno.test("the library prints nothing unless logging is configured", async () => {
  const script = `
    import { echoOnce, serveEcho } from "${new URL(
    "../mod.ts",
    import.meta.url,
  )}";
    await using server = serveEcho({ port: 0 });
    await echoOnce("quiet", { port: server.addr.port });
    await echoOnce("x", { port: 1 }).catch(() => {});
  `;
  const result = await run(Deno.execPath(), [
    "eval",
    LOCK,
    "--config",
    `${ROOT}deno.json`,
    script,
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.length, 0);
  assert.equal(result.stderr, "");
});

Deno.test("client echoes 2 MiB of binary stdin through the server CLI", async () => {
  await using server = await ServerProcess.start(["--log-level", "error"]);
  const payload = pseudoRandomBytes(2 * 1024 * 1024, 99);
  const result = await runClient(["--port", String(server.port), "-"], payload);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.stdout, payload);
});

Deno.test("both CLIs take the Rust echo programs' flags, with their meaning", async () => {
  await using server = await ServerProcess.start([
    "--ip",
    "127.0.0.1",
    "--num-workers",
    "1",
    "--channel-capacity",
    "10",
    "--log_level",
    "debug",
  ]);
  const port = String(server.port);
  const hello = await runClient([
    "--server-ip",
    "127.0.0.1",
    "--server-port",
    port,
    "--message",
    "hello server",
    "--log_level",
    "debug",
  ]);
  assert.equal(hello.code, 0, hello.stderr);
  assert.equal(decoder.decode(hello.stdout), "hello server\n");
  assert.match(
    hello.stderr,
    /\[DBG\] tcp-echo·client: Connected to 127\.0\.0\.1:\d+/,
  );

  // --num-clients alone: one round trip per client.
  const five = await runClient([
    "--server-port",
    port,
    "--num-clients",
    "5",
    "--message",
    "ping",
    "--json",
  ]);
  assert.equal(five.code, 0, five.stderr);
  const report = JSON.parse(decoder.decode(five.stdout));
  assert.equal(report.roundTrips, 5);
  assert.equal(report.connected, 5);
  // --log_level debug reached the server's logging.
  await server.stderr.waitFor(/\[DBG\] tcp-echo·server: Listening on /);
});

Deno.test("client --raw prints what a server answers; without it, the answer shows in the error", async () => {
  await using info = await ServerProcess.start([
    ...["--mode", "info", "--log-level", "error"],
  ], [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-sys", SERVER]);
  const port = String(info.port);
  const raw = await runClient(["--port", port, "--raw", "clientip"]);
  assert.equal(raw.code, 0, raw.stderr);
  assert.equal(new TextDecoder().decode(raw.stdout), "127.0.0.1\n");
  const checked = await runClient(["--port", port, "clientip"]);
  assert.equal(checked.code, 1);
  assert.equal(
    checked.stderr,
    `error: Echo via 127.0.0.1:${port} failed: Echo differs from what was sent at byte 0: the server sent "127.0.0.1" (not an echo? --raw prints any reply)\n`,
  );
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", CLIENT, "--port", port],
    [
      [
        ["--raw", "--count", "1"],
        "Unexpected --raw in a load test: it checks echoes",
      ],
      [["--raw", "-i"], "Give --raw or --interactive, not both"],
    ],
  );
});

Deno.test("client says a server closed before echoing anything, with the bytes sent", async () => {
  await using server = await ServerProcess.start([
    ...["--deny", "127.0.0.1", "--log-level", "error"],
  ]);
  const result = await runClient(["--port", String(server.port), "hi"]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    new RegExp(
      `^error: Echo via 127\\.0\\.0\\.1:${server.port} failed: The server (closed|reset) the connection before echoing anything \\([02] bytes sent\\): it may refuse this client \\(access rules, connection limits\\) or expect a PROXY header or TLS\\n$`,
    ),
  );
});
