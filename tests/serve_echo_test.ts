import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import net from "node:net";
import { once } from "node:events";
import { echoOnce, serveEcho } from "../mod.ts";
import { ENGINES, engineTest } from "./_engines.ts";
import { resetClients } from "./_process.ts";
import {
  captureLogs,
  concat,
  exchange,
  localPeer,
  pseudoRandomBytes,
  readAll,
  readExactly,
  writeAll,
} from "./_helpers.ts";

const logs = await captureLogs();

/** Connects to 127.0.0.1:argv[1] argv[2] times, resetting each (SO_LINGER 0). */

engineTest(
  "serveEcho() echoes payloads of every size back exactly",
  async (engine, t) => {
    await using server = serveEcho({ port: 0, engine });
    const port = server.addr.port;
    for (
      const size of [0, 1, 1023, 1024, 1025, 64 * 1024 + 1, 50 * 1024 * 1024]
    ) {
      await t.step(`${size} bytes`, async () => {
        const payload = pseudoRandomBytes(size, size + 1);
        const echoed = await exchange(port, [payload]);
        assert.equal(echoed.length, size);
        assert.ok(echoed.every((b, i) => b === payload[i]), "bytes differ");
      });
    }
  },
);

engineTest(
  "serveEcho() echoes every byte value, binary-safe",
  async (engine) => {
    await using server = serveEcho({ port: 0, engine });
    const all = new Uint8Array(256).map((_, i) => i);
    assert.deepEqual(
      await exchange(server.addr.port, [all, all]),
      concat([all, all]),
    );
  },
);

engineTest(
  "serveEcho() returns any payload written in any chunking (property)",
  async (engine) => {
    await using server = serveEcho({ port: 0, engine });
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 200_000 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), {
          minLength: 1,
          maxLength: 20,
        }),
        async (payload, sizes) => {
          const chunks: Uint8Array[] = [];
          for (let at = 0, i = 0; at < payload.length; i++) {
            const size = sizes[i % sizes.length];
            chunks.push(payload.subarray(at, at + size));
            at += size;
          }
          const echoed = await exchange(server.addr.port, chunks);
          assert.deepEqual(echoed, payload);
        },
      ),
      { numRuns: 60 },
    );
  },
);

engineTest(
  "serveEcho() keeps the connection open until the client half-closes",
  async (engine) => {
    await using server = serveEcho({ port: 0, engine });
    using conn = await Deno.connect({ port: server.addr.port });
    const encoder = new TextEncoder();
    await writeAll(conn, encoder.encode("abc"));
    assert.deepEqual(await readExactly(conn, 3), encoder.encode("abc"));
    await writeAll(conn, encoder.encode("def"));
    assert.deepEqual(await readExactly(conn, 3), encoder.encode("def"));
    await conn.closeWrite();
    assert.equal(await conn.read(new Uint8Array(1)), null);
  },
);

engineTest(
  "serveEcho() echoes everything still owed after a half-close, then closes",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ port: 0, engine });
    using conn = await Deno.connect({ port: server.addr.port });
    const payload = pseudoRandomBytes(1024 * 1024, 7);
    // Write all and half-close before reading a byte; the echo must follow.
    const writing = writeAll(conn, payload).then(() => conn.closeWrite());
    const echoed = await readAll(conn);
    await writing;
    assert.deepEqual(echoed, payload);
    const closed = await logs.closed(localPeer(conn));
    assert.equal(closed.properties.reason, "closed by client");
    assert.equal(closed.properties.bytesIn, payload.length);
    assert.equal(closed.properties.bytesOut, payload.length);
  },
);

engineTest(
  "serveEcho() serves 200 concurrent clients independently",
  async (engine) => {
    await using server = serveEcho({ port: 0, engine });
    const payloads = Array.from(
      { length: 200 },
      (_, i) => pseudoRandomBytes(10_000 + i, i + 1),
    );
    const echoes = await Promise.all(
      payloads.map((payload) =>
        exchange(server.addr.port, [
          payload.subarray(0, 4000),
          payload.subarray(4000),
        ])
      ),
    );
    echoes.forEach((echoed, i) => assert.deepEqual(echoed, payloads[i]));
    assert.equal(server.stats.accepted, 200);
  },
);

