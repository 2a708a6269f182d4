// The load client against servers that end connections on purpose: resets,
// clean closes and timeouts counted apart on both load engines, and with
// `expect` counted as outcomes (another connection takes the place of one
// that ended) instead of errors; the CLI's --expect.

import assert from "node:assert/strict";
import net from "node:net";
import { loadTest, serveEcho } from "../mod.ts";
import { LOAD_ENGINES } from "./_engines.ts";
import { assertUsageErrors, CLIENT, LOCK, run } from "./_process.ts";

/** A node:net server that resets each connection at its first bytes. */
async function resettingServer() {
  const server = net.createServer((socket) => {
    socket.once("data", () => socket.resetAndDestroy());
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve())
  );
  return {
    port: (server.address() as net.AddressInfo).port,
    [Symbol.asyncDispose]: () =>
      new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

for (const engine of LOAD_ENGINES) {
  const label = [engine.engine, engine.nativeIo].filter(Boolean).join(" ");
  // io_uring drives no reconnects: expect needs epoll.
  if (engine.nativeIo === "io_uring") continue;

  Deno.test(`expected closes, resets and timeouts are outcomes; unexpected ones errors [${label}]`, async () => {
    await using limited = serveEcho({
      port: 0,
      faults: [{ kind: "limit", bytes: 640, direction: "send" }],
    });
    await limited.ready;
    const port = limited.addr.port;
    // 10 round trips of 64 bytes a connection, then a clean close.
    const closes = await loadTest({
      ...engine,
      port,
      connections: 2,
      count: 100,
      expect: ["close"],
    });
    assert.deepEqual(closes.errorMessages, []);
    assert.ok(closes.closes >= 8, `${closes.closes} closes`);
    assert.equal(closes.roundTrips + closes.closes, 100);
    assert.equal(closes.otherErrors, 0);
    const unexpected = await loadTest({
      ...engine,
      port,
      countPerConnection: 20,
    });
    assert.equal(unexpected.closes, 1);
    assert.equal(unexpected.otherErrors, 1);
    assert.equal(unexpected.roundTrips, 10);

    await using resetting = await resettingServer();
    const resets = await loadTest({
      ...engine,
      port: resetting.port,
      countPerConnection: 5,
      expect: ["reset"],
    });
    assert.deepEqual(resets.errorMessages, []);
    assert.equal(resets.resets, 5);
    assert.equal(resets.closedBeforeEcho, 0);

    await using hung = serveEcho({
      port: 0,
      faults: [{ kind: "hang", bytes: 0, direction: "send" }],
    });
    await hung.ready;
    const timeouts = await loadTest({
      ...engine,
      port: hung.addr.port,
      countPerConnection: 3,
      timeout: 200,
      expect: ["timeout"],
    });
    assert.deepEqual(timeouts.errorMessages, []);
    assert.equal(timeouts.timeouts, 3);
  });
}

Deno.test("expect is checked, and the CLI's --expect reports endings and exits 0 when they were expected", async () => {
  await assert.rejects(loadTest({ expect: ["later" as never] }), {
    name: "RangeError",
    message: "Cannot use expect: must list reset, close, timeout, got later",
  });
  await assert.rejects(loadTest({ udp: true, expect: ["close"] }), TypeError);
  await using limited = serveEcho({
    port: 0,
    faults: [{ kind: "limit", bytes: 64, direction: "send" }],
  });
  await limited.ready;
  const args = ["--port", String(limited.addr.port), "--max-count", "3"];
  const ok = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    CLIENT,
    ...args,
    "--expect",
    "close,reset",
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    new TextDecoder().decode(ok.stdout),
    /^endings {6}0 resets, 1 closes, 0 timeouts \(close, reset expected\)$/m,
  );
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", CLIENT],
    [
      [
        ["--count", "1", "--expect", "later"],
        "Invalid --expect: expected a comma-separated list of reset, close, timeout, got 'later'",
      ],
      [
        ["--expect", "close", "hi"],
        "Unexpected --expect without a load test flag (--connections, --count, --duration, ...)",
      ],
    ],
  );
});
