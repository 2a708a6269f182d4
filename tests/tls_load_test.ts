// Load tests over TLS and with reconnects: the native engine's load client
// through OpenSSL (verifying the server, presenting a certificate, ALPN,
// SNI, resuming sessions), `reconnectEvery` on both load engines with
// connects and handshakes timed apart, and the CLI's report of them.

import assert from "node:assert/strict";
import { loadTest, serveEcho, type ServeEchoOptions } from "../mod.ts";
import { testCertificates } from "./_certs.ts";
import { ENGINES } from "./_engines.ts";
import { captureLogs } from "./_helpers.ts";
import { assertUsageErrors, CLIENT, LOCK, run } from "./_process.ts";

const logs = await captureLogs();
const decoder = new TextDecoder();
const NATIVE = ENGINES.includes("native");

/**
 * Load options of alice's TLS client against `port`: trusting the test
 * CA, for localhost, presenting her certificate.
 */
function alice(
  certs: Awaited<ReturnType<typeof testCertificates>>,
  port: number,
) {
  return {
    port,
    tls: true,
    caCerts: [certs.ca],
    serverName: "localhost",
    cert: certs.alice.cert,
    key: certs.alice.key,
  } as const;
}

/** A native TLS server with `certs`' certificate, once ready. */
async function nativeTls(
  certs: Awaited<ReturnType<typeof testCertificates>>,
  options: ServeEchoOptions = {},
) {
  const server = serveEcho({
    port: 0,
    engine: "native",
    cert: certs.cert,
    key: certs.key,
    ...options,
  });
  await server.ready;
  return server;
}

Deno.test({
  name:
    "the native load client speaks TLS through OpenSSL: the server verified, a client certificate (after a PROXY header too), ALPN and SNI; every byte checked",
  ignore: !NATIVE,
  fn: async () => {
    await using certs = await testCertificates();
    logs.clear();
    await using server = await nativeTls(certs, {
      clientCa: certs.ca,
      alpnProtocols: ["echo/1"],
      sni: [{
        hostname: "other.example",
        cert: certs.other.cert,
        key: certs.other.key,
      }],
      proxyProtocol: true,
      trustedProxies: ["127.0.0.1"],
    });
    const options = {
      ...alice(certs, server.addr.port),
      alpnProtocols: ["x", "echo/1"],
      sendProxy: "v2",
      proxySource: "192.0.2.7:4000",
      engine: "native",
    } as const;
    // 40 kB: several TLS records each way.
    const report = await loadTest({
      ...options,
      connections: 4,
      count: 200,
      message: 40_000,
    });
    assert.deepEqual(report.errorMessages, []);
    assert.equal(report.roundTrips, 200);
    assert.equal(report.handshakes, 4);
    assert.equal(report.nativeIo, "epoll");
    const opened = logs.find("Opened {peer} for {clientCert} ({active} open)");
    assert.equal(opened.length, 4);
    for (const record of opened) {
      assert.equal(record.properties.clientCert, "CN=alice,O=Example");
      assert.equal(record.properties.alpn, "echo/1");
      assert.match(String(record.properties.peer), /^192\.0\.2\.7:4000/);
    }
    // SNI: the other certificate, for the other name.
    const other = await loadTest({
      ...options,
      serverName: "other.example",
      count: 10,
    });
    assert.deepEqual(other.errorMessages, []);
    assert.equal(other.roundTrips, 10);
  },
});

Deno.test({
  name:
    "the native load client speaks TLS over a Unix socket, which Deno's client cannot",
  ignore: !NATIVE,
  fn: async () => {
    await using certs = await testCertificates();
    const path = `${certs.dir}/tls.sock`;
    await using server = serveEcho({
      path,
      engine: "native",
      cert: certs.cert,
      key: certs.key,
    });
    await server.ready;
    const report = await loadTest({
      path,
      tls: true,
      caCerts: [certs.ca],
      engine: "native",
      connections: 2,
      countPerConnection: 20,
      reconnectEvery: 10,
    });
    assert.deepEqual(report.errorMessages, []);
    assert.equal(report.roundTrips, 40);
    assert.equal(report.handshakes, 4);
    await assert.rejects(
      loadTest({ path, tls: true, caCerts: [certs.ca], count: 1 }),
      /TLS is spoken on TCP only/,
    );
  },
});