engineTest("serveEcho() counts connections and bytes", async (engine) => {
  logs.clear();
  await using server = serveEcho({ port: 0, engine });
  const none = Object.fromEntries(
    Object.keys(server.stats.closed).map((reason) => [reason, 0]),
  );
  const noFaultActions = {
    limit: 0,
    hang: 0,
    reset: 0,
    down: 0,
    drop: 0,
    duplicate: 0,
    corrupt: 0,
    reorder: 0,
  };
  assert.deepEqual(server.stats, {
    active: 0,
    accepted: 0,
    rejected: 0,
    bytesIn: 0,
    bytesOut: 0,
    dropped: 0,
    acceptErrors: 0,
    handshakeFailures: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    datagramBytesIn: 0,
    datagramBytesOut: 0,
    proxyHeaderFailures: 0,
    refused: { denied: 0, notAllowed: 0, perAddress: 0, connectRate: 0 },
    datagramsRefused: 0,
    datagramsRateLimited: 0,
    closed: none,
    durations: { counts: new Array(9).fill(0), sumSeconds: 0 },
    linesRelayed: 0,
    handshakes: 0,
    handshakeFailuresBy: { protocol: 0, certificate: 0, timeout: 0, notTls: 0 },
    handshakeDurations: { counts: [0, 0, 0, 0, 0, 0, 0, 0, 0], sumSeconds: 0 },
    faulted: 0,
    faultActions: noFaultActions,
    upstreamFailures: 0,
    websocketBadUpgrades: 0,
    chatLinesLimited: 0,
    chatLogins: { ok: 0, failed: 0, refused: 0 },
    chatFiles: { done: 0, failed: 0 },
    chatFileBytes: 0,
    faultDelayedBytes: 0,
    perWorker: [0],
  });
  using conn = await Deno.connect({ port: server.addr.port });
  await writeAll(conn, new Uint8Array(10));
  await readExactly(conn, 10);
  assert.equal(server.stats.active, 1);
  assert.equal(server.stats.bytesIn, 10);
  // Not bytesOut yet: the native engine counts a send once the call returns,
  // on its own thread, which can be after the echo reached us. Checked below,
  // once the connection is closed.
  await conn.closeWrite();
  await readAll(conn);
  await logs.closed(localPeer(conn));
  const { closed, durations, ...stats } = server.stats;
  assert.deepEqual(closed, { ...none, closedByClient: 1 });
  assert.equal(durations.counts.reduce((a, b) => a + b), 1);
  assert.deepEqual(stats, {
    active: 0,
    accepted: 1,
    rejected: 0,
    bytesIn: 10,
    bytesOut: 10,
    dropped: 0,
    acceptErrors: 0,
    handshakeFailures: 0,
    datagramsIn: 0,
    datagramsOut: 0,
    datagramBytesIn: 0,
    datagramBytesOut: 0,
    proxyHeaderFailures: 0,
    refused: { denied: 0, notAllowed: 0, perAddress: 0, connectRate: 0 },
    datagramsRefused: 0,
    datagramsRateLimited: 0,
    linesRelayed: 0,
    handshakes: 0,
    handshakeFailuresBy: { protocol: 0, certificate: 0, timeout: 0, notTls: 0 },
    handshakeDurations: { counts: [0, 0, 0, 0, 0, 0, 0, 0, 0], sumSeconds: 0 },
    faulted: 0,
    faultActions: noFaultActions,
    upstreamFailures: 0,
    websocketBadUpgrades: 0,
    chatLinesLimited: 0,
    chatLogins: { ok: 0, failed: 0, refused: 0 },
    chatFiles: { done: 0, failed: 0 },
    chatFileBytes: 0,
    faultDelayedBytes: 0,
    perWorker: [1],
  });
});

engineTest(
  "serveEcho() logs each connection opened and closed",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ port: 0, engine });
    using conn = await Deno.connect({ port: server.addr.port });
    const peer = localPeer(conn);
    await writeAll(conn, new Uint8Array(5));
    await conn.closeWrite();
    await readAll(conn);
    const closed = await logs.closed(peer);
    assert.equal(closed.level, "info");
    assert.equal(closed.properties.bytesIn, 5);
    assert.equal(closed.properties.bytesOut, 5);
    assert.equal(typeof closed.properties.durationMs, "number");
    const opened = logs.find("Opened {peer} ({active} open)")
      .filter((r) => r.properties.peer === peer);
    assert.equal(opened.length, 1);
    assert.deepEqual(opened[0].category, ["tcp-echo", "server"]);
  },
);

