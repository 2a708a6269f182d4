// Proxy mode (--mode proxy --upstream, serveEcho({ mode: "proxy" })) on
// both engines: every connection forwarded to the upstream and back,
// exactly, with half-close both ways; upstreams over TCP, TLS and a Unix
// socket, with a PROXY header naming the client; faults per direction; an
// upstream that is down closes its clients and is logged once per outage;
// redis-cli works through it, and sees the faults.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { testCertificates } from "./_certs.ts";
import { captureLogs, readAll, writeAll } from "./_helpers.ts";
import { assertUsageErrors, LOCK, SERVER } from "./_process.ts";
import { seeded } from "./_random.ts";
import { type Engine, engineTest } from "./_engines.ts";
import { startRedis } from "./_redis.ts";
import { resolver } from "../lib/upstream/follow.ts";

const bytes = (n: number, seed = 0) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) % 251);

/** A proxy on `engine` in front of `upstream`, with `more` options. */
async function proxyTo(
  engine: Engine,
  upstream: string,
  more: Record<string, unknown> = {},
) {
  const server = serveEcho({
    port: 0,
    engine,
    mode: "proxy",
    upstream,
    ...more,
  });
  await server.ready;
  return server;
}

/**
 * Sends `data` in chunks of random sizes, half-closes, and resolves what
 * came back until the end of stream.
 */
async function exchange(
  port: number,
  data: Uint8Array,
  random: () => number,
): Promise<Uint8Array> {
  using conn = await Deno.connect({ port });
  const reading = readAll(conn);
  for (let at = 0; at < data.length;) {
    const size = 1 + Math.floor(random() * Math.min(data.length - at, 65536));
    await writeAll(conn, data.subarray(at, at + size));
    at += size;
  }
  await conn.closeWrite();
  return await reading;
}

