// serveEcho({ workers }): listeners in Web Workers sharing one port. The relay
// modes across workers are in serve_echo_relay_test.ts; here: exact echo,
// spread, counters and logs, the shared connection limit, shutdown and the
// hard stop, and chat names and rooms spanning workers.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { echoOnce, type EchoServer, serveEcho } from "../mod.ts";
import {
  captureLogs,
  exchange,
  LineClient,
  localPeer,
  pseudoRandomBytes,
  readAll,
  readExactly,
  writeAll,
} from "./_helpers.ts";

const logs = await captureLogs();

/** Which worker accepted each connection, from the "Opened" records. */
function workerOf(peer: string): Promise<number> {
  return logs.waitFor((r) =>
    r.rawMessage.toString().startsWith("Opened") && r.properties.peer === peer
  ).then((r) => r.properties.worker as number);
}

/** Opens `count` connections and waits until the server has them all. */
async function openMany(
  server: EchoServer,
  count: number,
): Promise<Deno.TcpConn[]> {
  const conns = await Promise.all(
    Array.from(
      { length: count },
      () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    ),
  );
  await Promise.all(conns.map((c) => workerOf(localPeer(c))));
  return conns;
}

engineTest(
  "workers: 1000 connections echo exactly, spread within ±20 %, counters add up",
  async (engine) => {
    logs.clear();
    const server = serveEcho({ engine, port: 0, workers: 2 });
    await server.ready;
    let bytes = 0;
    for (let batch = 0; batch < 10; batch++) {
      const payloads = Array.from(
        { length: 100 },
        (_, i) => pseudoRandomBytes(1 + (batch * 100 + i) * 37 % 5000, i + 1),
      );
      const echoes = await Promise.all(
        payloads.map((p) => exchange(server.addr.port, [p])),
      );
      echoes.forEach((echoed, i) => assert.deepEqual(echoed, payloads[i]));
      bytes += payloads.reduce((sum, p) => sum + p.length, 0);
    }
    await server.shutdown();
    const stats = server.stats;
    assert.equal(stats.accepted, 1000);
    assert.equal(stats.active, 0);
    assert.equal(stats.bytesIn, bytes);
    assert.equal(stats.bytesOut, bytes);
    assert.equal(stats.perWorker.length, 2);
    assert.equal(stats.perWorker[0] + stats.perWorker[1], 1000);
    for (const n of stats.perWorker) {
      assert.ok(n >= 400 && n <= 600, `spread: ${stats.perWorker}`);
    }
    // Each worker's records reach the application's sinks, with its number.
    const closed = logs.records.filter((r) =>
      r.rawMessage.toString().startsWith("Closed")
    );
    assert.equal(closed.length, 1000);
    for (const worker of [0, 1]) {
      assert.equal(
        closed.filter((r) => r.properties.worker === worker).length,
        stats.perWorker[worker],
      );
    }
  },
);

engineTest(
  "workers: maxConnections counts the connections of every worker",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({
      engine,
      port: 0,
      workers: 2,
      maxConnections: 10,
    });
    await server.ready;
    const conns = await openMany(server, 10);
    const extra = await Promise.all(
      Array.from(
        { length: 5 },
        () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
      ),
    );
    try {
      // Rejected ones are closed at once, whichever worker took them.
      let rejected = 0;
      await logs.waitFor((r) =>
        r.rawMessage.toString().startsWith("Rejected") && ++rejected === 5
      );
      for (const conn of extra) assert.equal((await readAll(conn)).length, 0);
      assert.equal(server.stats.rejected, 5);
      assert.equal(server.stats.active, 10);
      assert.ok(server.stats.perWorker.every((n) => n > 0));
      for (const conn of conns) {
        await writeAll(conn, new Uint8Array([1, 2, 3]));
        assert.deepEqual(await readExactly(conn, 3), new Uint8Array([1, 2, 3]));
      }
    } finally {
      for (const conn of [...conns, ...extra]) conn.close();
    }
  },
);

