import assert from "node:assert/strict";
import * as hdr from "npm:hdr-histogram-js@^3.0.1";
import { loadTest, serveEcho } from "../mod.ts";
import { loadEngineTest } from "./_engines.ts";
import { captureLogs, tempDir } from "./_helpers.ts";

const logs = await captureLogs();

/**
 * A deliberately broken echo server: `mangle` decides what goes back for
 * each chunk read (undefined: say nothing; null: close).
 */
function brokenServer(
  mangle: (chunk: Uint8Array) => Uint8Array | null | undefined,
): { port: number; [Symbol.asyncDispose](): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    const tasks: Promise<void>[] = [];
    for await (const conn of listener) {
      conns.add(conn);
      tasks.push((async () => {
        const buffer = new Uint8Array(65536);
        try {
          while (true) {
            const n = await conn.read(buffer);
            if (n === null) break;
            const reply = mangle(buffer.slice(0, n));
            if (reply === null) break;
            if (reply !== undefined) await conn.write(reply);
          }
        } catch {
          // Closed by the test.
        } finally {
          if (conns.delete(conn)) conn.close();
        }
      })());
    }
    await Promise.all(tasks);
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) conn.close();
      conns.clear();
      await serving;
    },
  };
}

loadEngineTest(
  "loadTest() runs the round trips asked for and verifies them",
  async (engine) => {
    await using server = serveEcho({ port: 0 });
    const report = await loadTest({
      ...engine,
      port: server.addr.port,
      connections: 20,
      count: 3000,
      message: 100,
    });
    assert.equal(report.connected, 20);
    assert.equal(report.roundTrips, 3000);
    assert.equal(report.messageBytes, 100);
    assert.equal(
      report.connectErrors + report.closedBeforeEcho + report.mismatches +
        report.otherErrors,
      0,
    );
    const l = report.latencyUs;
    assert.ok(0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99, JSON.stringify(l));
    assert.ok(l.p99 <= l.p999 && l.p999 <= l.max, JSON.stringify(l));
    // The histogram itself, as HdrHistogram's tools read it back.
    const histogram = hdr.decodeFromCompressedBase64(report.latencyHistogram);
    assert.equal(histogram.totalCount, 3000);
    // Equal to 3 significant digits (the encoding keeps buckets).
    const close = (a: number, b: number) =>
      Math.abs(a - b) <= Math.max(1, b / 500);
    assert.ok(close(histogram.maxValue, l.max), `${histogram.maxValue}`);
    assert.ok(close(histogram.getValueAtPercentile(50), l.p50));
    histogram.destroy();
    assert.ok(report.roundTripsPerSecond > 0);
    assert.ok(
      Math.abs(
        report.megabytesPerSecond -
          report.roundTripsPerSecond * 100 / 1e6,
      ) < 1e-9,
    );
    // The server saw exactly the bytes the report claims, both ways.
    assert.equal(server.stats.bytesIn, 3000 * 100);
    assert.equal(server.stats.bytesOut, 3000 * 100);
  },
);

loadEngineTest(
  "loadTest() makes countPerConnection round trips on each connection",
  async (engine) => {
    // An echo server that counts the bytes each connection sent.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const received: number[] = [];
    const serving = (async () => {
      const tasks: Promise<void>[] = [];
      for await (const conn of listener) {
        const index = received.push(0) - 1;
        tasks.push((async () => {
          const buffer = new Uint8Array(1024);
          for (let n; (n = await conn.read(buffer)) !== null;) {
            received[index] += n;
            await conn.write(buffer.subarray(0, n));
          }
          conn.close();
        })());
        if (received.length === 3) break;
      }
      await Promise.all(tasks);
    })();
    const report = await loadTest({
      ...engine,
      port: listener.addr.port,
      connections: 3,
      countPerConnection: 7,
      message: 10,
    });
    await serving; // Leaving the for await loop closed the listener.
    assert.equal(report.roundTrips, 21);
    assert.deepEqual(received, [70, 70, 70]);
    await assert.rejects(
      () => loadTest({ ...engine, port: 9, countPerConnection: 0 }),
      (error: RangeError & { option: string }) =>
        error.option === "countPerConnection",
    );
  },
);

loadEngineTest(
  "loadTest() counts an echo that differs as a mismatch",
  async (engine) => {
    await using server = brokenServer((chunk) => {
      chunk[chunk.length - 1] ^= 1;
      return chunk;
    });
    const report = await loadTest({
      ...engine,
      port: server.port,
      connections: 3,
      count: 100,
      message: "abcd",
    });
    assert.equal(report.roundTrips, 0);
    assert.equal(report.mismatches, 3);
    assert.match(
      report.errorMessages[0],
      /^Echo differs from what was sent at byte \d$/,
    );
  },
);

