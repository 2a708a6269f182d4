// TLS: serveEcho({ cert, key }) and the clients' `tls`, handshake failures
// (plaintext, garbage, silence, a rejected certificate) closed on time and
// counted, exact half-close repeated, workers, bad certificates, the CLIs,
// and openssl s_client and socat as peers both ways.

import assert from "node:assert/strict";
import {
  echoOnce,
  echoStream,
  loadTest,
  serveEcho,
  type ServeEchoOptions,
} from "../mod.ts";
import { serveMetrics } from "../metrics.ts";
import { tlsHint } from "../lib/cli/tls_hints.ts";
import { type TestCertificates, testCertificates } from "./_certs.ts";
import { engineTest } from "./_engines.ts";
import {
  captureLogs,
  LineClient,
  pseudoRandomBytes,
  readAll,
  writeAll,
} from "./_helpers.ts";
import {
  assertUsageErrors,
  CLIENT,
  LOCK,
  run,
  SERVER,
  ServerProcess,
  Spawned,
  writeStdin,
} from "./_process.ts";

const logs = await captureLogs();
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Waits until `count` TLS handshake failures are logged (a native loop
 * counts at once and logs in batches); returns their reasons, in order.
 */
async function failuresLogged(count: number): Promise<string[]> {
  const template = "TLS handshake with {peer} failed: {reason}";
  await logs.waitFor(() => logs.find(template).length >= count);
  return logs.find(template).map((r) => String(r.properties.reason));
}

/** A TLS server with `certs`' certificate, and `options`, once ready. */
async function serveTls(
  certs: TestCertificates,
  options: ServeEchoOptions = {},
) {
  const server = serveEcho({
    port: 0,
    cert: certs.cert,
    key: certs.key,
    ...options,
  });
  await server.ready;
  return server;
}

/** A native server that asks for client certificates by `certs`' CA. */
function clientCaServer(
  certs: TestCertificates,
  options: ServeEchoOptions = {},
) {
  return serveTls(certs, { engine: "native", clientCa: certs.ca, ...options });
}

/** Deno's TLS connection to `localhost:port`, trusting `certs`' CA. */
function connectTls(certs: TestCertificates, port: number) {
  return Deno.connectTls({ hostname: "localhost", port, caCerts: [certs.ca] });
}

/** What our clients need to trust the test server. */
function trust(certs: TestCertificates, port: number) {
  return {
    port,
    tls: true,
    caCerts: [certs.ca],
    serverName: "localhost",
  } as const;
}

engineTest(
  "serveEcho({ cert, key }) echoes exactly through a half-close, 30 times in a row",
  async (engine) => {
    await using certs = await testCertificates();
    await using server = await serveTls(certs, { engine });
    const { port } = server.addr;
    assert.equal(
      await echoOnce("hi over TLS", trust(certs, port)),
      "hi over TLS",
    );
    // A 1-in-3 failure passes 30 runs with a chance of (2/3)^30, 5 in a million.
    for (let i = 0; i < 30; i++) {
      const payload = pseudoRandomBytes(256 * 1024 + i, i);
      const echo = await new Response(echoStream([payload], trust(certs, port)))
        .bytes();
      assert.deepEqual(echo, payload, `run ${i}`);
    }
    const report = await loadTest({
      ...trust(certs, port),
      connections: 10,
      count: 500,
    });
    assert.equal(report.roundTrips, 500);
    assert.equal(
      report.connectErrors + report.mismatches + report.otherErrors,
      0,
    );
    assert.equal(server.stats.accepted, 41);
    assert.equal(server.stats.handshakeFailures, 0);
  },
);

engineTest(
  "over TLS, broadcast and chat relay lines, and the idle timeout closes",
  async (engine, t) => {
    await using certs = await testCertificates();
    for (const mode of ["broadcast", "chat"] as const) {
      await t.step(mode, async () => {
        await using server = await serveTls(certs, { mode, engine });
        const connect = async () =>
          new LineClient(
            await connectTls(certs, server.addr.port),
          );
        logs.clear();
        await using a = await connect();
        await using b = await connect();
        // Deno's client handshakes lazily, and a member joins once the
        // server has finished its handshake: both are in before b speaks.
        await logs.waitFor((r) =>
          String(r.rawMessage).startsWith("Opened") && r.properties.active === 2
        );
        await b.send("b is here\n");
        await a.line(/b is here$/);
        await a.send("hello\n");
        // Handshakes finish in any order: a may be user1 or user2.
        await b.line(mode === "chat" ? /^<user\d> hello$/ : /^hello$/);
      });
    }
    await t.step("idle timeout", async () => {
      await using server = await serveTls(certs, { idleTimeout: 200, engine });
      using conn = await connectTls(certs, server.addr.port);
      await writeAll(conn, encoder.encode("x"));
      assert.deepEqual(await readAll(conn), encoder.encode("x"));
    });
  },
);

