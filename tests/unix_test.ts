// Unix domain sockets: serveEcho({ path }), the clients' `path`, the CLIs'
// --unix, a socket file left behind by a killed server, and socat and
// netcat-openbsd as peers.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import {
  echoOnce,
  type EchoServer,
  echoStream,
  loadTest,
  serveEcho,
} from "../mod.ts";
import {
  LineClient,
  pseudoRandomBytes,
  readAll,
  writeAll,
} from "./_helpers.ts";
import { CLIENT, LOCK, run, SERVER, Spawned, writeStdin } from "./_process.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A fresh directory for sockets, removed when disposed. */
async function socketDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "tcp-echo-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A socket file that nothing listens on: bound by Python, which then exits. */
async function staleSocket(path: string): Promise<void> {
  const result = await run("python3", [
    "-c",
    "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
    path,
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.ok(Deno.lstatSync(path).isSocket);
}

/** `deno run server.ts` with what a Unix socket needs, and `args`. */
function unixServer(args: string[]): Spawned {
  return new Spawned(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    SERVER,
    ...args,
  ]);
}

function unixClient(args: string[], stdin?: Uint8Array) {
  return run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    CLIENT,
    ...args,
  ], stdin);
}

engineTest(
  "serveEcho({ path }) echoes exactly over a Unix socket, and removes the file when it stops",
  async (engine) => {
    await using dir = await socketDir();
    const path = `${dir.path}/echo.sock`;
    {
      await using server = serveEcho({ engine, path });
      await server.ready;
      assert.deepEqual(server.addr, { transport: "unix", path });
      assert.ok(Deno.lstatSync(path).isSocket);
      assert.equal(await echoOnce("hi", { path }), "hi");
      // 1 MiB through a half-close, byte for byte.
      const payload = pseudoRandomBytes(1024 * 1024 + 3, 9);
      const echo = await new Response(echoStream([payload], { path })).bytes();
      assert.deepEqual(echo, payload);
      const report = await loadTest({ path, connections: 5, count: 200 });
      assert.equal(report.roundTrips, 200);
      assert.equal(report.address, path);
      assert.equal(report.connectErrors + report.mismatches, 0);
      assert.equal(server.stats.accepted, 7);
    }
    assert.equal(exists(path), false);
  },
);

engineTest(
  "serveEcho({ path }): every line mode, limits and the idle timeout work on a Unix socket",
  async (engine, t) => {
    await using dir = await socketDir();
    await t.step("line", async () => {
      const path = `${dir.path}/line.sock`;
      await using server = serveEcho({ engine, path, mode: "line" });
      await server.ready;
      assert.equal(await echoOnce("one\ntwo\n", { path }), "one\ntwo\n");
    });
    await t.step("broadcast and chat", async () => {
      for (const mode of ["broadcast", "chat"] as const) {
        const path = `${dir.path}/${mode}.sock`;
        await using server = serveEcho({ path, mode });
        await server.ready;
        await using a = new LineClient(
          await Deno.connect({ transport: "unix", path }),
        );
        await using b = new LineClient(
          await Deno.connect({ transport: "unix", path }),
        );
        // b's line reaching a shows both are members.
        await b.send("b is here\n");
        await a.line(/b is here$/);
        await a.send("hello\n");
        await b.line(mode === "chat" ? /^<user1> hello$/ : /^hello$/);
      }
    });
    await t.step("maxConnections and idleTimeout", async () => {
      const path = `${dir.path}/limits.sock`;
      await using server = serveEcho({
        engine,
        path,
        maxConnections: 1,
        idleTimeout: 200,
      });
      await server.ready;
      using first = await Deno.connect({ transport: "unix", path });
      await writeAll(first, encoder.encode("x"));
      const one = new Uint8Array(1);
      assert.equal(await first.read(one), 1);
      // Over the limit: closed at once.
      using second = await Deno.connect({ transport: "unix", path });
      assert.deepEqual(await readAll(second), new Uint8Array());
      // The first, idle, is closed by the server.
      assert.equal(await first.read(one), null);
      assert.equal(server.stats.rejected, 1);
    });
  },
);

