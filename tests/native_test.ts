// The native engine's own parts: what it refuses, its workers, and its
// CLI flag. Echo mode's contract is tested on both engines in
// serve_echo_test.ts.

import assert from "node:assert/strict";
import { echoOnce, serveEcho, type ServeEchoOptions } from "../mod.ts";
import { CLIENT, run, SERVER } from "./_process.ts";

Deno.test("engine native refuses what only the default engine does, naming the engine option", async () => {
  for (
    const [options, what] of [
      [{ mode: "line" }, "mode line"],
      [{ allow: ["127.0.0.1"] }, "allow and deny lists"],
      [{ proxyProtocol: true }, "the PROXY protocol"],
      [{ maxConnectionsPerIp: 3 }, "per-address limits"],
      [{ maxBytesPerSecond: 1000 }, "maxBytesPerSecond"],
      [{ udp: true }, "UDP"],
    ] as [ServeEchoOptions, string][]
  ) {
    assert.throws(
      () => serveEcho({ port: 0, engine: "native", ...options }),
      (error: Error & { option?: string }) =>
        error instanceof RangeError && error.option === "engine" &&
        error.message.includes(`without ${what}`),
      what,
    );
  }
  const path = await Deno.makeTempFile();
  await Deno.remove(path);
  assert.throws(
    () => serveEcho({ path, engine: "native" }),
    /without a Unix socket/,
  );
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
  const noFfi = await client(["--engine", "native", "--count", "5"], false);
  assert.equal(noFfi.code, 2);
  assert.equal(
    noFfi.stderr,
    "error: Invalid --engine: native needs --allow-ffi (full access to this process: the default engine does not) (see --help)\n",
  );
});
