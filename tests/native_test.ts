// The native engine's own parts: what it refuses, its workers, and its
// CLI flag. Echo mode's contract is tested on both engines in
// serve_echo_test.ts.

import assert from "node:assert/strict";
import { echoOnce, serveEcho, type ServeEchoOptions } from "../mod.ts";
import { run, SERVER } from "./_process.ts";

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