engineTest("serveEcho() logs counts with the right plurals", async (engine) => {
  logs.clear();
  await using server = serveEcho({ port: 0, engine });
  using conn = await Deno.connect({ port: server.addr.port });
  await writeAll(conn, new Uint8Array([7]));
  await readExactly(conn, 1);
  assert.equal(server.announce("one"), 1);
  await readExactly(conn, 4);
  await conn.closeWrite();
  await readAll(conn);
  const closed = await logs.closed(localPeer(conn));
  assert.equal(
    closed.rawMessage,
    "Closed {peer} after {durationMs} ms: {bytesIn} byte in, {bytesOut} bytes out ({reason})",
  );
  assert.deepEqual(
    logs.records.filter((r) => r.rawMessage.toString().startsWith("Announcing"))
      .map((r) => r.rawMessage),
    ["Announcing to {clients} client: {message}"],
  );
});

engineTest(
  "serveEcho() survives a client that resets mid-stream",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ port: 0, engine });
    // Deno.Conn cannot send a reset; node:net's resetAndDestroy() does
    // (SO_LINGER 0), after some of the echo has come back.
    const socket = net.connect(server.addr.port, "127.0.0.1");
    await once(socket, "connect");
    const peer = `${socket.localAddress}:${socket.localPort}`;
    socket.write(pseudoRandomBytes(1024 * 1024));
    await once(socket, "data");
    const closing = once(socket, "close");
    socket.resetAndDestroy();
    await closing;
    const closed = await logs.closed(peer);
    assert.equal(closed.properties.reason, "reset by peer");
    assert.equal(server.stats.closed.reset, 1);
    assert.ok(Number(closed.properties.bytesIn) > 0);
    assert.equal(
      await echoOnce("still here", { port: server.addr.port }),
      "still here",
    );
    assert.equal(server.stats.active, 0);
  },
);

engineTest(
  "serveEcho() keeps serving others while a client never reads",
  async (engine) => {
    logs.clear();
    const server = serveEcho({ port: 0, engine, gracePeriod: 100 });
    const stuck = await Deno.connect({ port: server.addr.port });
    const peer = localPeer(stuck);
    // Fills both directions' buffers: the server's write to `stuck` blocks.
    const flooding = writeAll(stuck, new Uint8Array(32 * 1024 * 1024)).then(
      () => assert.fail("the flood should not all be accepted"),
      (error) => error,
    );
    await logs.waitFor((r) => r.properties.peer === peer);
    for (let i = 0; i < 20; i++) {
      assert.equal(
        await echoOnce(`msg ${i}`, { port: server.addr.port }),
        `msg ${i}`,
      );
    }
    assert.equal(server.stats.active, 1);
    // Shutdown during traffic: the stuck client is closed when the grace ends.
    await server.shutdown();
    const closed = await logs.closed(peer);
    assert.equal(closed.properties.reason, "grace period over");
    assert.ok(await flooding instanceof Error);
    stuck.close();
  },
);

engineTest(
  "serveEcho() accepts on at once past clients that reset while queued",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ port: 0, engine });
    const resets = 50;
    resetClients(server.addr.port, resets);
    // Queued behind every reset connection; without the fix each one cost a
    // backoff of up to a second.
    assert.equal(await echoOnce("alive", { port: server.addr.port }), "alive");
    assert.deepEqual(
      logs.find("Accept failed, retrying in {delayMs} ms: {error}"),
      [],
    );
    if (engine === "default") {
      // Deno's accept() fails on a reset socket (it asks for its peer).
      assert.equal(server.stats.acceptErrors, resets);
      assert.equal(server.stats.accepted, 1);
      assert.equal(
        logs.find("Accept failed for one connection: {error}").length,
        resets,
      );
    } else {
      // accept4() takes it, and its first read says it was reset.
      assert.equal(server.stats.acceptErrors, 0);
      assert.equal(server.stats.accepted, resets + 1);
      await server.shutdown();
      const resetClosed = logs.records.filter((r) =>
        r.properties.reason === "reset by peer"
      );
      assert.equal(resetClosed.length, resets);
    }
  },
);

engineTest(
  "serveEcho() closes a connection idle for idleTimeout ms",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ port: 0, engine, idleTimeout: 300 });
    using conn = await Deno.connect({ port: server.addr.port });
    const peer = localPeer(conn);
    // Traffic every 100 ms for 600 ms keeps the connection alive: time is
    // what this test is about, so it waits on the clock.
    // The server's clock restarts after it reads and echoes each byte, so
    // the last time stamped before the last write bounds it from below.
    let quietSince = 0;
    for (let i = 0; i < 6; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      quietSince = Date.now();
      await writeAll(conn, new Uint8Array([i]));
      assert.deepEqual(await readExactly(conn, 1), new Uint8Array([i]));
    }
    assert.equal(await conn.read(new Uint8Array(1)), null);
    assert.ok(Date.now() - quietSince >= 300, "closed before idleTimeout");
    const closed = await logs.closed(peer);
    assert.equal(closed.properties.reason, "idle timeout");
  },
);