Deno.test("workers: shutdown() lets every worker's clients finish, then resolves", async () => {
  logs.clear();
  const server = serveEcho({ port: 0, workers: 2, gracePeriod: 60_000 });
  await server.ready;
  const conns = await openMany(server, 20);
  const workers = new Set(
    await Promise.all(conns.map((c) => workerOf(localPeer(c)))),
  );
  assert.deepEqual([...workers].sort(), [0, 1]);
  const payload = pseudoRandomBytes(100_000);
  for (const conn of conns) await writeAll(conn, payload.subarray(0, 50_000));
  const shutdown = server.shutdown();
  // New connections are refused (or reset) on every worker...
  await logs.waitFor((r) =>
    r.rawMessage === "Stopped accepting on {address}" &&
    r.properties.worker === 1
  );
  // ...while the open ones are served to the end.
  const echoes = await Promise.all(conns.map(async (conn) => {
    const reading = readAll(conn);
    await writeAll(conn, payload.subarray(50_000));
    await conn.closeWrite();
    const echoed = await reading;
    conn.close();
    return echoed;
  }));
  for (const echoed of echoes) assert.deepEqual(echoed, payload);
  await shutdown;
  assert.equal(server.stats.active, 0);
  assert.equal(server.stats.accepted, 20);
  // Said once, at info, for the whole server; each worker at debug.
  const shuttingDown = logs.records.filter((r) =>
    r.rawMessage.toString().startsWith("Shutting down")
  );
  const info = shuttingDown.filter((r) => r.level === "info");
  assert.equal(info.length, 1);
  assert.equal(info[0].properties.active, 20);
  assert.equal(
    info[0].rawMessage,
    "Shutting down: {active} connections open, grace period {gracePeriod} ms",
  );
  assert.deepEqual(
    shuttingDown.filter((r) => r.level === "debug").map((r) =>
      r.properties.worker
    ),
    [1],
  );
});

Deno.test("workers: aborting the signal closes every worker's connections at once", async () => {
  logs.clear();
  const controller = new AbortController();
  const server = serveEcho({
    port: 0,
    workers: 2,
    signal: controller.signal,
  });
  await server.ready;
  const conns = await openMany(server, 20);
  controller.abort();
  await server.finished;
  for (const conn of conns) {
    // Closed by the server: EOF or a reset, never a hang.
    await readAll(conn).catch(() => {});
    conn.close();
  }
  assert.equal(server.stats.active, 0);
  // Said once, at info, for the whole server; each worker at debug.
  const stopped = logs.records.filter((r) =>
    r.rawMessage.toString().startsWith("Stopping now")
  );
  assert.deepEqual(
    stopped.map((r) => [r.level, r.properties.worker]),
    [["info", undefined], ["debug", 1]],
  );
});

engineTest(
  "workers: a chat spans workers: one set of names, rooms and /who",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({
      engine,
      port: 0,
      mode: "chat",
      workers: 2,
    });
    await server.ready;
    const clients = await Promise.all(
      Array.from({ length: 20 }, () => LineClient.connect(server.addr.port)),
    );
    try {
      await Promise.all(clients.map((c) => c.line(/^\* welcome/)));
      const names = clients.map((c) => c.lines[0].match(/you are (\w+);/)![1]);
      assert.equal(new Set(names).size, 20);
      const worker = await Promise.all(
        clients.map((c) => workerOf(localPeer(c.conn))),
      );
      const alice = clients[worker.indexOf(0)];
      const bob = clients[worker.indexOf(1)];
      assert.ok(alice && bob, `all on one worker: ${worker}`);
      await alice.send("/nick alice\n");
      await bob.line(/is now alice$/);
      await bob.send("/nick ALICE\n/who\n");
      assert.equal(await bob.line(/^ERR/), "ERR name taken: ALICE");
      const who = await bob.line(/^\* in lobby/);
      assert.match(who, /^\* in lobby \(20\): /);
      assert.ok(who.includes("alice"));
      await bob.send("/join side\nhi from side\n");
      await alice.line(/ left lobby$/);
      await alice.send("/join side\n");
      await bob.line(/^\* alice joined side$/);
      // History crossed workers too (each worker writes its own clients'
      // lines: alice's may come after bob's notice).
      await alice.line(/> hi from side$/);
    } finally {
      await Promise.all(clients.map((c) => c[Symbol.asyncDispose]()));
    }
  },
);

Deno.test("workers: options are checked before any worker starts", () => {
  assert.throws(() => serveEcho({ workers: 0 }), RangeError);
  assert.throws(() => serveEcho({ workers: 1.5 }), RangeError);
  assert.throws(() => serveEcho({ workers: 2, port: -1 }), RangeError);
});

engineTest(
  "workers: a port held by another server throws AddrInUse, shared or not",
  async (engine) => {
    await using shared = serveEcho({ engine, port: 0, workers: 2 });
    await using plain = serveEcho({ engine, port: 0 });
    for (const port of [shared.addr.port, plain.addr.port]) {
      assert.throws(
        () => serveEcho({ engine, port, workers: 2, mode: "line" }),
        Deno.errors.AddrInUse,
      );
    }
    await shared.ready;
    assert.equal(
      await echoOnce("exit", { port: shared.addr.port }),
      "exit",
    );
  },
);