engineTest(
  "plaintext, garbage, silent and distrustful clients are handshake failures, closed on time; others go on",
  async (engine) => {
    await using certs = await testCertificates();
    logs.clear();
    await using server = await serveTls(certs, {
      handshakeTimeout: 300,
      engine,
    });
    const { port } = server.addr;
    // A good client echoes throughout.
    await using good = new LineClient(
      await connectTls(certs, port),
    );
    await good.send("before\n");
    await good.line(/^before$/);

    // Plaintext: an alert at most, then the end of the stream.
    using plain = await Deno.connect({ port });
    await writeAll(plain, encoder.encode("GET / HTTP/1.0\r\n\r\n"));
    await readAll(plain);
    // Garbage that looks like a TLS record header.
    using garbage = await Deno.connect({ port });
    await writeAll(garbage, new Uint8Array([22, 3, 1, 0, 5, 1, 2, 3, 4, 5]));
    await readAll(garbage);
    // Silent clients: closed once the handshake timeout is over, all of them.
    const started = performance.now();
    const silent = await Promise.all(
      Array.from({ length: 10 }, () => Deno.connect({ port })),
    );
    for (const conn of silent) {
      assert.deepEqual(await readAll(conn), new Uint8Array());
      conn.close();
    }
    const waited = performance.now() - started;
    assert.ok(waited >= 250 && waited < 5000, `closed after ${waited} ms`);
    // A client that does not trust the certificate.
    await assert.rejects(
      () => echoOnce("x", { port, tls: true, serverName: "localhost" }),
      (error: Error) =>
        error instanceof Deno.errors.InvalidData &&
        /^TLS handshake with localhost failed: invalid peer certificate/.test(
          error.message,
        ),
    );
    // Counted (shared memory) before logged (a loop's records come in
    // batches): wait for the records.
    await failuresLogged(13);

    await good.send("after\n");
    await good.line(/^after$/);
    assert.equal(server.stats.accepted, 1);
    const failures = logs.find("TLS handshake with {peer} failed: {reason}");
    const reasons = failures.map((r) => String(r.properties.reason));
    assert.equal(reasons.filter((r) => r === "handshake timed out").length, 10);
    assert.ok(reasons.some((r) => r.startsWith("not TLS")), reasons.join("\n"));
    const by = server.stats.handshakeFailuresBy;
    assert.equal(by.timeout, 10, reasons.join("\n"));
    assert.equal(by.certificate, 1, reasons.join("\n"));
    assert.equal(by.notTls + by.protocol, 2, reasons.join("\n"));
    assert.ok(by.notTls >= 1, reasons.join("\n"));
    for (const record of failures) {
      assert.match(String(record.properties.peer), /^127\.0\.0\.1:\d+$/);
    }
  },
);

engineTest("TLS works with workers, and on IPv6", async (engine) => {
  await using certs = await testCertificates();
  await using server = serveEcho({
    hostname: "::1",
    port: 0,
    cert: certs.cert,
    key: certs.key,
    workers: 2,
    engine,
  });
  await server.ready;
  const { port } = server.addr;
  const options = { ...trust(certs, port), hostname: "::1" };
  const replies = await Promise.all(
    Array.from({ length: 40 }, (_, i) => echoOnce(`w${i}`, options)),
  );
  replies.forEach((reply, i) => assert.equal(reply, `w${i}`));
  assert.equal(server.stats.accepted, 40);
});

engineTest(
  "handshakeTimeout 0 waits for a silent client until shutdown, which closes it; exact echoes, failures counted, rotation",
  async (engine) => {
    await using certs = await testCertificates();
    const server = serveEcho({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      handshakeTimeout: 0,
      gracePeriod: 100,
      engine,
    });
    await server.ready;
    const { port } = server.addr;
    using silent = await Deno.connect({ port });
    for (let i = 0; i < 5; i++) {
      const payload = pseudoRandomBytes(200 * 1024 + i, i + 100);
      const echo = await new Response(
        echoStream([payload], trust(certs, port)),
      ).bytes();
      assert.deepEqual(echo, payload, `run ${i}`);
    }
    using plain = await Deno.connect({ port });
    await writeAll(plain, encoder.encode("GET / HTTP/1.0\r\n\r\n"));
    await readAll(plain);
    await logs.waitFor(() => server.stats.handshakeFailures === 1);
    await server.reloadTls({ cert: certs.other.cert, key: certs.other.key });
    assert.equal(
      await echoOnce("rotated", {
        ...trust(certs, port),
        serverName: "other.example",
      }),
      "rotated",
    );
    // The silent client is still there, in its handshake, and shutdown
    // closes it.
    assert.equal(server.stats.handshakeFailures, 1);
    await server.shutdown();
    const bytes = await readAll(silent).catch(() => new Uint8Array());
    assert.equal(bytes.length, 0);
  },
);

engineTest(
  "over TLS, the connection limit refuses the extra client, and shutdown ends the others cleanly",
  async (engine) => {
    await using certs = await testCertificates();
    const server = serveEcho({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      maxConnections: 1,
      gracePeriod: 200,
      engine,
    });
    await server.ready;
    const connect = () => connectTls(certs, server.addr.port);
    using first = await connect();
    await writeAll(first, encoder.encode("one"));
    const three = new Uint8Array(3);
    assert.equal(await first.read(three), 3);
    // Over the limit: closed at once, after its handshake.
    using second = await connect();
    await writeAll(second, encoder.encode("two")).catch(() => {});
    assert.deepEqual(await readAll(second), new Uint8Array());
    assert.equal(server.stats.rejected, 1);
    // The grace period ends the first politely: a clean end of stream.
    const shutdown = server.shutdown();
    assert.equal(await first.read(three), null);
    first.close();
    await shutdown;
    assert.equal(server.stats.active, 0);
  },
);

engineTest(
  "bad certificates and keys are option errors, thrown at once",
  async (engine) => {
    await using certs = await testCertificates();
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ cert: "hello", key: certs.key }, "cert", /no PEM certificate/],
      [{ cert: certs.cert, key: "junk" }, "key", /no PEM private key/],
      [{ cert: certs.cert, key: certs.otherKey }, "key", /does not belong/],
      [{ cert: certs.cert }, "key", /must be given with cert/],
      [{ key: certs.key }, "cert", /must be given with key/],
    ];
    for (const [options, option, reason] of cases) {
      assert.throws(
        () => serveEcho({ port: 0, ...options, engine }),
        (error: TypeError & { option: string; reason: string }) =>
          error instanceof TypeError && error.option === option &&
          reason.test(error.reason),
        JSON.stringify(Object.keys(options)),
      );
    }
  },
);

