// Per-address limits: connections open at once and the connect rate, from
// one address while another keeps being served, across workers, after PROXY
// headers naming many addresses, and from the CLI.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { echoOnce, echoStream, serveEcho } from "../mod.ts";
import { encodeProxyHeader } from "../lib/proxy/header.ts";
import {
  captureLogs,
  LineClient,
  pseudoRandomBytes,
  writeAll,
} from "./_helpers.ts";
import { LOCK, run, SERVER } from "./_process.ts";

const logs = await captureLogs();
const encoder = new TextEncoder();

/** A connection whose PROXY header claims `hostname`. */
async function from(port: number, hostname: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ port });
  await writeAll(
    conn,
    encodeProxyHeader({
      version: 2,
      source: { hostname, port: 1234 },
      destination: { hostname: "10.0.0.1", port: 7 },
    }),
  );
  return conn;
}

/** Whether the server echoes on `conn` (false: it was closed at once). */
async function echoes(conn: Deno.Conn): Promise<boolean> {
  try {
    await writeAll(conn, encoder.encode("x"));
    const one = new Uint8Array(1);
    return (await conn.read(one)) === 1;
  } catch {
    return false;
  }
}

engineTest(
  "maxConnectionsPerIp refuses one address's extra connections; another address is served; closing frees a place",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({
      engine,
      port: 0,
      proxyProtocol: true,
      maxConnectionsPerIp: 3,
    });
    const { port } = server.addr;
    const flood = await Promise.all(
      Array.from({ length: 10 }, () => from(port, "192.0.2.66")),
    );
    const served = await Promise.all(flood.map(echoes));
    assert.equal(served.filter(Boolean).length, 3);
    // Meanwhile another address gets exact echoes.
    await using other = new LineClient(await from(port, "198.51.100.1"));
    await other.send("still served\n");
    await other.line(/^still served$/);
    assert.equal(server.stats.refused.perAddress, 7);
    const record = await logs.waitFor((r) =>
      String(r.rawMessage).startsWith("Refused {peer}: {limit} connections")
    );
    assert.equal(record.properties.peer, "192.0.2.66:1234");
    // One closes: a new one from that address gets its place.
    const open = flood.filter((_, i) => served[i]);
    open[0].close();
    await logs.waitFor((r) =>
      String(r.rawMessage).startsWith("Closed {peer}") &&
      r.properties.peer === "192.0.2.66:1234"
    );
    const again = await from(port, "192.0.2.66");
    assert.ok(await echoes(again));
    again.close();
    for (const [i, conn] of flood.entries()) {
      if (i !== flood.indexOf(open[0])) conn.close();
    }
  },
);

engineTest(
  "connectRate refuses an address's connections over its rate, with a burst of the rate",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      proxyProtocol: true,
      connectRate: 5,
    });
    const { port } = server.addr;
    const results = [];
    for (let i = 0; i < 12; i++) {
      const conn = await from(port, "203.0.113.9");
      results.push(await echoes(conn));
      conn.close();
    }
    // A burst of 5, and perhaps one more token refilled meanwhile.
    const served = results.filter(Boolean).length;
    assert.ok(served >= 5 && served <= 6, `${served} served`);
    assert.equal(server.stats.refused.connectRate, 12 - served);
    // Another address has its own bucket.
    const other = await from(port, "203.0.113.10");
    assert.ok(await echoes(other));
    other.close();
  },
);

engineTest(
  "the limits hold across workers, and 100,000 addresses do not grow the table",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      proxyProtocol: true,
      maxConnectionsPerIp: 4,
      workers: 2,
    });
    await server.ready;
    const { port } = server.addr;
    const conns = await Promise.all(
      Array.from({ length: 20 }, () => from(port, "192.0.2.99")),
    );
    const served = await Promise.all(conns.map(echoes));
    assert.equal(served.filter(Boolean).length, 4);
    assert.deepEqual(server.stats.perWorker.length, 2);
    for (const conn of conns) conn.close();

    // The table is fixed in size: many addresses only share its slots.
    const { Limiter, newLimitsTable, LIMITS_TABLE_BYTES } = await import(
      "../lib/rules/limits.ts"
    );
    const table = newLimitsTable();
    const limiter = new Limiter({
      perAddress: 1000,
      connectRate: 1000,
      ...table,
    });
    for (let i = 0; i < 100_000; i++) {
      const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      assert.equal(limiter.admit(address), undefined, address);
    }
    assert.equal(table.table.byteLength, LIMITS_TABLE_BYTES);
    assert.ok(LIMITS_TABLE_BYTES <= 1024 * 1024);

    // One address at its limit refuses nobody else: a neighbour shares both
    // its slots by chance alone, about once in 16,384² tries. 20,000 seed
    // pairs, 72 neighbours each (10.2.0.1 … 10.9.0.9); an unmixed FNV-1a
    // refused about 28 of them.
    const { table: shared } = newLimitsTable();
    let refused = 0;
    for (let t = 0; t < 20_000; t++) {
      const seeds = crypto.getRandomValues(new Uint32Array(2));
      const one = new Limiter({
        perAddress: 1,
        connectRate: Infinity,
        table: shared,
        seeds: [seeds[0], seeds[1]],
      });
      assert.equal(one.admit("10.1.0.1"), undefined);
      for (let k = 2; k <= 9; k++) {
        for (let m = 1; m <= 9; m++) {
          const neighbour = `10.${k}.0.${m}`;
          if (one.admit(neighbour) !== undefined) refused++;
          else one.release(neighbour);
        }
      }
      one.release("10.1.0.1");
    }
    assert.equal(refused, 0, `${refused} neighbours of 10.1.0.1 refused`);
  },
);

Deno.test("server --max-connections-per-ip and --connect-rate", async () => {
  const bad = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    SERVER,
    "--max-connections-per-ip",
    "0",
  ]);
  assert.equal(bad.code, 2);
  assert.equal(
    bad.stderr,
    "error: Invalid --max-connections-per-ip: expected a positive integer or unlimited, got '0' (see --help)\n",
  );
  const rate = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    SERVER,
    "--connect-rate",
    "x",
  ]);
  assert.equal(rate.code, 2);
  assert.equal(
    rate.stderr,
    "error: Invalid --connect-rate: expected a positive integer or unlimited, got 'x' (see --help)\n",
  );
});

engineTest(
  "maxBytesPerSecond reads a connection no faster than its rate, and its echo stays exact",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      maxBytesPerSecond: 100_000,
    });
    const payload = pseudoRandomBytes(250_000, 8);
    const started = performance.now();
    const echo = await new Response(
      echoStream([payload], { port: server.addr.port }),
    ).bytes();
    const seconds = (performance.now() - started) / 1000;
    assert.deepEqual(echo, payload);
    // A second's burst, then 100,000 bytes a second: at least 1.5 s.
    assert.ok(seconds >= 1.2, `${seconds} s`);
    // Another client is not slowed by it.
    assert.equal(await echoOnce("quick", { port: server.addr.port }), "quick");
  },
);