engineTest(
  "10,000 connections of random sizes (up to 1 MiB), random chunks and a half-close come back exact through the proxy",
  async (engine) => {
    await using echo = serveEcho({ port: 0 });
    await using proxy = await proxyTo(engine, `127.0.0.1:${echo.addr.port}`);
    const random = seeded(23);
    const total = 10_000;
    let next = 0;
    let moved = 0;
    const deadline = Date.now() + 240_000;
    const worker = async () => {
      while (next < total && Date.now() < deadline) {
        const i = next++;
        // Log-uniform sizes from 1 byte to 1 MiB: most small, some large.
        const size = Math.floor(2 ** (random() * 20));
        const data = bytes(size, i);
        const back = await exchange(proxy.addr.port, data, random);
        assert.equal(back.length, size, `connection ${i}`);
        assert.deepEqual(back, data, `connection ${i}`);
        moved += size;
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    assert.equal(next, total, "all within the time bound");
    assert.equal(proxy.stats.bytesIn, moved);
    assert.equal(proxy.stats.bytesOut, moved);
    assert.equal(proxy.stats.closed.closedByClient, total);
  },
);

engineTest(
  "half-close both ways: the upstream's answer after the client's end, and the client's bytes after the upstream's",
  async (engine) => {
    using upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    await using proxy = await proxyTo(
      engine,
      `127.0.0.1:${upstream.addr.port}`,
    );
    // The client ends first; the upstream answers after it saw the end.
    {
      using client = await Deno.connect({ port: proxy.addr.port });
      using server = await upstream.accept();
      await writeAll(client, bytes(1000));
      await client.closeWrite();
      assert.deepEqual(await readAll(server), bytes(1000));
      await writeAll(server, bytes(500, 1));
      await server.closeWrite();
      assert.deepEqual(await readAll(client), bytes(500, 1));
    }
    // The upstream ends first (a banner, then its FIN); the client still
    // sends, and the upstream still reads.
    {
      using client = await Deno.connect({ port: proxy.addr.port });
      using server = await upstream.accept();
      await writeAll(server, bytes(300, 2));
      await server.closeWrite();
      assert.deepEqual(await readAll(client), bytes(300, 2));
      await writeAll(client, bytes(700, 3));
      await client.closeWrite();
      assert.deepEqual(await readAll(server), bytes(700, 3));
    }
  },
);

engineTest(
  "upstreams over a Unix socket and over TLS; a PROXY header names the client to the upstream",
  async (engine) => {
    await using certs = await testCertificates();
    const dir = await Deno.makeTempDir();
    try {
      await using _unixEcho = serveEcho({ path: `${dir}/echo.sock` });
      await using viaUnix = await proxyTo(engine, `unix:${dir}/echo.sock`);
      assert.deepEqual(
        await exchange(viaUnix.addr.port, bytes(100_000), seeded(1)),
        bytes(100_000),
      );
      // An info server behind TLS that reads the PROXY header: it tells
      // which client the proxy names.
      await using info = serveEcho({
        port: 0,
        mode: "info",
        cert: certs.cert,
        key: certs.key,
        proxyProtocol: true,
      });
      for (const version of ["v1", "v2"] as const) {
        await using via = await proxyTo(engine, `127.0.0.1:${info.addr.port}`, {
          upstreamTls: { caCerts: [certs.ca], serverName: "localhost" },
          upstreamProxy: version,
        });
        using client = await Deno.connect({ port: via.addr.port });
        const reading = readAll(client);
        await writeAll(
          client,
          new TextEncoder().encode("clientport\ntransport\n"),
        );
        await client.closeWrite();
        const [port, transport] = new TextDecoder().decode(await reading)
          .trim().split("\n");
        assert.equal(port, String(client.localAddr.port), version);
        assert.equal(transport, "tls", version);
      }
      // Bulk both ways over TLS, half-closed: exact.
      await using tlsEcho = serveEcho({
        port: 0,
        cert: certs.cert,
        key: certs.key,
      });
      await using viaTls = await proxyTo(
        engine,
        `127.0.0.1:${tlsEcho.addr.port}`,
        {
          upstreamTls: { caCerts: [certs.ca], serverName: "localhost" },
        },
      );
      assert.deepEqual(
        await exchange(viaTls.addr.port, bytes(2_000_000), seeded(5)),
        bytes(2_000_000),
      );
      // A certificate the proxy does not trust: the client is closed, as
      // for an upstream that cannot be reached.
      await using untrusting = await proxyTo(
        engine,
        `127.0.0.1:${info.addr.port}`,
        {
          upstreamTls: true,
        },
      );
      assert.equal(
        await endSeen(untrusting.addr.port),
        engine === "native" ? "reset" : "close",
      );
      assert.equal(untrusting.stats.upstreamFailures, 1);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

engineTest(
  "faults act per direction through the proxy: what goes upstream, what comes back",
  async (engine) => {
    await using echo = serveEcho({ port: 0 });
    await using proxy = await proxyTo(engine, `127.0.0.1:${echo.addr.port}`, {
      faults: [
        { kind: "limit", bytes: 4000, direction: "receive", name: "up" },
        { kind: "slicer", size: 100, direction: "send", name: "thin" },
      ],
    });
    // Only 4000 bytes reach the upstream, and so come back, sliced.
    assert.deepEqual(
      await exchange(proxy.addr.port, bytes(10_000), seeded(2)),
      bytes(4000),
    );
    await proxy.setFaults([{ kind: "limit", bytes: 10, direction: "send" }]);
    assert.deepEqual(
      await exchange(proxy.addr.port, bytes(10_000), seeded(3)),
      bytes(10),
    );
  },
);

/**
 * How a client of a proxy whose upstream is unreachable sees its end: a
 * reset, or a clean end of stream (with no byte before it).
 */
async function endSeen(port: number): Promise<"reset" | "close"> {
  try {
    // Deno's connect may see the reset already, as it sets the socket up.
    using client = await Deno.connect({ port });
    assert.equal((await readAll(client)).length, 0);
    return "close";
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionReset) return "reset";
    throw error;
  }
}

engineTest(
  "an upstream that is down closes each client (a reset on the native engine, the end of stream on the default one), counted, and logged once per outage",
  async (engine) => {
    const logs = await captureLogs();
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    await using proxy = await proxyTo(engine, `127.0.0.1:${port}`, {
      upstreamTimeout: 2000,
    });
    for (let i = 0; i < 5; i++) {
      assert.equal(
        await endSeen(proxy.addr.port),
        engine === "native" ? "reset" : "close",
      );
    }
    assert.equal(proxy.stats.upstreamFailures, 5);
    const down = logs.find(
      "Upstream {upstream} unreachable: {reason}; its clients are closed until it answers",
    );
    assert.equal(down.length, 1);
    assert.equal(down[0].level, "warning");
    // It comes back: said once, with how many connects failed.
    await using _echo = serveEcho({ port });
    assert.deepEqual(
      await exchange(proxy.addr.port, bytes(10), seeded(4)),
      bytes(10),
    );
    const up = logs.find(
      "Upstream {upstream} answers again, after {ms} ms and {failures} failed connects",
    );
    assert.equal(up.length, 1);
    assert.equal(up[0].properties.failures, 5);
    assert.equal(proxy.stats.closed.error, 5);
  },
);

engineTest(
  "upstreamUnreachable: a clean end when asked, a reset where the engine can; an upstream by host name",
  async (engine) => {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = probe.addr.port;
    probe.close();
    if (engine === "native") {
      await using closing = await proxyTo(engine, `127.0.0.1:${port}`, {
        upstreamUnreachable: "close",
      });
      assert.equal(await endSeen(closing.addr.port), "close");
      assert.equal(closing.stats.closed.error, 1);
    } else {
      assert.throws(
        () =>
          serveEcho({
            port: 0,
            engine,
            mode: "proxy",
            upstream: `127.0.0.1:${port}`,
            upstreamUnreachable: "reset",
          }),
        (error: Error) =>
          error.message ===
            "Cannot use engine: default does not serve a reset for a client whose upstream is unreachable (the native engine does)",
      );
    }
    // A name (from /etc/hosts, so no query leaves this machine): the
    // native engine resolves it as it starts, the default one per connect.
    await using echo = serveEcho({ hostname: "127.0.0.1", port: 0 });
    await using named = await proxyTo(engine, `localhost:${echo.addr.port}`);
    assert.deepEqual(
      await exchange(named.addr.port, bytes(70_000), seeded(9)),
      bytes(70_000),
    );
  },
);

engineTest(
  "redis-cli works through the proxy in front of redis-server, and sees its faults",
  async (engine) => {
    await using redis = await startRedis();
    const socket = `${redis.dir}/redis.sock`;
    await using proxy = await proxyTo(engine, `unix:${socket}`);
    const cli = async (...args: (string | Uint8Array)[]) => {
      const input = args.find((a) => typeof a !== "string") as
        | Uint8Array
        | undefined;
      const child = new Deno.Command("redis-cli", {
        args: [
          "-h",
          "127.0.0.1",
          "-p",
          String(proxy.addr.port),
          ...args.filter((a) => typeof a === "string"),
        ],
        stdin: input === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      if (input !== undefined) {
        const writer = child.stdin.getWriter();
        await writer.write(input);
        await writer.close();
      }
      const out = await child.output();
      const text = new TextDecoder().decode(out.stdout) +
        new TextDecoder().decode(out.stderr);
      return text.trim();
    };
    assert.equal(await cli("SET", "greeting", "hello"), "OK");
    assert.equal(await cli("GET", "greeting"), "hello");
    // A value of 1 MiB goes through and back whole.
    const big = bytes(1024 * 1024);
    assert.equal(await cli("-x", "SET", "big", big), "OK");
    assert.equal(await cli("STRLEN", "big"), String(big.length));
    // What comes back is cut: redis-cli says the server closed.
    await proxy.setFaults([{ kind: "limit", bytes: 0, direction: "send" }]);
    assert.match(
      await cli("GET", "greeting"),
      /Server closed the connection|Connection reset/,
    );
    // Down: every connection closed at once.
    await proxy.setFaults([{ kind: "down" }]);
    assert.match(
      await cli("PING"),
      /Server closed the connection|Connection reset|Error/,
    );
    if (engine === "native") {
      // A reset: redis-cli says so.
      await proxy.setFaults([{ kind: "reset", bytes: 1, direction: "send" }]);
      assert.match(await cli("GET", "greeting"), /Connection reset by peer/);
    }
    await proxy.setFaults([{ kind: "latency", ms: 200 }]);
    const started = performance.now();
    assert.equal(await cli("GET", "greeting"), "hello");
    assert.ok(performance.now() - started >= 400, "200 ms each way");
    await proxy.setFaults([]);
    assert.equal(await cli("PING"), "PONG");
  },
);

Deno.test("--mode proxy's flags and their usage errors", async () => {
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
    [
      [
        ["--mode", "proxy"],
        'Invalid --upstream: mode "proxy" needs an upstream: HOST:PORT or unix:PATH',
      ],
      [
        ["--upstream", "127.0.0.1:6379"],
        'Invalid --upstream: is for mode "proxy"',
      ],
      [
        ["--mode", "proxy", "--upstream", "localhost"],
        "Invalid --upstream: must be HOST:PORT, [ADDRESS]:PORT or unix:PATH, got localhost",
      ],
      [
        ["--mode", "proxy", "--upstream", "h:1", "--send-proxy", "v3"],
        "Invalid --send-proxy: expected one of v1, v2, got 'v3'",
      ],
      [["--upstream-ca", SERVER], "Give --upstream-tls with --upstream-ca"],
      [
        ["--mode", "proxy", "--upstream", "h:1", "--upstream-unreachable", "x"],
        "Invalid --upstream-unreachable: expected one of reset, close, got 'x'",
      ],
      [
        [
          "--mode",
          "proxy",
          "--upstream",
          "h:1",
          "--upstream-unreachable",
          "reset",
        ],
        "Invalid --engine: default does not serve a reset for a client whose upstream is unreachable (the native engine does)",
      ],
      [
        ["--mode", "proxy", "--upstream", "h:1", "--udp"],
        "Invalid --udp: UDP serves echo and info mode only",
      ],
    ],
  );
});

Deno.test({
  name:
    "the native engine follows its upstream's host name: once the name gives another address, new connections go there; a lookup that fails keeps the last address and says so",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const logs = await captureLogs();
    // Two upstreams on one port, each saying which it is: at what the
    // system gives for localhost (127.0.0.1, or ::1 where it ranks first),
    // and at 127.0.0.2.
    const start = await resolver.lookup("localhost");
    using first = Deno.listen({ hostname: start, port: 0 });
    const port = first.addr.port;
    using second = Deno.listen({ hostname: "127.0.0.2", port });
    const serving = [first, second].map(async (listener, i) => {
      for await (const conn of listener) {
        await writeAll(conn, new TextEncoder().encode(`upstream ${i + 1}\n`));
        conn.close();
      }
    });
    let proxyPort = 0;
    const said = async () => {
      using conn = await Deno.connect({ port: proxyPort });
      return new TextDecoder().decode(await readAll(conn));
    };
    // The name as the system gives it at the start (localhost), then as
    // the swapped lookup does: what a DNS record that moved would give.
    const lookup = resolver.lookup;
    let now: string | Error = start;
    resolver.lookup = (name) => {
      assert.equal(name, "localhost");
      return now instanceof Error ? Promise.reject(now) : Promise.resolve(now);
    };
    try {
      await using proxy = await proxyTo("native", `localhost:${port}`);
      proxyPort = proxy.addr.port;
      assert.equal(await said(), "upstream 1\n");
      now = "127.0.0.2";
      const moved = await logs.waitFor((r) =>
        r.rawMessage ===
          "Upstream {upstream} now resolves to {address} (was {was}): new connections go there"
      );
      assert.deepEqual(moved.properties, {
        upstream: `localhost:${port}`,
        address: "127.0.0.2",
        was: start,
      });
      assert.equal(await said(), "upstream 2\n");
      now = new Error("getaddrinfo ENOTFOUND localhost");
      const failed = await logs.waitFor((r) =>
        r.rawMessage ===
          "Cannot look up upstream {upstream} again: {reason}; connections go to {address} meanwhile"
      );
      assert.equal(failed.level, "warning");
      assert.equal(failed.properties.address, "127.0.0.2");
      assert.equal(await said(), "upstream 2\n");
    } finally {
      resolver.lookup = lookup;
      first.close();
      second.close();
      await Promise.allSettled(serving);
    }
  },
});