engineTest(
  "openssl s_client and socat OPENSSL: talk to our server; our client talks to socat OPENSSL-LISTEN",
  async (engine) => {
    await using certs = await testCertificates();
    await using server = await serveTls(certs, { engine });
    const port = String(server.addr.port);
    // socat half-closes (close_notify, then FIN) at the end of its input.
    const payload = pseudoRandomBytes(1024 * 1024 + 5, 77);
    const socat = await run("socat", [
      "-t",
      "30",
      "-",
      `OPENSSL:127.0.0.1:${port},cafile=${certs.caFile},commonname=localhost`,
    ], payload);
    assert.equal(socat.code, 0, socat.stderr);
    assert.deepEqual(socat.stdout, payload);

    // openssl s_client verifies our chain; line mode ends on "quit".
    await using lines = await serveTls(certs, { mode: "line", engine });
    const openssl = await run("openssl", [
      "s_client",
      "-connect",
      `127.0.0.1:${lines.addr.port}`,
      "-CAfile",
      certs.caFile,
      "-verify_return_error",
      "-verify_hostname",
      "localhost",
      "-quiet",
      "-ign_eof",
    ], encoder.encode("hello from openssl\nquit\n"));
    assert.equal(openssl.code, 0, openssl.stderr);
    assert.equal(decoder.decode(openssl.stdout), "hello from openssl\n");

    // Our clients against socat's TLS server running cat.
    await using peer = new Spawned("socat", [
      "-d",
      "-d",
      `OPENSSL-LISTEN:0,bind=127.0.0.1,reuseaddr,fork,cert=${certs.certFile},key=${certs.keyFile},verify=0`,
      "EXEC:cat",
    ]);
    const listening = await peer.stderr.waitFor(/listening on .*:(\d+)/);
    const peerPort = Number(listening.match(/:(\d+)\s*$/)![1]);
    assert.equal(
      await echoOnce("to socat", trust(certs, peerPort)),
      "to socat",
    );
    const bytes = pseudoRandomBytes(300_000, 5);
    assert.deepEqual(
      await new Response(echoStream([bytes], trust(certs, peerPort))).bytes(),
      bytes,
    );
  },
);

/** `deno run server.ts` with what TLS needs (read access for the files). */
function tlsServer(args: string[]): Promise<ServerProcess> {
  return ServerProcess.start(args, [
    Deno.execPath(),
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    SERVER,
  ]);
}

function tlsClient(args: string[], env: Record<string, string> = {}) {
  return run(
    Deno.execPath(),
    [
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      CLIENT,
      ...args,
    ],
    undefined,
    undefined,
    env,
  );
}

Deno.test("server --tls-cert/--tls-key and client --tls --ca --server-name", async () => {
  await using certs = await testCertificates();
  await using server = await tlsServer([
    "--tls-cert",
    certs.certFile,
    "--tls-key",
    certs.keyFile,
    "--handshake-timeout",
    "500",
  ]);
  const port = String(server.port);
  const hi = await tlsClient([
    "--tls",
    "--ca",
    certs.caFile,
    "--server-name",
    "localhost",
    "--port",
    port,
    "hi",
  ]);
  assert.equal(hi.code, 0, hi.stderr);
  assert.equal(decoder.decode(hi.stdout), "hi\n");
  const load = await tlsClient([
    "--tls",
    "--ca",
    certs.caFile,
    "--hostname",
    "localhost",
    "--port",
    port,
    "--connections",
    "4",
    "--count",
    "200",
    "--json",
  ]);
  assert.equal(load.code, 0, load.stderr);
  assert.equal(JSON.parse(decoder.decode(load.stdout)).roundTrips, 200);

  // Interactively, line by line, over TLS.
  const session = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    CLIENT,
    "--tls",
    "--ca",
    certs.caFile,
    "--server-name",
    "localhost",
    "--port",
    port,
    "--interactive",
  ], encoder.encode("one\ntwo\n"));
  assert.equal(session.code, 0, session.stderr);
  assert.equal(decoder.decode(session.stdout), "one\ntwo\n");

  // The system's trust store does not know our CA: exit 1, one line.
  const untrusted = await tlsClient(
    ["--tls", "--server-name", "localhost", "--port", port, "hi"],
    { DENO_TLS_CA_STORE: "system" },
  );
  assert.equal(untrusted.code, 1);
  assert.match(
    untrusted.stderr,
    /^error: Echo via 127\.0\.0\.1:\d+ failed: TLS handshake with localhost failed: invalid peer certificate: UnknownIssuer \(the server's certificate is not signed by an authority this client trusts: name that authority's certificate with --ca FILE; deno task cert writes it as ca\.pem\)\n$/,
  );
  const plain = await tlsClient(["--port", port, "--timeout", "3000", "hi"]);
  assert.equal(plain.code, 1);
  await server.stderr.waitFor(
    /\[INF\] tcp-echo·server: TLS handshake with 127\.0\.0\.1:\d+ failed: /,
  );
});

Deno.test("the client's command line says what a TLS failure means and which flag mends it, after the TLS stack's own words", async () => {
  // A plain echo server sends the client's own hello back.
  await using plain = serveEcho({ port: 0 });
  await plain.ready;
  const port = String(plain.addr.port);
  const once = await tlsClient(["--tls", "--port", port, "hi"]);
  assert.equal(once.code, 1);
  assert.match(
    once.stderr,
    /^error: Echo via 127\.0\.0\.1:\d+ failed: TLS handshake with 127\.0\.0\.1 failed: received unexpected handshake message: got ClientHello when expecting ServerHello[^\n]* \(the server does not seem to speak TLS: an echo server without TLS sends this client's own hello back; leave out --tls, or serve with --tls-cert and --tls-key\)\n$/,
  );
  // The native engine, where there is one, in OpenSSL's words.
  if (Deno.build.os !== "linux") return;
  const load = await run(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", "--allow-read", "--allow-ffi", CLIENT],
    ...["--tls", "--port", port, "--engine", "native", "--count", "1"],
  ]);
  assert.equal(load.code, 1);
  assert.match(
    load.stderr,
    /^error: 1 error against 127\.0\.0\.1:\d+: TLS handshake: unexpected message \(the server does not seem to speak TLS: [^\n]*\)\n$/,
  );
});