engineTest(
  "serveEcho() closes a client over maxConnections and keeps the others",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ port: 0, engine, maxConnections: 2 });
    const port = server.addr.port;
    using a = await Deno.connect({ port });
    using b = await Deno.connect({ port });
    for (const conn of [a, b]) {
      await writeAll(conn, new Uint8Array([1]));
      await readExactly(conn, 1);
    }
    using c = await Deno.connect({ port });
    const rejected = await c.read(new Uint8Array(1)).catch((error) => error);
    assert.ok(
      rejected === null || rejected instanceof Deno.errors.ConnectionReset,
    );
    assert.equal(server.stats.rejected, 1);
    await writeAll(a, new Uint8Array([2]));
    assert.deepEqual(await readExactly(a, 1), new Uint8Array([2]));
    // A freed slot is served again.
    await a.closeWrite();
    await readAll(a);
    await logs.closed(localPeer(a));
    assert.equal(await echoOnce("again", { port }), "again");
    assert.equal(server.stats.accepted, 4);
    assert.equal(server.stats.rejected, 1);
    await b.closeWrite();
    await readAll(b);
  },
);

engineTest(
  "serveEcho() shutdown() refuses new clients and lets open ones finish",
  async (engine) => {
    logs.clear();
    const server = serveEcho({ port: 0, engine, gracePeriod: Infinity });
    const port = server.addr.port;
    using conn = await Deno.connect({ port });
    const peer = localPeer(conn);
    await writeAll(conn, new Uint8Array([1]));
    await readExactly(conn, 1);
    const first = server.shutdown();
    const second = server.shutdown();
    assert.equal(first, second);
    await logs.waitFor((r) =>
      r.rawMessage === "Stopped accepting on {address}"
    );
    await assert.rejects(
      Deno.connect({ port }),
      Deno.errors.ConnectionRefused,
    );
    await writeAll(conn, new Uint8Array([2, 3]));
    assert.deepEqual(await readExactly(conn, 2), new Uint8Array([2, 3]));
    await conn.closeWrite();
    assert.equal(await conn.read(new Uint8Array(1)), null);
    await first;
    await server.finished;
    assert.equal(
      (await logs.closed(peer)).properties.reason,
      "closed by client",
    );
    assert.equal(server.shutdown(), first);
  },
);

engineTest(
  "serveEcho() ends the grace period cleanly: streaming clients get an end of stream and an exact prefix",
  async (engine) => {
    await using server = serveEcho({ port: 0, engine, gracePeriod: 300 });
    // Byte i of every client's stream is PATTERN[i % 251]: a prime period,
    // so a lost or repeated chunk shows.
    const CHUNK = 16 * 1024;
    // Ahead of its echo by up to 2 MiB, a client keeps the server's writes
    // waiting at times, so that what it sends piles up unread on the server.
    const WINDOW = 2 * 1024 * 1024;
    const PATTERN = pseudoRandomBytes(CHUNK + 251, 7);
    for (let i = 251; i < PATTERN.length; i++) PATTERN[i] = PATTERN[i % 251];
    const conns = await Promise.all(
      Array.from(
        { length: 50 },
        () => Deno.connect({ port: server.addr.port }),
      ),
    );
    let received = 0;
    const flowing: Promise<void>[] = [];
    const results = conns.map(async (conn) => {
      let flows!: () => void;
      flowing.push(new Promise((resolve) => flows = resolve));
      let sent = 0;
      let got = 0;
      let ended = false;
      let echoed: () => void = () => {};
      const writing = (async () => {
        // Streams until the echo ends; a write may then fail, which is fine.
        try {
          while (!ended) {
            if (sent - got > WINDOW) {
              await new Promise<void>((resolve) => echoed = resolve);
              continue;
            }
            await writeAll(
              conn,
              PATTERN.subarray(sent % 251, sent % 251 + CHUNK),
            );
            sent += CHUNK;
          }
        } catch {
          // The server closed after its end of stream.
        }
      })();
      const buffer = new Uint8Array(64 * 1024);
      let end: string;
      try {
        for (let n; (n = await conn.read(buffer)) !== null;) {
          for (
            let k = 0, p = got % 251;
            k < n;
            k++, p = p === 250 ? 0 : p + 1
          ) {
            if (buffer[k] !== PATTERN[p]) {
              throw new Error(`Echo differs at byte ${got + k}`);
            }
          }
          got += n;
          echoed();
          if (got >= 64 * 1024) flows();
        }
        end = "end of stream";
      } catch (error) {
        end = error instanceof Error ? error.name : String(error);
      }
      ended = true;
      echoed();
      received += got;
      await writing;
      conn.close();
      return { end, got, sent };
    });
    // Every client streams and gets its echo: now the grace period starts.
    await Promise.all(flowing);
    await server.shutdown();
    const outcomes = await Promise.all(results);
    for (const { end, got, sent } of outcomes) {
      assert.equal(end, "end of stream");
      assert.ok(got <= sent, `${got} of ${sent}`);
    }
    assert.equal(server.stats.bytesOut, received, "echo lost in flight");
    // Each closed by the shutdown: its end of stream, or the grace period.
    const { closed } = server.stats;
    assert.equal(closed.shutdown, 50, JSON.stringify(closed));
    assert.equal(
      Object.values(closed).reduce((a, b) => a + b),
      50,
      JSON.stringify(closed),
    );
  },
);