loadEngineTest(
  "loadTest() counts an echo longer than the message as a mismatch",
  async (engine) => {
    // Each chunk back twice: the first round trip gets 8 bytes for 4.
    await using server = brokenServer((chunk) => {
      const twice = new Uint8Array(chunk.length * 2);
      twice.set(chunk);
      twice.set(chunk, chunk.length);
      return twice;
    });
    const report = await loadTest({
      ...engine,
      port: server.port,
      connections: 2,
      count: 100,
      message: "abcd",
    });
    assert.equal(report.roundTrips, 0);
    assert.equal(report.mismatches, 2);
    assert.match(
      report.errorMessages[0],
      /^Echo (is longer than what was sent \(4 bytes\)|differs from what was sent at byte \d)$/,
    );
  },
);

loadEngineTest(
  "loadTest() counts refused connections, early closes and timeouts",
  async (engine, t) => {
    await t.step("refused", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      listener.close();
      const report = await loadTest({
        ...engine,
        port,
        connections: 4,
        count: 10,
      });
      assert.equal(report.connectErrors, 4);
      assert.equal(report.connected, 0);
    });
    await t.step("closed before any echo: a refusal", async () => {
      await using server = brokenServer(() => null);
      const report = await loadTest({
        ...engine,
        port: server.port,
        count: 10,
      });
      assert.equal(report.closedBeforeEcho, 1);
      assert.equal(report.otherErrors, 0);
      assert.equal(
        report.errorMessages[0],
        "Server closed the connection before echoing anything: it may refuse this client (access rules, connection limits) or expect a PROXY header or TLS",
      );
    });
    await t.step("denied by a real server's rules", async () => {
      await using server = serveEcho({ port: 0, deny: ["127.0.0.0/8"] });
      const report = await loadTest({
        ...engine,
        port: server.addr.port,
        connections: 3,
        count: 10,
      });
      assert.equal(report.closedBeforeEcho, 3);
      assert.equal(report.connectErrors + report.otherErrors, 0);
      assert.match(report.errorMessages[0], /before echoing anything/);
      assert.equal(server.stats.refused.denied, 3);
    });
    await t.step("closed after a round trip: not a refusal", async () => {
      let chunks = 0;
      await using server = brokenServer((chunk) =>
        chunks++ === 0 ? chunk : null
      );
      const report = await loadTest({
        ...engine,
        port: server.port,
        count: 10,
        message: "ping",
      });
      assert.equal(report.roundTrips, 1);
      assert.equal(report.closedBeforeEcho, 0);
      assert.equal(report.otherErrors, 1);
      assert.equal(
        report.errorMessages[0],
        "Server closed after 0 of 4 echoed bytes",
      );
    });
    await t.step("silent", async () => {
      await using server = brokenServer(() => undefined);
      const report = await loadTest({
        ...engine,
        port: server.port,
        count: 10,
        timeout: 200,
      });
      assert.equal(report.otherErrors, 1);
      assert.equal(
        report.errorMessages[0],
        "Round trip timed out after 200 ms",
      );
    });
  },
);

loadEngineTest(
  "loadTest() stops after duration, keeps to rate, and stops on abort",
  async (engine, t) => {
    await using server = serveEcho({ port: 0 });
    const port = server.addr.port;
    await t.step("duration", async () => {
      const report = await loadTest({
        ...engine,
        port,
        connections: 2,
        duration: 300,
      });
      assert.ok(report.roundTrips > 0);
      assert.ok(report.durationMs >= 290, String(report.durationMs));
      assert.equal(report.otherErrors, 0);
    });
    await t.step("rate", async () => {
      // 2 connections at 100/s in all for 0.5 s: the schedule allows at most
      // 50 round trips plus the first of each connection.
      const started = performance.now();
      const report = await loadTest({
        ...engine,
        port,
        connections: 2,
        rate: 100,
        duration: 500,
      });
      assert.ok(
        report.roundTrips > 0 && report.roundTrips <= 52,
        String(report.roundTrips),
      );
      // Each round trip measured from its slot, within the test's time.
      const tookUs = (performance.now() - started) * 1000;
      assert.ok(
        report.latencyUs.max <= tookUs,
        `${report.latencyUs.max} µs, in ${tookUs} µs`,
      );
    });
    await t.step(
      "a stop does not wait for a slot far off in the schedule",
      async () => {
        // 2 connections at 0.2/s in all: the second's first slot is 5 s away.
        const started = performance.now();
        const report = await loadTest({
          ...engine,
          port,
          connections: 2,
          rate: 0.2,
          duration: 200,
        });
        assert.equal(report.roundTrips, 1);
        const took = performance.now() - started;
        assert.ok(took < 4000, `ended after ${took} ms`);
      },
    );
    await t.step("abort", async () => {
      const controller = new AbortController();
      const running = loadTest({
        ...engine,
        port,
        duration: 60_000,
        signal: controller.signal,
        onProgress: () => controller.abort(),
        progressInterval: 50,
      });
      const report = await running;
      assert.ok(report.durationMs < 10_000);
      assert.equal(report.otherErrors + report.mismatches, 0);
    });
  },
);