Deno.test("tlsHint: each TLS stack's words for a failure the client's flags mend, and nothing for others", () => {
  const cases: [string, RegExp | ""][] = [
    // rustls, through Deno's sockets and node:tls; OpenSSL, natively.
    [
      "TLS handshake with 127.0.0.1 failed: received unexpected handshake message: got ClientHello when expecting ServerHello or HelloRetryRequest",
      /does not seem to speak TLS/,
    ],
    ["TLS handshake: unexpected message", /does not seem to speak TLS/],
    [
      "TLS handshake with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer",
      /not signed by an authority this client trusts: .*--ca FILE/,
    ],
    [
      "TLS handshake: certificate verify failed: unable to get local issuer certificate",
      /--ca FILE/,
    ],
    [
      "TLS handshake with 127.0.0.1 failed: unable to verify the first certificate",
      /--ca FILE/,
    ],
    [
      "TLS handshake: certificate verify failed: self-signed certificate",
      /--ca FILE/,
    ],
    [
      "TLS handshake with 127.0.0.1 failed: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
      /an authority's, as openssl req -x509 makes/,
    ],
    [
      'TLS handshake with elsewhere.example failed: invalid peer certificate: certificate not valid for name "elsewhere.example"; certificate is only valid for DnsName("localhost")',
      /--server-name NAME/,
    ],
    [
      "TLS handshake: certificate verify failed: hostname mismatch",
      /--server-name NAME/,
    ],
    [
      "TLS handshake with elsewhere.example failed: Hostname/IP does not match certificate's altnames: Host: elsewhere.example. is not in the cert's altnames: DNS:localhost",
      /--server-name NAME/,
    ],
    [
      "TLS handshake with x failed: invalid peer certificate: Expired",
      /has expired/,
    ],
    [
      "TLS handshake: certificate verify failed: certificate has expired",
      /has expired/,
    ],
    [
      "TLS handshake with x failed: invalid peer certificate: NotValidYet",
      /not valid yet/,
    ],
    [
      "received fatal alert: CertificateRequired",
      /--tls-cert FILE and --tls-key FILE/,
    ],
    [
      "TLS: tlsv13 alert certificate required",
      /--tls-cert FILE and --tls-key FILE/,
    ],
    ["Connection refused (os error 111)", ""],
    ["Round trip timed out after 10 ms", ""],
    ["Echo differs from what was sent at byte 0", ""],
  ];
  for (const [message, hint] of cases) {
    const said = tlsHint(message);
    if (hint === "") assert.equal(said, "", message);
    else assert.match(said, new RegExp(`^ \\(.*${hint.source}.*\\)$`), message);
  }
});

Deno.test("TLS usage errors exit 2 with one line", async () => {
  await using certs = await testCertificates();
  const tls = ["--tls-cert", certs.certFile, "--tls-key", certs.keyFile];
  const cases: [string[], string][] = [
    [["--tls-cert", certs.certFile], "Give --tls-key with --tls-cert"],
    [
      ["--tls-cert", `${certs.dir}/none.pem`, "--tls-key", certs.keyFile],
      `Invalid --tls-cert: cannot read it (No such file or directory (os error 2)), got '${certs.dir}/none.pem'`,
    ],
    [
      ["--tls-cert", certs.keyFile, "--tls-key", certs.keyFile],
      "Invalid --tls-cert: no PEM certificate found in it",
    ],
    [
      ["--tls-cert", certs.certFile, "--tls-key", certs.certFile],
      "Invalid --tls-key: no PEM private key found in it",
    ],
    [
      ["--tls-cert", certs.certFile, "--tls-key", certs.otherKeyFile],
      "Invalid --tls-key: it does not belong to the certificate",
    ],
    [
      ["--unix", `${certs.dir}/s.sock`, ...tls],
      "Invalid --engine: default does not serve TLS on a Unix socket (the native engine does)",
    ],
    [
      [...tls, "--tls-client-ca", certs.caFile],
      "Invalid --engine: default does not serve client certificates (the native engine does)",
    ],
    [
      [...tls, "--tls-client-optional"],
      "Give --tls-client-ca with --tls-client-optional",
    ],
    [
      [...tls, "--mode", "chat", "--chat-names", "cert"],
      "Invalid --chat-names: names clients by verified certificates only: give clientCa (--tls-client-ca)",
    ],
    [
      [...tls, "--chat-names", "cn"],
      "Invalid --chat-names: expected one of auto, cert, got 'cn'",
    ],
    [
      [...tls, "--tls-sni", "other.example"],
      "Invalid --tls-sni: must be NAME=CERT,KEY (a name, then two files), got 'other.example'",
    ],
    [
      [...tls, "--alpn", "h2,,x"],
      "Invalid --alpn: a comma-separated list of protocols, none empty, got 'h2,,x'",
    ],
  ];
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
    cases,
  );
  const client = await tlsClient(["--ca", certs.caFile, "hi"]);
  assert.equal(client.code, 2);
  assert.equal(
    client.stderr,
    "error: Give --tls or --ws with --ca (see --help)\n",
  );
});