engineTest(
  "serveEcho() with an already aborted signal throws its reason",
  (engine) => {
    const reason = new Error("stop before start");
    assert.throws(
      () => serveEcho({ port: 0, engine, signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
  },
);

engineTest(
  "serveEcho() closes everything at once when its signal aborts",
  async (engine) => {
    logs.clear();
    const controller = new AbortController();
    const server = serveEcho({
      port: 0,
      engine,
      gracePeriod: Infinity,
      signal: controller.signal,
    });
    using conn = await Deno.connect({ port: server.addr.port });
    const peer = localPeer(conn);
    await writeAll(conn, new Uint8Array([1]));
    await readExactly(conn, 1);
    controller.abort();
    await server.finished;
    const end = await conn.read(new Uint8Array(1)).catch((error) => error);
    assert.ok(end === null || end instanceof Deno.errors.ConnectionReset);
    assert.equal((await logs.closed(peer)).properties.reason, "server stopped");
    assert.equal(server.stats.closed.serverStopped, 1);
    await assert.rejects(
      Deno.connect({ port: server.addr.port }),
      Deno.errors.ConnectionRefused,
    );
    await server.shutdown();
  },
);

engineTest(
  "serveEcho() throws at the call site when it cannot listen",
  async (engine, t) => {
    await using server = serveEcho({ port: 0, engine });
    await t.step("port in use", () => {
      assert.throws(
        () => serveEcho({ port: server.addr.port, engine }),
        Deno.errors.AddrInUse,
      );
    });
    await t.step("options out of range", () => {
      for (
        const options of [
          { port: 70000 },
          { port: -1 },
          { maxConnections: 0 },
          { idleTimeout: -1 },
          { idleTimeout: 1.5 },
          { gracePeriod: 2 ** 31 },
          { mode: "chat", redis: "redis://127.0.0.1:1", redisHold: 0 },
        ] as const
      ) {
        assert.throws(
          () => serveEcho({ port: 0, engine, ...options }),
          RangeError,
        );
      }
      // Redis's other options need a Redis.
      assert.throws(
        () => serveEcho({ port: 0, engine, redisHold: 10 }),
        TypeError,
      );
    });
  },
);

engineTest("serveEcho() defaults to 127.0.0.1", async (engine) => {
  await using server = serveEcho({ port: 0, engine });
  assert.equal(server.addr.hostname, "127.0.0.1");
  assert.equal(server.addr.transport, "tcp");
});

engineTest("serveEcho() listens on IPv6 loopback", async (engine) => {
  await using server = serveEcho({ hostname: "::1", port: 0, engine });
  assert.equal(
    await echoOnce("six", { hostname: "::1", port: server.addr.port }),
    "six",
  );
});

Deno.test("announce() refuses a message with a line break, on every kind of server", async () => {
  const servers = [
    serveEcho({ port: 0 }),
    serveEcho({ port: 0, workers: 2 }),
    serveEcho({ port: 0, udp: "only" }),
    ...ENGINES.includes("native")
      ? [serveEcho({ port: 0, engine: "native" })]
      : [],
  ];
  try {
    for (const server of servers) {
      await server.ready;
      assert.throws(() => server.announce("one\ntwo"), {
        name: "TypeError",
        message: "Cannot announce: the message contains a line break",
      });
      assert.throws(() => server.announce("one\rtwo"), TypeError);
    }
  } finally {
    await Promise.all(servers.map((server) => server.shutdown()));
  }
});