loadEngineTest(
  "loadTest() rejects bad options with a RangeError",
  async (engine) => {
    for (
      const options of [
        { connections: 0 },
        { count: -1 },
        { duration: 0 },
        { rate: NaN },
        { message: "" },
        { message: 0 },
      ]
    ) {
      await assert.rejects(
        () => loadTest({ ...engine, ...options }),
        RangeError,
      );
    }
  },
);

loadEngineTest(
  "loadTest() ending mid-round-trip never fails (60 short runs)",
  async (engine) => {
    // The end of `duration` lands while round trips are in flight; closing
    // their connections must not be counted as errors or throw.
    await using server = serveEcho({ port: 0 });
    for (let i = 0; i < 60; i++) {
      const report = await loadTest({
        ...engine,
        port: server.addr.port,
        connections: 50,
        duration: 20 + (i % 7),
      });
      assert.equal(report.otherErrors + report.mismatches, 0, `run ${i}`);
    }
  },
);

loadEngineTest(
  "loadTest() warms up before it measures: those round trips are made, not counted",
  async (engine) => {
    await using server = serveEcho({ port: 0 });
    const report = await loadTest({
      ...engine,
      port: server.addr.port,
      connections: 2,
      message: 10,
      warmup: 200,
      duration: 300,
    });
    assert.equal(report.otherErrors + report.mismatches, 0);
    assert.ok(report.roundTrips > 0);
    // Measured over the duration alone.
    assert.ok(
      report.durationMs >= 250 && report.durationMs <= 320,
      String(report.durationMs),
    );
    // The server echoed the warm-up's round trips too.
    assert.ok(
      server.stats.bytesIn / 10 > report.roundTrips,
      `${server.stats.bytesIn / 10} echoed, ${report.roundTrips} counted`,
    );
    await assert.rejects(
      () => loadTest({ ...engine, port: server.addr.port, warmup: 100 }),
      (error: TypeError & { option: string }) => error.option === "warmup",
    );
  },
);

loadEngineTest(
  "loadTest() ends as a client does: round trips in flight finish uncounted, and the server sees each connection closed, none reset",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ port: 0 });
    // Each run ends with about every connection's round trip in flight.
    for (let i = 0; i < 10; i++) {
      const report = await loadTest({
        ...engine,
        port: server.addr.port,
        connections: 20,
        duration: 30 + i,
      });
      assert.equal(report.otherErrors + report.mismatches, 0, `run ${i}`);
    }
    const closes = () =>
      logs.records.filter((r) => String(r.rawMessage).startsWith("Closed"));
    await logs.waitFor(() => closes().length === 200);
    const reasons = new Set(closes().map((r) => r.properties.reason));
    assert.deepEqual([...reasons], ["closed by client"]);
    assert.equal(server.stats.closed.reset, 0);
  },
);

loadEngineTest(
  "loadTest() reports the CPU time of the measured part alone, not of its warm-up",
  async (engine) => {
    await using server = serveEcho({ port: 0 });
    // Busy through a warm-up of 400 ms, then measured for 50 ms.
    const report = await loadTest({
      ...engine,
      port: server.addr.port,
      connections: 1,
      warmup: 400,
      duration: 50,
    });
    assert.ok(report.cpuMs > 0, `${report.cpuMs}`);
    // No more than every core of this machine for the measured time (and
    // 20 ms for the clocks' steps).
    const most = report.durationMs * navigator.hardwareConcurrency + 20;
    assert.ok(report.cpuMs <= most, `${report.cpuMs} ms > ${most} ms`);
  },
);

loadEngineTest(
  "loadTest over a Unix socket, and with a PROXY header whose source the server's rules judge",
  async (engine) => {
    await using dir = await tempDir();
    const path = `${dir.path}/load.sock`;
    {
      await using server = serveEcho({ path });
      await server.ready;
      const report = await loadTest({
        ...engine,
        path,
        connections: 3,
        count: 300,
      });
      assert.equal(report.address, path);
      assert.equal(report.roundTrips, 300);
      assert.equal(report.connectErrors + report.mismatches, 0);
      assert.equal(report.otherErrors + report.closedBeforeEcho, 0);
    }
    await using server = serveEcho({
      port: 0,
      proxyProtocol: true,
      allow: ["10.0.0.0/8"],
    });
    for (const sendProxy of ["v1", "v2"] as const) {
      // Let in as the source the header claims…
      const inside = await loadTest({
        ...engine,
        port: server.addr.port,
        sendProxy,
        proxySource: "10.9.8.7:4000",
        connections: 2,
        count: 100,
      });
      assert.equal(inside.roundTrips, 100, inside.errorMessages.join("; "));
      // …and refused as its own address, 127.0.0.1, outside the list.
      const outside = await loadTest({
        ...engine,
        port: server.addr.port,
        sendProxy,
        connections: 2,
        count: 10,
        timeout: 2000,
      });
      assert.equal(outside.roundTrips, 0);
      assert.equal(outside.closedBeforeEcho, 2);
    }
    assert.equal(server.stats.refused.notAllowed, 4);
    assert.equal(server.stats.proxyHeaderFailures, 0);
  },
);