Deno.test("native: --chat-names cert calls a client by its certificate's CN, over one who took the name by /nick", async () => {
  await using certs = await testCertificates();
  await using server = await clientCaServer(certs, {
    mode: "chat",
    chatNames: "cert",
    clientCertOptional: true,
  });
  const { port } = server.addr;
  await using guest = new LineClient(await connectTls(certs, port));
  await guest.line(/^\* welcome, you are user1;/);
  await guest.line(/^\* user1 joined lobby$/);
  await guest.send("/nick alice\n");
  await guest.line(/^\* user1 is now alice$/);
  await using alice = new LineClient(
    await Deno.connectTls({
      hostname: "localhost",
      port,
      caCerts: [certs.ca],
      cert: certs.alice.cert,
      key: certs.alice.key,
    }),
  );
  await alice.line(
    /^\* welcome, you are alice \(from your certificate\); \/help lists the commands$/,
  );
  await guest.line(/^\* alice belongs to a client with its certificate$/);
  await guest.line(/^\* alice is now user3$/);
  await guest.line(/^\* alice joined lobby$/);
  await alice.send("/nick bob\n");
  await alice.line(/^\* alice joined lobby$/);
  await alice.line(/^ERR your name comes from your certificate$/);
  await alice.send("hi\n");
  await guest.line(/^<alice> hi$/);
});

Deno.test("native: every OpenSSL session and context is freed, whatever ended the connection", async () => {
  await using certs = await testCertificates();
  logs.clear();
  const server = serveEcho({
    port: 0,
    cert: certs.cert,
    key: certs.key,
    engine: "native",
    handshakeTimeout: 200,
    maxConnections: 2,
    gracePeriod: 100,
  });
  await server.ready;
  const { port } = server.addr;
  // An echo through a half-close.
  assert.equal(await echoOnce("freed", trust(certs, port)), "freed");
  // Not TLS; silent past the handshake timeout; gone mid-handshake.
  using plain = await Deno.connect({ port });
  await writeAll(plain, encoder.encode("plain text\n"));
  await readAll(plain);
  using silent = await Deno.connect({ port });
  assert.deepEqual(await readAll(silent), new Uint8Array());
  (await Deno.connect({ port })).close();
  // Open when the server stops: one idle, one over the limit, one mid-way.
  const connect = () => connectTls(certs, port);
  using idle = await connect();
  await writeAll(idle, encoder.encode("i"));
  assert.equal(await idle.read(new Uint8Array(1)), 1);
  using busy = await connect();
  await writeAll(busy, encoder.encode("b"));
  assert.equal(await busy.read(new Uint8Array(1)), 1);
  using over = await connect();
  await writeAll(over, encoder.encode("o")).catch(() => {});
  assert.deepEqual(await readAll(over), new Uint8Array());
  using handshaking = await Deno.connect({ port });
  await logs.waitFor(() => server.stats.rejected === 1);
  await server.shutdown();
  assert.equal(await idle.read(new Uint8Array(1)), null);
  assert.equal(await busy.read(new Uint8Array(1)), null);
  assert.deepEqual(await readAll(handshaking), new Uint8Array());
  assert.equal(server.stats.handshakeFailures, 3);
  assert.deepEqual(
    logs.find(
      "TLS objects not freed: {sessions} sessions, {contexts} contexts",
    ),
    [],
  );
});

/**
 * `openssl s_client` to 127.0.0.1:`port`, trusting `certs`' CA, with
 * `args` more, sending `input` and reading until the server closes (or,
 * without `untilClosed`, until the input ends):
 * what it printed, and its session summary (-brief).
 */
async function sClient(
  certs: TestCertificates,
  port: number,
  args: string[],
  input: string,
  untilClosed = true,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-CAfile",
    certs.caFile,
    "-brief",
    ...untilClosed ? ["-ign_eof"] : [],
    ...args,
  ], encoder.encode(input));
  return { ...result, stdout: decoder.decode(result.stdout) };
}

Deno.test("native: client certificates are verified against clientCa; one missing, expired or from another CA is refused with its reason", async () => {
  await using certs = await testCertificates();
  logs.clear();
  await using server = await clientCaServer(certs, { mode: "info" });
  const { port } = server.addr;
  const as = (who: { certFile: string; keyFile: string }) => [
    "-cert",
    who.certFile,
    "-key",
    who.keyFile,
  ];
  const alice = await sClient(
    certs,
    port,
    as(certs.alice),
    "clientcert\nquit\n",
  );
  assert.equal(alice.stdout, "CN=alice,O=Example\n", alice.stderr);
  const opened = await logs.waitFor((r) =>
    String(r.rawMessage).startsWith("Opened {peer} for {clientCert}")
  );
  assert.equal(opened.properties.clientCert, "CN=alice,O=Example");
  assert.equal(opened.properties.version, "TLSv1.3");
  // socat presents a certificate too.
  const socat = await run("socat", [
    "-t",
    "5",
    "-",
    `OPENSSL:127.0.0.1:${port},cafile=${certs.caFile},commonname=localhost,cert=${certs.alice.certFile},key=${certs.alice.keyFile}`,
  ], encoder.encode("clientcert\n"));
  assert.equal(decoder.decode(socat.stdout), "CN=alice,O=Example\n");
  // Refused: no certificate, an expired one, one from another CA.
  for (const args of [[], as(certs.expired), as(certs.stranger)]) {
    const refused = await sClient(certs, port, args, "clientcert\nquit\n");
    assert.equal(refused.stdout, "", refused.stderr);
  }
  const reasons = await failuresLogged(3);
  assert.deepEqual(reasons, [
    "peer did not return a certificate",
    "certificate verify failed: certificate has expired",
    "certificate verify failed: unable to get local issuer certificate",
  ]);
  assert.equal(server.stats.accepted, 2);
  assert.deepEqual(server.stats.handshakeFailuresBy, {
    protocol: 0,
    certificate: 3,
    timeout: 0,
    notTls: 0,
  });
  assert.equal(server.stats.handshakes, 2);
  const { counts } = server.stats.handshakeDurations;
  assert.equal(counts.reduce((a, b) => a + b), 2);
});