Deno.test({
  name:
    "the native load client refuses a server it cannot verify, with X.509's reason; its option errors name the option",
  ignore: !NATIVE,
  fn: async () => {
    await using certs = await testCertificates();
    await using server = await nativeTls(certs);
    const base = {
      port: server.addr.port,
      tls: true,
      caCerts: [certs.ca],
      serverName: "localhost",
      engine: "native",
      connections: 2,
      count: 10,
    } as const;
    for (
      const [extra, reason] of [
        [{ caCerts: [certs.stranger.cert] }, /unable to get local issuer/],
        [{ serverName: "elsewhere.example" }, /hostname mismatch/],
      ] as const
    ) {
      const report = await loadTest({ ...base, ...extra });
      assert.equal(report.connectErrors, 2, report.errorMessages.join("\n"));
      assert.match(
        report.errorMessages[0],
        new RegExp(
          `^TLS handshake: certificate verify failed: .*${reason.source}`,
        ),
      );
      assert.equal(report.roundTrips, 0);
    }
    for (
      const [extra, option] of [
        [{ cert: "junk", key: certs.alice.key }, "cert"],
        [{ cert: certs.alice.cert }, "key"],
        [{ nativeIo: "io_uring" }, "nativeIo"],
      ] as const
    ) {
      await assert.rejects(
        loadTest({ ...base, ...extra }),
        (error: Error & { option?: string }) =>
          error instanceof TypeError && error.option === option,
      );
    }
  },
});

for (const engine of ENGINES) {
  Deno.test({
    name:
      `sourceAddresses with TLS and a PROXY header: each connection from its source, the header naming it, a client certificate, ALPN; a server not verified is a handshake error [${engine} load client]`,
    ignore: !NATIVE,
    fn: async () => {
      await using certs = await testCertificates();
      logs.clear();
      // The server that verifies client certificates and reads headers.
      await using server = await nativeTls(certs, {
        clientCa: certs.ca,
        alpnProtocols: ["echo/1"],
        proxyProtocol: true,
        trustedProxies: ["127.0.0.0/8"],
      });
      const base = {
        ...alice(certs, server.addr.port),
        alpnProtocols: ["echo/1"],
        sourceAddresses: ["127.0.0.0/29"],
        engine,
      } as const;
      for (const sendProxy of ["v1", "v2"] as const) {
        logs.clear();
        // 20 kB: several TLS records each way.
        const report = await loadTest({
          ...base,
          sendProxy,
          connections: 12,
          count: 120,
          message: 20_000,
        });
        assert.deepEqual(report.errorMessages, []);
        assert.equal(report.roundTrips, 120);
        assert.equal(report.handshakes, 12);
        const hosts = ["1", "2", "3", "4", "5", "6"].map((h) => `127.0.0.${h}`);
        assert.deepEqual(
          report.sourceConnects,
          Object.fromEntries(hosts.map((h) => [h, 2])),
        );
        // The header names each connection's own source: its address and
        // a port of its own.
        const opened = logs.find(
          "Opened {peer} for {clientCert} ({active} open)",
        );
        assert.equal(opened.length, 12);
        const peers = opened.map((r) => String(r.properties.peer));
        assert.equal(new Set(peers).size, 12);
        for (const host of hosts) {
          assert.equal(
            peers.filter((p) => p.startsWith(`${host}:`)).length,
            2,
            peers.join(" "),
          );
        }
        for (const record of opened) {
          assert.equal(record.properties.clientCert, "CN=alice,O=Example");
          assert.equal(record.properties.alpn, "echo/1");
        }
      }
      // A source the header claims instead.
      logs.clear();
      const claimed = await loadTest({
        ...base,
        sendProxy: "v2",
        proxySource: "192.0.2.7:4000",
        connections: 2,
        count: 4,
      });
      assert.deepEqual(claimed.errorMessages, []);
      const opened = logs.find(
        "Opened {peer} for {clientCert} ({active} open)",
      );
      assert.equal(opened.length, 2);
      for (const record of opened) {
        assert.match(String(record.properties.peer), /^192\.0\.2\.7:4000/);
      }
      // A server this client cannot verify.
      const stranger = await loadTest({
        ...base,
        sendProxy: "v1",
        caCerts: [certs.stranger.cert],
        connections: 2,
        count: 4,
      });
      assert.equal(stranger.connectErrors, 2, stranger.errorMessages.join());
      assert.equal(stranger.roundTrips, 0);
      assert.match(
        stranger.errorMessages[0],
        /TLS handshake.*(certif|issuer)/i,
      );
    },
  });
}