engineTest(
  "serveEcho({ path }) replaces a stale socket file, refuses a live server's and a plain file",
  async (engine, t) => {
    await using dir = await socketDir();
    await t.step("a stale socket file is replaced", async () => {
      const path = `${dir.path}/stale.sock`;
      await staleSocket(path);
      await using server = serveEcho({ engine, path });
      await server.ready;
      assert.equal(await echoOnce("fresh", { path }), "fresh");
    });
    await t.step(
      "a live server's socket is refused; that server goes on",
      async () => {
        const path = `${dir.path}/live.sock`;
        await using first = serveEcho({ engine, path });
        await first.ready;
        // The default engine asks the socket once it has returned (ready
        // rejects); the native one binds at once (serveEcho throws).
        let second: EchoServer<Deno.UnixAddr> | undefined;
        await assert.rejects(
          async () => {
            const server = serveEcho({ engine, path });
            second = server;
            await server.ready;
          },
          (error: Error) =>
            error instanceof Deno.errors.AddrInUse &&
            error.message === `${path} is already in use by a running server`,
        );
        await second?.finished;
        assert.equal(await echoOnce("still here", { path }), "still here");
        assert.ok(exists(path));
      },
    );
    await t.step("a file that is not a socket is never removed", () => {
      const path = `${dir.path}/plain.txt`;
      Deno.writeTextFileSync(path, "keep me");
      assert.throws(
        () => serveEcho({ engine, path }),
        (error: Error) =>
          error instanceof Deno.errors.AddrInUse &&
          error.message === `${path} exists and is not a socket`,
      );
      assert.equal(Deno.readTextFileSync(path), "keep me");
    });
    await t.step("bad paths and options", () => {
      const long = `${dir.path}/${"x".repeat(120)}.sock`;
      assert.throws(
        () => serveEcho({ engine, path: long }),
        (error: RangeError & { option: string }) =>
          error instanceof RangeError && error.option === "path",
      );
      assert.throws(
        () => serveEcho({ engine, path: `${dir.path}/w.sock`, workers: 2 }),
        (error: RangeError & { option: string }) => error.option === "workers",
      );
      assert.throws(
        () => serveEcho({ engine, path: `${dir.path}/nowhere/x.sock` }),
        Deno.errors.NotFound,
      );
    });
    await t.step("a client's path with a port", async () => {
      await assert.rejects(
        () => echoOnce("x", { path: `${dir.path}/x.sock`, port: 1 }),
        TypeError,
      );
    });
  },
);

Deno.test("socat UNIX-CONNECT and nc -U get their bytes echoed exactly", async () => {
  await using dir = await socketDir();
  const path = `${dir.path}/peers.sock`;
  await using server = serveEcho({ path });
  await server.ready;
  const payload = pseudoRandomBytes(512 * 1024 + 1, 3);
  const socat = await run(
    "socat",
    ["-t", "30", "-", `UNIX-CONNECT:${path}`],
    payload,
  );
  assert.equal(socat.code, 0, socat.stderr);
  assert.deepEqual(socat.stdout, payload);
  // -N: half-close at the end of stdin.
  const nc = await run("nc", ["-N", "-U", path], payload);
  assert.equal(nc.code, 0, nc.stderr);
  assert.deepEqual(nc.stdout, payload);
});

Deno.test("server --unix: clients with --unix, a SIGKILLed server's file, SIGTERM removes it", async () => {
  await using dir = await socketDir();
  const path = `${dir.path}/cli.sock`;
  {
    await using killed = unixServer(["--unix", path]);
    assert.equal(
      await killed.stdout.waitFor(/^Listening on /),
      `Listening on ${path}`,
    );
    killed.child.kill("SIGKILL");
    await killed.status();
  }
  // SIGKILL left the file behind; the next server replaces it.
  assert.ok(Deno.lstatSync(path).isSocket);
  await using server = unixServer(["--unix", path]);
  await server.stdout.waitFor(/^Listening on /);
  await server.stderr.waitFor(
    /Removed .*cli\.sock: a socket file nothing answered on/,
  );

  const hi = await unixClient(["--unix", path, "hi"]);
  assert.equal(hi.code, 0, hi.stderr);
  assert.equal(decoder.decode(hi.stdout), "hi\n");
  await server.stderr.waitFor(/Opened .*cli\.sock#1 \(1 open\)/);
  const load = await unixClient([
    "--unix",
    path,
    "--connections",
    "3",
    "--count",
    "300",
    "--json",
  ]);
  assert.equal(load.code, 0, load.stderr);
  assert.equal(JSON.parse(decoder.decode(load.stdout)).roundTrips, 300);

  // A second server on the same path: exit 1, and the first goes on.
  const second = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    SERVER,
    "--unix",
    path,
  ]);
  assert.equal(second.code, 1);
  assert.equal(
    second.stderr.split("\n").filter((line) => line.startsWith("error:"))
      .join("\n"),
    `error: Cannot listen on ${path}: ${path} is already in use by a running server`,
  );
  const again = await unixClient(["--unix", path, "again"]);
  assert.equal(decoder.decode(again.stdout), "again\n");

  server.child.kill("SIGTERM");
  assert.equal((await server.status()).code, 0);
  assert.equal(exists(path), false);
});