Deno.test("native: clientCertOptional admits a client without a certificate, and still refuses a bad one", async () => {
  await using certs = await testCertificates();
  await using server = serveEcho({
    port: 0,
    engine: "native",
    mode: "info",
    cert: certs.cert,
    key: certs.key,
    clientCa: certs.ca,
    clientCertOptional: true,
  });
  await server.ready;
  const { port } = server.addr;
  const anonymous = await sClient(certs, port, [], "clientcert\nquit\n");
  assert.equal(anonymous.stdout, "none\n", anonymous.stderr);
  const stranger = await sClient(certs, port, [
    "-cert",
    certs.stranger.certFile,
    "-key",
    certs.stranger.keyFile,
  ], "clientcert\nquit\n");
  assert.equal(stranger.stdout, "");
  assert.equal(server.stats.accepted, 1);
  assert.equal(server.stats.handshakeFailures, 1);
});

Deno.test("native: SNI chooses the certificate by name, ALPN agrees on a protocol or refuses; info answers sni and alpn", async () => {
  await using certs = await testCertificates();
  logs.clear();
  await using server = serveEcho({
    port: 0,
    engine: "native",
    mode: "info",
    cert: certs.cert,
    key: certs.key,
    sni: [{ hostname: "OTHER.example", ...certs.other }],
    alpnProtocols: ["h2", "echo/1"],
  });
  await server.ready;
  const { port } = server.addr;
  const ask = "sni\nalpn\ntransport\nquit\n";
  const other = await sClient(certs, port, [
    "-servername",
    "other.example",
    "-verify_hostname",
    "other.example",
    "-verify_return_error",
    "-alpn",
    "x,echo/1",
  ], ask);
  assert.equal(other.stdout, "other.example\necho/1\ntls\n", other.stderr);
  assert.match(other.stderr, /Peer certificate: CN = other\.example/);
  // Another name, or none: the default certificate; no ALPN: none agreed.
  const plain = await sClient(certs, port, [
    "-servername",
    "localhost",
    "-verify_hostname",
    "localhost",
    "-verify_return_error",
  ], ask);
  assert.equal(plain.stdout, "localhost\nnone\ntls\n", plain.stderr);
  assert.match(plain.stderr, /Peer certificate: CN = localhost/);
  const refused = await sClient(certs, port, ["-alpn", "spdy/3"], ask);
  assert.equal(refused.stdout, "");
  assert.deepEqual(await failuresLogged(1), ["no application protocol"]);
});

Deno.test("the default engine refuses client certificates and SNI, naming the native engine; it offers ALPN and says it cannot tell the SNI", async () => {
  await using certs = await testCertificates();
  const refusals: [ServeEchoOptions, string][] = [
    [{ clientCa: certs.ca }, "client certificates"],
    [
      { sni: [{ hostname: "other.example", ...certs.other }] },
      "certificates by server name (SNI)",
    ],
  ];
  for (const [options, what] of refusals) {
    assert.throws(
      () =>
        serveEcho({ port: 0, cert: certs.cert, key: certs.key, ...options }),
      (error: Error & { option?: string }) =>
        error.option === "engine" &&
        error.message ===
          `Cannot use engine: default does not serve ${what} (the native engine does)`,
    );
  }
  await using server = serveEcho({
    port: 0,
    mode: "info",
    cert: certs.cert,
    key: certs.key,
    alpnProtocols: ["echo/1"],
  });
  await server.ready;
  const reply = await sClient(
    certs,
    server.addr.port,
    ["-alpn", "echo/1"],
    "alpn\nsni\nclientcert\nquit\n",
  );
  assert.equal(
    reply.stdout,
    "echo/1\nERR the default engine cannot tell (the native engine can)\nnone\n",
    reply.stderr,
  );
});

engineTest(
  "TLS options are checked: ALPN protocols, SNI names, clientCertOptional without clientCa",
  async (engine) => {
    await using certs = await testCertificates();
    const tls = { port: 0, cert: certs.cert, key: certs.key, engine };
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ alpnProtocols: [""] }, "alpnProtocols", /1 to 255 bytes/],
      [{ alpnProtocols: ["x".repeat(256)] }, "alpnProtocols", /1 to 255 bytes/],
      [{ sni: [{ hostname: "bad name", ...certs.other }] }, "sni", /DNS name/],
      [{ sni: [{ hostname: "a.example" }] }, "sni", /needs cert and key/],
      [{ clientCertOptional: true }, "clientCertOptional", /with clientCa/],
    ];
    for (const [options, option, reason] of cases) {
      assert.throws(
        () => serveEcho({ ...tls, ...options }),
        (error: Error & { option?: string; reason?: string }) =>
          error.option === option && reason.test(error.reason ?? ""),
        JSON.stringify(options).slice(0, 80),
      );
    }
    if (engine === "native") {
      // OpenSSL reads them: a key of another certificate, a CA that is not PEM.
      assert.throws(
        () =>
          serveEcho({
            ...tls,
            sni: [{
              hostname: "o.example",
              cert: certs.cert,
              key: certs.otherKey,
            }],
          }),
        /Cannot use sni: it does not belong to the certificate/,
      );
      assert.throws(
        () => serveEcho({ ...tls, clientCa: "nothing" }),
        /Cannot use clientCa: no PEM certificate found in it/,
      );
    }
  },
);

/** The subject of the certificate the server at `port` shows for `name`. */
async function servedSubject(
  certs: TestCertificates,
  port: number,
  name: string,
): Promise<string> {
  const shown = await sClient(certs, port, ["-servername", name], "", false);
  return shown.stderr.match(/Peer certificate: (.*)/)?.[1] ?? shown.stderr;
}

