// The native engine's own parts: what it refuses, its workers, its CLI
// flags, and its load client's byte check (fast-check). Echo mode's and
// loadTest's contracts are tested on both engines in serve_echo_test.ts and
// load_test_test.ts.

import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import { echoOnce, loadTest, serveEcho } from "../mod.ts";
import { CLIENT, LOCK, run, SERVER } from "./_process.ts";

Deno.test("engine native binds IP addresses and localhost only, and names the engine option when it is wrong", async () => {
  // A name could stand for any address: only an IP address or localhost.
  assert.throws(
    () => serveEcho({ hostname: "example.com", port: 0, engine: "native" }),
    /binds an IP address or localhost, got example\.com/,
  );
  {
    await using local = serveEcho({
      hostname: "localhost",
      port: 0,
      engine: "native",
    });
    assert.equal(local.addr.hostname, "127.0.0.1");
    assert.equal(await echoOnce("local", { port: local.addr.port }), "local");
  }
  assert.throws(
    // @ts-expect-error: not an engine
    () => serveEcho({ port: 0, engine: "turbo" }),
    /must be default or native, got turbo/,
  );
});

Deno.test("engine native with workers: one epoll loop per worker on one port", async () => {
  await using server = serveEcho({ port: 0, engine: "native", workers: 2 });
  await server.ready;
  // 24 connections: the kernel spreads them by a hash; all on one loop has
  // a chance of 2 in 2^24.
  const echoes = await Promise.all(
    Array.from(
      { length: 24 },
      (_, i) => echoOnce(`hello ${i}`, { port: server.addr.port }),
    ),
  );
  assert.deepEqual(echoes, Array.from({ length: 24 }, (_, i) => `hello ${i}`));
  const { perWorker, accepted } = server.stats;
  assert.equal(perWorker.length, 2);
  assert.equal(accepted, 24);
  assert.ok(perWorker.every((n) => n > 0), `${perWorker}`);
});

Deno.test("--engine native without --allow-ffi is a usage error that says so", async () => {
  const result = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    SERVER,
    "--engine",
    "native",
    "--port",
    "0",
  ]);
  assert.equal(result.code, 2);
  assert.equal(
    result.stderr,
    "error: Invalid --engine: native needs --allow-ffi (full access to this process: the default engine does not)\n",
  );
});

Deno.test("client --engine native: a load test through the native loop; without a load flag or --allow-ffi, a usage error", async () => {
  await using server = serveEcho({ port: 0 });
  const client = (flags: string[], ffi = true) =>
    run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      ...(ffi ? ["--allow-ffi"] : []),
      CLIENT,
      "--port",
      String(server.addr.port),
      ...flags,
    ]);
  const load = await client([
    "--engine",
    "native",
    "--connections",
    "4",
    "--count",
    "400",
    "--json",
  ]);
  assert.equal(load.code, 0, load.stderr);
  const report = JSON.parse(new TextDecoder().decode(load.stdout));
  assert.equal(report.roundTrips, 400);
  assert.equal(report.connected, 4);
  assert.equal(report.mismatches + report.otherErrors, 0);
  assert.equal(server.stats.bytesIn, 400 * 64);

  const alone = await client(["--engine", "native", "hi"]);
  assert.equal(alone.code, 2);
  assert.match(
    alone.stderr,
    /^error: Unexpected --engine without a load test flag/,
  );
  const epoll = await client([
    ...["--engine", "native", "--native-io", "epoll"],
    ...["--count", "100", "--json"],
  ]);
  assert.equal(epoll.code, 0, epoll.stderr);
  const epollReport = JSON.parse(new TextDecoder().decode(epoll.stdout));
  assert.equal(epollReport.roundTrips, 100);
  assert.equal(epollReport.nativeIo, "epoll");
  assert.equal(report.nativeIo, "io_uring");
  const human = await client(["--engine", "native", "--count", "10"]);
  assert.equal(human.code, 0, human.stderr);
  assert.match(
    new TextDecoder().decode(human.stdout),
    /% of one core\), native engine on io_uring\n$/,
  );
  const ioAlone = await client(["--native-io", "epoll", "--count", "5"]);
  assert.equal(ioAlone.code, 2);
  assert.equal(
    ioAlone.stderr,
    "error: Invalid --native-io: needs engine native (see --help)\n",
  );
  const noFfi = await client(["--engine", "native", "--count", "5"], false);
  assert.equal(noFfi.code, 2);
  assert.equal(
    noFfi.stderr,
    "error: Invalid --engine: native needs --allow-ffi (full access to this process: the default engine does not) (see --help)\n",
  );
});