Deno.test("--unix usage errors exit 2 (or 1 where the path cannot be bound) with one line", async () => {
  await using dir = await socketDir();
  const cases: [string[], number, string][] = [
    [
      ["--unix", `${dir.path}/a.sock`, "--port", "1"],
      2,
      "Give --unix or --port, not both (see --help)",
    ],
    [
      ["--unix", `${dir.path}/a.sock`, "--hostname", "::1"],
      2,
      "Give --unix or --hostname, not both (see --help)",
    ],
    [
      ["--unix", `${dir.path}/a.sock`, "--workers", "2"],
      2,
      "Invalid --workers: a Unix socket is served on one thread (see --help)",
    ],
    [
      ["--unix", `${dir.path}/${"y".repeat(100)}.sock`],
      2,
      `Invalid --unix: must be at most 107 bytes for a Unix socket, got ${
        dir.path.length + 106
      } (see --help)`,
    ],
    [
      ["--unix", `${dir.path}/missing/a.sock`],
      1,
      `Cannot listen on ${dir.path}/missing/a.sock: No such file or directory (os error 2)`,
    ],
  ];
  for (const [args, code, message] of cases) {
    const result = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--unstable-net",
      SERVER,
      ...args,
    ]);
    assert.equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stderr, `error: ${message}\n`);
  }
  const client = await unixClient(["--unix", `${dir.path}/none.sock`, "hi"]);
  assert.equal(client.code, 1);
  assert.match(
    client.stderr,
    /^error: Echo via \/.*none\.sock failed: No such file or directory/,
  );
  const both = await unixClient(["--unix", "x", "--port", "1", "hi"]);
  assert.equal(both.code, 2);
  assert.equal(
    both.stderr,
    "error: Give --unix or --port, not both (see --help)\n",
  );
});

Deno.test("server --unix --mode broadcast --operator: the console reaches Unix clients, SIGTERM drains them", async () => {
  await using dir = await socketDir();
  const path = `${dir.path}/operator.sock`;
  await using server = new Spawned(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    SERVER,
    "--unix",
    path,
    "--mode",
    "broadcast",
    "--operator",
  ], { stdin: "piped" });
  await server.stdout.waitFor(/^Listening on /);
  await using client = new LineClient(
    await Deno.connect({ transport: "unix", path }),
  );
  await server.stderr.waitFor(/Opened .*operator\.sock#1/);
  await writeStdin(server.child, "hello unix\n");
  await client.line(/^\[server\] hello unix$/);
  server.child.kill("SIGTERM");
  await client.closed;
  assert.equal(client.lines.at(-1), "[server] shutting down");
  assert.equal((await server.status()).code, 0);
  await server.child.stdin.close().catch(() => {});
  assert.equal(exists(path), false);
});

Deno.test("--unix where Deno may not write is exit 1 with Deno's reason", async () => {
  await using dir = await socketDir();
  const result = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    `--allow-write=${dir.path}/elsewhere`,
    SERVER,
    "--unix",
    `${dir.path}/denied.sock`,
  ]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    new RegExp(
      `^error: Cannot listen on ${dir.path}/denied\\.sock: Requires write access to "${dir.path}/denied\\.sock"`,
    ),
  );
});