engineTest(
  "reloadTls() rotates the certificate for new handshakes, open connections go on; a bad one keeps the old (workers too)",
  async (engine) => {
    await using certs = await testCertificates();
    logs.clear();
    const server = serveEcho({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      engine,
      workers: 2,
      gracePeriod: 100,
    });
    await server.ready;
    const { port } = server.addr;
    assert.equal(await servedSubject(certs, port, "x"), "CN = localhost");
    await using open = new LineClient(
      await connectTls(certs, port),
    );
    await open.send("before\n");
    await open.line(/^before$/);
    await server.reloadTls({ cert: certs.other.cert, key: certs.other.key });
    // Every new handshake, on either worker, gets the new one (12 spread by
    // the kernel's hash: all on one worker has a chance of 1 in 2,048).
    for (let i = 0; i < 12; i++) {
      assert.equal(await servedSubject(certs, port, "x"), "CN = other.example");
    }
    await open.send("after\n");
    await open.line(/^after$/);
    await assert.rejects(
      server.reloadTls({ cert: certs.cert, key: certs.otherKey }),
      (error: Error & { option?: string }) =>
        error instanceof TypeError && error.option === "key",
    );
    assert.equal(await servedSubject(certs, port, "x"), "CN = other.example");
    await assert.rejects(
      server.reloadTls({ cert: "junk", key: certs.key }),
      (error: Error & { option?: string }) => error.option === "cert",
    );
    await server.shutdown();
    assert.equal(
      logs.find(
        "Reloaded the TLS certificates: new handshakes use them, open connections go on",
      ).length,
      1,
    );
    assert.deepEqual(
      logs.find(
        "TLS objects not freed: {sessions} sessions, {contexts} contexts",
      ),
      [],
    );
    // A server without TLS has nothing to reload.
    await using plain = serveEcho({ port: 0, engine });
    await assert.rejects(
      plain.reloadTls({ cert: certs.cert, key: certs.key }),
      /does not speak TLS/,
    );
  },
);

Deno.test("server --tls-cert: SIGHUP reads the files again; a bad file keeps the old certificate and says why", async () => {
  await using certs = await testCertificates();
  const cert = `${certs.dir}/serving.pem`;
  const key = `${certs.dir}/serving.key`;
  await Deno.copyFile(certs.certFile, cert);
  await Deno.copyFile(certs.keyFile, key);
  await using server = await ServerProcess.start(
    ["--engine", "native", "--tls-cert", cert, "--tls-key", key],
    [
      Deno.execPath(),
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      "--allow-ffi",
      SERVER,
    ],
  );
  assert.equal(await servedSubject(certs, server.port, "x"), "CN = localhost");
  await Deno.copyFile(certs.other.certFile, cert);
  await Deno.copyFile(certs.other.keyFile, key);
  server.child.kill("SIGHUP");
  await server.stderr.waitFor(/Reloaded the TLS certificates/);
  assert.equal(
    await servedSubject(certs, server.port, "x"),
    "CN = other.example",
  );
  await Deno.writeTextFile(key, "not a key\n");
  server.child.kill("SIGHUP");
  await server.stderr.waitFor(
    /\[ERR\] tcp-echo·cli: Kept the TLS certificates: Invalid --tls-key: no PEM private key found in it/,
  );
  assert.equal(
    await servedSubject(certs, server.port, "x"),
    "CN = other.example",
  );
});

engineTest(
  "a ClientHello flood from one address meets the per-address limit and the handshake timeout; a truncated record is a failed handshake; others go on",
  async (engine) => {
    await using certs = await testCertificates();
    logs.clear();
    await using server = await serveTls(certs, {
      engine,
      handshakeTimeout: 300,
      maxConnectionsPerIp: 20,
    });
    const { port } = server.addr;
    // The first bytes of a ClientHello, and no more: 60 at once, from here.
    const hello = new Uint8Array([22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]);
    const flood = await Promise.all(
      Array.from({ length: 60 }, async () => {
        const conn = await Deno.connect({ port });
        await writeAll(conn, hello).catch(() => {});
        return conn;
      }),
    );
    // Every one is closed: 40 refused over the limit at once, 20 at the
    // handshake timeout.
    for (const conn of flood) {
      await readAll(conn).catch(() => {});
      conn.close();
    }
    await logs.waitFor(() =>
      server.stats.refused.perAddress === 40 &&
      server.stats.handshakeFailuresBy.timeout === 20
    );
    // A record cut short, then the end of the stream.
    using cut = await Deno.connect({ port });
    await writeAll(cut, hello);
    await cut.closeWrite();
    assert.deepEqual(await readAll(cut), new Uint8Array());
    await logs.waitFor((r) =>
      r.properties.reason === "client closed before the handshake ended"
    );
    assert.equal(server.stats.handshakeFailuresBy.protocol, 1);
    // Nobody else noticed: a client with a valid handshake echoes.
    assert.equal(
      await echoOnce("still here", trust(certs, port)),
      "still here",
    );
    assert.equal(server.stats.accepted, 1);
  },
);