Deno.test("where the kernel refuses io_uring (EPERM injected by strace), the native load client runs on epoll and says so, unless io_uring was asked for", async () => {
  await using server = serveEcho({ port: 0 });
  // strace makes every io_uring_setup() of the client fail with EPERM, as
  // a container's seccomp profile does; nothing else changes.
  const client = (flags: string[]) =>
    run("strace", [
      ...["-f", "-qq", "-o", "/dev/null"],
      ...[
        "-e",
        "trace=io_uring_setup",
        "-e",
        "inject=io_uring_setup:error=EPERM",
      ],
      Deno.execPath(),
      ...["run", LOCK, "--allow-net", "--allow-read", "--allow-ffi", CLIENT],
      ...["--port", String(server.addr.port), "--engine", "native"],
      ...["--count", "200", "--connections", "2", "--json"],
      ...flags,
    ]);
  const fallback = await client([]);
  assert.equal(fallback.code, 0, fallback.stderr);
  const report = JSON.parse(new TextDecoder().decode(fallback.stdout));
  assert.equal(report.nativeIo, "epoll");
  assert.equal(report.roundTrips, 200);
  const asked = await client(["--native-io", "io_uring"]);
  assert.equal(asked.code, 2);
  assert.equal(
    asked.stderr,
    "error: Invalid --native-io: io_uring is not available here (io_uring_setup: EPERM: operation not permitted (os error 1)) (see --help)\n",
  );
});

/**
 * An echo server that writes each echo back in pieces of the sizes given
 * (cycling), flipping byte `flip` of each connection's stream if set.
 */
function choppyServer(sizes: number[], flip?: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const tasks: Promise<void>[] = [];
    for await (const conn of listener) {
      tasks.push((async () => {
        const buffer = new Uint8Array(256 * 1024);
        let offset = 0;
        let piece = 0;
        try {
          for (let n; (n = await conn.read(buffer)) !== null;) {
            const chunk = buffer.slice(0, n);
            if (flip !== undefined && flip >= offset && flip < offset + n) {
              chunk[flip - offset] ^= 0xff;
            }
            offset += n;
            for (let at = 0; at < n;) {
              const size = sizes[piece++ % sizes.length];
              await conn.write(chunk.subarray(at, at + size));
              at += size;
            }
          }
        } catch {
          // The client closed.
        } finally {
          conn.close();
        }
      })());
    }
    await Promise.all(tasks);
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await serving;
    },
  };
}

for (const nativeIo of ["io_uring", "epoll"] as const) {
  Deno.test(`the native load client checks every byte of echoes of any size in any pieces, and finds the one that differs (property) [${nativeIo}]`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 70_000 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.option(fc.nat(), { nil: undefined }),
        async (size, pieces, flipAt) => {
          // A flip within the first message, or none.
          const flip = flipAt === undefined ? undefined : flipAt % size;
          await using server = choppyServer(pieces, flip);
          const report = await loadTest({
            engine: "native",
            nativeIo,
            port: server.port,
            connections: 2,
            count: 6,
            message: size,
          });
          if (flip === undefined) {
            assert.equal(report.roundTrips, 6);
            assert.equal(report.mismatches + report.otherErrors, 0);
          } else {
            // Each connection's first echo differs, at that byte.
            assert.equal(report.roundTrips, 0);
            assert.equal(report.mismatches, 2);
            assert.equal(
              report.errorMessages[0],
              `Echo differs from what was sent at byte ${flip}`,
            );
          }
        },
      ),
      { numRuns: 25 },
    );
  });
}