for (const engine of ENGINES) {
  Deno.test(`reconnectEvery opens a connection every N round trips; connects and handshakes are timed apart [${engine} load client]`, async () => {
    await using certs = await testCertificates();
    // The server's engine that serves client certificates and resumption.
    await using server = NATIVE
      ? await nativeTls(certs, { clientCa: certs.ca })
      : serveEcho({ port: 0, cert: certs.cert, key: certs.key });
    await server.ready;
    const report = await loadTest({
      port: server.addr.port,
      tls: true,
      caCerts: [certs.ca],
      hostname: "localhost",
      ...(NATIVE ? { cert: certs.alice.cert, key: certs.alice.key } : {}),
      engine,
      connections: 2,
      countPerConnection: 10,
      reconnectEvery: 3,
    });
    assert.deepEqual(report.errorMessages, []);
    assert.equal(report.roundTrips, 20);
    // 10 round trips, 3 on a connection: 4 connections each.
    assert.equal(report.connected, 8);
    assert.equal(report.connects, 8);
    assert.equal(report.handshakes, 8);
    assert.ok(report.connectLatencyUs.max > 0);
    assert.ok(report.handshakeLatencyUs!.p50 > 0);
    assert.ok(report.handshakesPerSecond! > 0);
    if (engine === "native") {
      // Each slot's later connections resume its first one's session.
      assert.equal(report.resumedHandshakes, 6);
    }

    // Plain TCP: one connect a round trip, no handshakes.
    await using plain = serveEcho({ port: 0, engine });
    await plain.ready;
    const tcp = await loadTest({
      port: plain.addr.port,
      engine,
      countPerConnection: 5,
      reconnectEvery: 1,
    });
    assert.equal(tcp.roundTrips, 5);
    assert.equal(tcp.connects, 5);
    assert.equal(tcp.handshakes, undefined);
    assert.equal(plain.stats.accepted, 5);
  });
}

Deno.test("reconnectEvery is checked: a positive integer, not for UDP", async () => {
  await assert.rejects(loadTest({ reconnectEvery: 0 }), {
    name: "RangeError",
  });
  await assert.rejects(
    loadTest({ udp: true, reconnectEvery: 2 }),
    (error: Error & { option?: string }) =>
      error instanceof TypeError && error.option === "reconnectEvery" &&
      /UDP has no connections/.test(error.message),
  );
});

Deno.test({
  name:
    "the CLI's --reconnect-every reports connects and handshakes (resumed ones too), and a bad value is a usage error",
  ignore: !NATIVE,
  fn: async () => {
    await using certs = await testCertificates();
    await using server = await nativeTls(certs, { clientCa: certs.ca });
    const result = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      "--allow-ffi",
      CLIENT,
      ...["--port", String(server.addr.port), "--tls", "--ca", certs.caFile],
      ...["--server-name", "localhost", "--engine", "native"],
      ...["--tls-cert", certs.alice.certFile, "--tls-key", certs.alice.keyFile],
      ...["--connections", "2", "--max-count", "10", "--reconnect-every", "5"],
    ]);
    assert.equal(result.code, 0, result.stderr);
    const out = decoder.decode(result.stdout);
    assert.match(
      out,
      /^target {7}127\.0\.0\.1:\d+, 2 connections, 4 opened in turn, 64-byte messages$/m,
    );
    assert.match(out, /^connects {5}4: p50 .*, max /m);
    assert.match(
      out,
      /^handshakes {3}4 \([\d,]+\/s, 2 resumed\): p50 .*, max /m,
    );
    await assertUsageErrors(
      [Deno.execPath(), "run", LOCK, "--unstable-net", "--allow-net", CLIENT],
      [
        [
          ["--reconnect-every", "0"],
          "Invalid --reconnect-every: must be a positive integer, got 0",
        ],
        [
          ["--udp", "--reconnect-every", "2"],
          "Invalid --reconnect-every: UDP has no connections",
        ],
      ],
    );
  },
});