Deno.test("our client presents a certificate (cert, key; --tls-cert, --tls-key) and offers ALPN (--alpn); what Deno cannot do with one is an option error", async () => {
  await using certs = await testCertificates();
  logs.clear();
  await using server = await clientCaServer(certs);
  const { port } = server.addr;
  const alice = {
    port,
    tls: true,
    caCerts: [certs.ca],
    cert: certs.alice.cert,
    key: certs.alice.key,
  };
  assert.equal(await echoOnce("as alice", alice), "as alice");
  const opened = await logs.waitFor((r) =>
    String(r.rawMessage).startsWith("Opened {peer} for {clientCert}")
  );
  assert.equal(opened.properties.clientCert, "CN=alice,O=Example");
  const report = await loadTest({ ...alice, connections: 4, count: 100 });
  assert.equal(report.roundTrips, 100);
  await assert.rejects(
    echoOnce("anonymous", { ...alice, cert: undefined, key: undefined }),
  );
  for (
    const [extra, reason] of [
      [{ sendProxy: "v1" }, /not after a PROXY header/],
      [{ serverName: "localhost" }, /only with the server name it connects to/],
      [{ key: undefined }, /needs cert and key/],
    ] as const
  ) {
    assert.throws(
      () => echoStream([], { ...alice, ...extra }),
      (error: Error & { option?: string }) =>
        error instanceof TypeError && reason.test(error.message),
    );
  }
  // The CLI, and ALPN against an info server.
  const hi = await tlsClient([
    ...["--port", String(port), "--tls", "--ca", certs.caFile],
    ...["--tls-cert", certs.alice.certFile, "--tls-key", certs.alice.keyFile],
    "hi",
  ]);
  assert.equal(hi.code, 0, hi.stderr);
  assert.equal(decoder.decode(hi.stdout), "hi\n");
  await using info = serveEcho({
    port: 0,
    mode: "info",
    cert: certs.cert,
    key: certs.key,
    alpnProtocols: ["h2", "echo/1"],
  });
  await info.ready;
  const alpn = await tlsClient([
    ...["--port", String(info.addr.port), "--tls", "--ca", certs.caFile],
    ...["--server-name", "localhost", "--alpn", "x,echo/1", "--raw", "alpn"],
  ]);
  assert.equal(alpn.code, 0, alpn.stderr);
  assert.equal(decoder.decode(alpn.stdout), "echo/1\n");
});

Deno.test("native: TLS on a Unix socket, as openssl s_client -unix sees it: info, a line echo, rotation; the default engine refuses it", async () => {
  await using certs = await testCertificates();
  const path = `${certs.dir}/tls.sock`;
  await using server = serveEcho({
    path,
    engine: "native",
    mode: "line",
    cert: certs.cert,
    key: certs.key,
    alpnProtocols: ["echo/1"],
  });
  await server.ready;
  const sClientUnix = async (input: string, args: string[] = []) => {
    const result = await run("openssl", [
      "s_client",
      ...["-unix", path, "-CAfile", certs.caFile, "-servername", "localhost"],
      ...["-brief", "-ign_eof", ...args],
    ], encoder.encode(input));
    return { ...result, stdout: decoder.decode(result.stdout) };
  };
  const lines = Array.from(
    { length: 500 },
    (_, i) => `line ${i} ${"x".repeat(i)}`,
  );
  const echoed = await sClientUnix(`${lines.join("\n")}\nquit\n`);
  assert.equal(echoed.stdout, `${lines.join("\n")}\n`, echoed.stderr);
  assert.match(echoed.stderr, /Peer certificate: CN = localhost/);
  await server.reloadTls({ cert: certs.other.cert, key: certs.other.key });
  const rotated = await sClientUnix("hi\nquit\n");
  assert.equal(rotated.stdout, "hi\n");
  assert.match(rotated.stderr, /Peer certificate: CN = other\.example/);
  // Its metrics have the handshakes' histogram, as a TLS server on TCP.
  assert.equal(server.tls, true);
  await using metrics = serveMetrics(server, { port: 0 });
  const scraped = await fetch(`http://127.0.0.1:${metrics.addr.port}/metrics`);
  const text = await scraped.text();
  assert.match(text, /^tcp_echo_tls_handshake_duration_seconds_count 2$/m);
  assert.match(text, /^tcp_echo_tls_handshakes_total 2$/m);
  assert.throws(
    () =>
      serveEcho({
        path: `${certs.dir}/d.sock`,
        cert: certs.cert,
        key: certs.key,
      }),
    /default does not serve TLS on a Unix socket \(the native engine does\)/,
  );
  // Deno's TLS client speaks on TCP only.
  assert.throws(
    () => echoStream([], { path, tls: true }),
    /TLS is spoken on TCP only/,
  );
});

engineTest(
  "a client that reconnects resumes its TLS session with a ticket",
  async (engine) => {
    await using certs = await testCertificates();
    await using server = await serveTls(certs, { engine, mode: "line" });
    const session = `${certs.dir}/session-${engine}.pem`;
    const connect = async (args: string[]) => {
      const result = await run("openssl", [
        "s_client",
        ...[
          "-connect",
          `127.0.0.1:${server.addr.port}`,
          "-CAfile",
          certs.caFile,
        ],
        ...["-ign_eof", ...args],
      ], encoder.encode("hi\nquit\n"));
      return decoder.decode(result.stdout);
    };
    const first = await connect(["-sess_out", session]);
    assert.match(first, /^New, TLSv1\.3/m);
    assert.match(first, /^hi$/m);
    const again = await connect(["-sess_in", session]);
    assert.match(again, /^Reused, TLSv1\.3/m);
    assert.match(again, /^hi$/m);
  },
);

engineTest(
  "renegotiation is refused (TLS 1.2, openssl s_client's R command): the client hears no_renegotiation",
  async (engine) => {
    await using certs = await testCertificates();
    await using server = await serveTls(certs, { engine, mode: "line" });
    await using client = new Spawned("openssl", [
      "s_client",
      ...["-connect", `127.0.0.1:${server.addr.port}`, "-CAfile", certs.caFile],
      "-tls1_2",
    ], { stdin: "piped" });
    await writeStdin(client.child, "one\n");
    await client.stdout.waitFor(/^one$/);
    // s_client's command: renegotiate, on a line of its own.
    await writeStdin(client.child, "R\n");
    await client.stderr.waitFor(/no renegotiation/);
    await client.child.stdin.close().catch(() => {});
  },
);
