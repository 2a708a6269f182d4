// serveMetrics() and --metrics: scraped with curl while traffic runs, the
// text format parsed and checked against the server's own counters, and by
// promtool (from Debian's prometheus package, which .ci/run installs).

import assert from "node:assert/strict";
import { echoOnce, echoStream, loadTest, serveEcho } from "../mod.ts";
import { serveMetrics } from "../metrics.ts";
import { encodeProxyHeader } from "../lib/proxy/header.ts";
import { testCertificates } from "./_certs.ts";
import { sendAndRead } from "./_helpers.ts";
import { ENGINES, engineTest } from "./_engines.ts";
import {
  assertUsageErrors,
  LOCK,
  run,
  SERVER,
  ServerProcess,
} from "./_process.ts";

/** The samples of a scrape, by `name{labels}`, and the whole text. */
interface Scrape {
  text: string;
  samples: Map<string, number>;
  contentType: string;
}

/**
 * Scrapes `target` (a URL, or a server of serveMetrics) with curl, a real
 * HTTP client, and parses the samples.
 */
async function scrape(
  target: string | { addr: Deno.NetAddr },
): Promise<Scrape> {
  const url = typeof target === "string"
    ? target
    : `http://127.0.0.1:${target.addr.port}/metrics`;
  const { code, stdout, stderr } = await run("curl", [
    ...["--silent", "--show-error", "--fail", "--include", url],
  ]);
  assert.equal(code, 0, stderr);
  const [head, text] = new TextDecoder().decode(stdout).split("\r\n\r\n", 2);
  const contentType = /^content-type: (.*)$/im.exec(head)?.[1] ?? "";
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    // name{labels} value: label values here have no spaces.
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    samples.set(match[1], Number(match[2]));
  }
  return { text, samples, contentType };
}

/** Asserts each sample of `expected` (by `name{labels}`) in `samples`. */
function assertSamples(
  samples: Map<string, number>,
  expected: Record<string, number>,
): void {
  for (const [name, value] of Object.entries(expected)) {
    assert.equal(samples.get(name), value, name);
  }
}

engineTest(
  "serveMetrics() serves the server's counters at /metrics, as curl and promtool read them",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, udp: true });
    await using metrics = serveMetrics(server, { port: 0 });
    const url = `http://127.0.0.1:${metrics.addr.port}/metrics`;
    // Traffic while it is scraped.
    const load = loadTest({
      port: server.addr.port,
      connections: 4,
      count: 2000,
      message: 100,
    });
    const during = await scrape(url);
    assert.ok(during.samples.has("tcp_echo_connections_active"));
    const report = await load;
    assert.equal(report.roundTrips, 2000);
    await echoOnce("over udp", { port: server.addr.port, udp: true });
    const { samples, text, contentType } = await scrape(url);
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    const stats = server.stats;
    const expected: Record<string, number> = {
      "tcp_echo_connections_active": 0,
      "tcp_echo_connections_accepted_total": 4,
      'tcp_echo_connections_refused_total{reason="max_connections"}': 0,
      'tcp_echo_received_bytes_total{transport="tcp"}': 200_000,
      'tcp_echo_sent_bytes_total{transport="tcp"}': 200_000,
      'tcp_echo_received_bytes_total{transport="udp"}': 8,
      'tcp_echo_sent_bytes_total{transport="udp"}': 8,
      "tcp_echo_received_datagrams_total": 1,
      "tcp_echo_sent_datagrams_total": 1,
      "tcp_echo_clients_dropped_total": 0,
      'tcp_echo_connections_closed_total{reason="closed_by_client"}': 4,
      'tcp_echo_connections_closed_total{reason="idle_timeout"}': 0,
      'tcp_echo_connection_duration_seconds_bucket{le="+Inf"}': 4,
      "tcp_echo_connection_duration_seconds_count": 4,
      [`tcp_echo_build_info{version="0.1.0",engine="${engine}",mode="echo"}`]:
        1,
    };
    assertSamples(samples, expected);
    // Echo mode relays no lines: no such family.
    assert.doesNotMatch(text, /tcp_echo_relay_lines/);
    assert.equal(stats.bytesIn, 200_000);
    // The duration buckets are cumulative, and their sum is plausible.
    const buckets = [...samples].filter(([name]) =>
      name.startsWith("tcp_echo_connection_duration_seconds_bucket")
    ).map(([, value]) => value);
    assert.equal(buckets.length, 9);
    assert.deepEqual(buckets, [...buckets].sort((a, b) => a - b));
    const sum = samples.get("tcp_echo_connection_duration_seconds_sum")!;
    assert.ok(sum > 0 && sum < 4 * 60, `${sum}`);
    // Counters end in _total, and the process's own metrics are there.
    assert.match(text, /^# TYPE tcp_echo_connections_accepted_total counter$/m);
    for (
      const name of [
        "process_cpu_seconds_total",
        "nodejs_eventloop_lag_seconds",
      ]
    ) {
      assert.ok(samples.has(name), name);
    }
    // Prometheus's own linter: names, types, help, _total on counters. Its
    // only complaints are about three of prom-client's default gauges, whose
    // names dashboards already know.
    const check = await run(
      "promtool",
      ["check", "metrics"],
      new TextEncoder().encode(text),
    );
    assert.deepEqual(
      check.stderr.trim().split("\n"),
      ["handles", "requests", "resources"].map((what) =>
        `nodejs_active_${what}_total non-counter metrics should not have "_total" suffix`
      ),
    );
    // Anything but GET or HEAD /metrics is refused.
    const other = await fetch(`http://127.0.0.1:${metrics.addr.port}/`);
    assert.equal(other.status, 404);
    await other.body?.cancel();
    const post = await fetch(url, { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
  },
);

engineTest(
  "serveMetrics() sees every worker in one scrape, and the engine and mode",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      workers: 2,
      mode: "line",
    });
    await server.ready;
    await using metrics = serveMetrics(server, { port: 0 });
    // 24 line round trips: each connection was accepted by some worker.
    await Promise.all(
      Array.from(
        { length: 24 },
        () => echoOnce("hi", { port: server.addr.port }),
      ),
    );
    const { samples: counted } = await scrape(metrics);
    assert.equal(counted.get("tcp_echo_connections_accepted_total"), 24);
    assert.equal(server.stats.perWorker.length, 2);
    const { samples } = await scrape(metrics);
    assert.equal(
      samples.get(
        `tcp_echo_build_info{version="0.1.0",engine="${engine}",mode="line"}`,
      ),
      1,
    );
    if (Deno.build.os === "linux") {
      await using native = serveEcho({ port: 0, engine: "native" });
      await using nativeMetrics = serveMetrics(native, { port: 0 });
      await echoOnce("hi", { port: native.addr.port });
      const n = await scrape(nativeMetrics);
      assert.equal(
        n.samples.get(
          'tcp_echo_build_info{version="0.1.0",engine="native",mode="echo"}',
        ),
        1,
      );
      assert.equal(
        n.samples.get('tcp_echo_received_bytes_total{transport="tcp"}'),
        2,
      );
    }
  },
);

Deno.test("server --metrics HOST:PORT prints where, serves the scrape, and its usage errors", async () => {
  // The server task's permissions, not -A: the process's own metrics must
  // not read 0 for want of /proc/self (Deno opens it only with -A).
  await using server = await ServerProcess.start(
    ["--metrics", "127.0.0.1:0"],
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
  );
  const line = await server.stdout.waitFor(/^Metrics on /);
  const url = line.slice("Metrics on ".length);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  assert.equal(await echoOnce("hello", { port: server.port }), "hello");
  const { samples } = await scrape(url);
  assert.equal(
    samples.get('tcp_echo_received_bytes_total{transport="tcp"}'),
    5,
  );
  assert.equal(samples.get("tcp_echo_connections_accepted_total"), 1);
  assert.ok(samples.get("process_resident_memory_bytes")! > 1e6);
  assert.ok(samples.get("process_cpu_seconds_total")! > 0);
  assert.ok(!samples.has("process_open_fds"));
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", SERVER, "--port", "0"],
    [
      [
        ["--metrics", "9464"],
        "Invalid --metrics: expected HOST:PORT ([ADDRESS]:PORT for IPv6), got '9464'",
      ],
      [
        ["--metrics", "127.0.0.1:70000"],
        "Invalid --metrics: must be an integer from 0 to 65535, got 70000",
      ],
    ],
  );
});

for (const engine of ENGINES) {
  Deno.test(`closes are counted by reason and duration: a client's close, an idle timeout [${engine}]`, async () => {
    await using server = serveEcho({ port: 0, engine, idleTimeout: 200 });
    await using metrics = serveMetrics(server, { port: 0 });
    assert.equal(await echoOnce("hi", { port: server.addr.port }), "hi");
    // A client that says nothing: closed by the server after 200 ms.
    const silent = await Deno.connect({ port: server.addr.port });
    assert.equal(await silent.read(new Uint8Array(1)), null);
    silent.close();
    const { closed, durations } = server.stats;
    assert.equal(closed.closedByClient, 1);
    assert.equal(closed.idleTimeout, 1);
    assert.equal(durations.counts.reduce((a, b) => a + b), 2);
    // The idle one lasted 0.2 s or so: in the bucket up to 1 s.
    assert.equal(durations.counts[3], 1);
    assert.ok(durations.sumSeconds >= 0.2, `${durations.sumSeconds}`);
    const { samples } = await scrape(metrics);
    assert.equal(
      samples.get('tcp_echo_connections_closed_total{reason="idle_timeout"}'),
      1,
    );
    assert.equal(
      samples.get('tcp_echo_connection_duration_seconds_bucket{le="1"}'),
      2,
    );
  });
}

Deno.test("bytes are labelled by the server's transport: tls, unix, udp alone", async () => {
  await using certs = await testCertificates();
  await using tls = serveEcho({ port: 0, cert: certs.cert, key: certs.key });
  assert.equal(tls.transport, "tls");
  await using tlsMetrics = serveMetrics(tls, { port: 0 });
  await echoOnce("over tls", {
    port: tls.addr.port,
    tls: true,
    caCerts: [certs.ca],
    serverName: "localhost",
  });
  const a = await scrape(tlsMetrics);
  assert.equal(
    a.samples.get('tcp_echo_received_bytes_total{transport="tls"}'),
    8,
  );
  assert.ok(!a.samples.has('tcp_echo_received_bytes_total{transport="tcp"}'));

  const dir = await Deno.makeTempDir();
  try {
    await using unix = serveEcho({ path: `${dir}/echo.sock` });
    assert.equal(unix.transport, "unix");
    await using unixMetrics = serveMetrics(unix, { port: 0 });
    await echoOnce("over unix", { path: `${dir}/echo.sock` });
    const b = await scrape(unixMetrics);
    assert.equal(
      b.samples.get('tcp_echo_received_bytes_total{transport="unix"}'),
      9,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  await using udp = serveEcho({ port: 0, udp: "only" });
  assert.equal(udp.transport, "udp");
  await using udpMetrics = serveMetrics(udp, { port: 0 });
  await echoOnce("over udp", { port: udp.addr.port, udp: true });
  const c = await scrape(udpMetrics);
  assert.equal(
    c.samples.get('tcp_echo_received_bytes_total{transport="udp"}'),
    8,
  );
  assert.equal(
    [...c.samples.keys()].filter((k) =>
      k.startsWith("tcp_echo_received_bytes_total")
    ).length,
    1,
  );
});

engineTest("lines relayed are counted once each, by mode", async (engine) => {
  await using server = serveEcho({ engine, port: 0, mode: "broadcast" });
  await using metrics = serveMetrics(server, { port: 0 });
  // Broadcast sends every line to everyone, its sender included.
  using conn = await Deno.connect({ port: server.addr.port });
  await conn.write(new TextEncoder().encode("one\ntwo\nthree\n"));
  let got = "";
  const buffer = new Uint8Array(64);
  while (got.split("\n").length < 4) {
    const n = await conn.read(buffer);
    assert.ok(n !== null, got);
    got += new TextDecoder().decode(buffer.subarray(0, n));
  }
  assert.equal(got, "one\ntwo\nthree\n");
  assert.equal(server.stats.linesRelayed, 3);
  const { samples } = await scrape(metrics);
  assert.equal(samples.get('tcp_echo_relay_lines_total{mode="broadcast"}'), 3);
});

/** A PROXY header (v2) claiming `source` as the client of `port`. */
function headerFrom(source: string, port: number): Uint8Array {
  return encodeProxyHeader({
    version: 2,
    source: { hostname: source, port: 1000 },
    destination: { hostname: "127.0.0.1", port },
  });
}

Deno.test("each refusal and failure is its own sample: refused by reason, rejected over maxConnections, TLS handshakes, PROXY headers", async () => {
  await using certs = await testCertificates();
  await using server = serveEcho({
    port: 0,
    cert: certs.cert,
    key: certs.key,
    proxyProtocol: true,
    allow: ["10.0.0.0/8"],
    deny: ["10.9.0.0/16"],
    maxConnectionsPerIp: 1,
    maxConnections: 1,
  });
  await using metrics = serveMetrics(server, { port: 0 });
  const { port } = server.addr;
  const tls = (proxySource: string) => ({
    port,
    tls: true,
    caCerts: [certs.ca],
    serverName: "localhost",
    sendProxy: "v2",
    proxySource,
  } as const);
  // One client from 10.1.0.1 stays: the only place of maxConnections, and
  // of maxConnectionsPerIp for its address.
  let endHeld!: () => void;
  const held = echoStream(
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("held"));
        endHeld = () => controller.close();
      },
    }),
    tls("10.1.0.1:1000"),
  ).getReader();
  assert.deepEqual((await held.read()).value, new TextEncoder().encode("held"));
  // Every count differs from the others, so that no two samples can swap.
  // A client the server is full for: 1.
  await assert.rejects(echoOnce("full", tls("10.3.0.1:1000")));
  // Denied: 2; not allowed: 3; the held client's address again: 4.
  for (const [source, times] of [["10.9.0.1", 2], ["192.0.2.1", 3]] as const) {
    for (let i = 0; i < times; i++) {
      await sendAndRead({ port }, headerFrom(source, port));
    }
  }
  for (let i = 0; i < 4; i++) {
    await sendAndRead({ port }, headerFrom("10.1.0.1", port));
  }
  // Not TLS after the header: 5 handshake failures.
  for (let i = 0; i < 5; i++) {
    await sendAndRead(
      { port },
      headerFrom(`10.2.0.${i + 1}`, port),
      new TextEncoder().encode("plain text\r\n"),
    );
  }
  // No PROXY header: 6.
  for (let i = 0; i < 6; i++) {
    await sendAndRead(
      { port },
      new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"),
    );
  }
  const { samples } = await scrape(metrics);
  const expected: Record<string, number> = {
    'tcp_echo_connections_refused_total{reason="max_connections"}': 1,
    'tcp_echo_connections_refused_total{reason="denied"}': 2,
    'tcp_echo_connections_refused_total{reason="not_allowed"}': 3,
    'tcp_echo_connections_refused_total{reason="per_address"}': 4,
    'tcp_echo_connections_refused_total{reason="connect_rate"}': 0,
    'tcp_echo_tls_handshake_failures_total{reason="not_tls"}': 5,
    'tcp_echo_tls_handshake_failures_total{reason="protocol"}': 0,
    'tcp_echo_tls_handshake_failures_total{reason="certificate"}': 0,
    'tcp_echo_tls_handshake_failures_total{reason="timeout"}': 0,
    "tcp_echo_proxy_header_failures_total": 6,
    "tcp_echo_connections_active": 1,
    'tcp_echo_received_bytes_total{transport="tls"}': 4,
    // The one held, and the one over maxConnections.
    "tcp_echo_tls_handshakes_total": 2,
    "tcp_echo_tls_handshake_duration_seconds_count": 2,
  };
  assertSamples(samples, expected);
  endHeld();
  assert.equal((await held.read()).done, true);
});

engineTest(
  "connections refused for their address's connect rate are their own sample",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      proxyProtocol: true,
      connectRate: 2,
    });
    await using metrics = serveMetrics(server, { port: 0 });
    // 8 in a row from one address: a burst of 2 served (3 if a token came
    // back meanwhile), the rest refused.
    for (let i = 0; i < 8; i++) {
      const { port } = server.addr;
      await sendAndRead(
        { port },
        headerFrom("203.0.113.9", port),
        new TextEncoder().encode("x"),
      );
    }
    const { samples } = await scrape(metrics);
    const refused = samples.get(
      'tcp_echo_connections_refused_total{reason="connect_rate"}',
    )!;
    assert.ok(refused >= 5 && refused <= 6, `${refused}`);
    assert.equal(refused, server.stats.refused.connectRate);
    assert.equal(
      samples.get("tcp_echo_connections_accepted_total"),
      8 - refused,
    );
    for (const reason of ["denied", "not_allowed", "per_address"]) {
      assert.equal(
        samples.get(`tcp_echo_connections_refused_total{reason="${reason}"}`),
        0,
      );
    }
  },
);

engineTest(
  "UDP datagrams dropped unanswered are counted by reason: denied, rate limited",
  async (engine) => {
    await using server = serveEcho({
      engine,
      hostname: "::",
      port: 0,
      udp: "only",
      deny: ["::1"],
      udpRate: 2,
    });
    await using metrics = serveMetrics(server, { port: 0 });
    const sockets = ["::1", "127.0.0.1"].map((hostname) =>
      Deno.listenDatagram({ hostname, port: 0, transport: "udp" })
    );
    try {
      const [v6, v4] = sockets;
      const to = (hostname: string) => ({
        transport: "udp" as const,
        hostname,
        port: server.addr.port,
      });
      // 3 from a denied address; 7 from 127.0.0.1, beyond its burst of 2.
      for (let i = 0; i < 3; i++) await v6.send(new Uint8Array([i]), to("::1"));
      for (let i = 0; i < 7; i++) {
        await v4.send(new Uint8Array([i]), to("127.0.0.1"));
      }
      // The server runs in this process: let it take all 10 (bounded).
      for (let turn = 0; turn < 2000 && server.stats.datagramsIn < 10; turn++) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const { samples } = await scrape(metrics);
      const answered = samples.get("tcp_echo_sent_datagrams_total")!;
      assert.ok(answered >= 2 && answered <= 3, `${answered} answered`);
      assert.equal(samples.get("tcp_echo_received_datagrams_total"), 10);
      assert.equal(
        samples.get('tcp_echo_datagrams_refused_total{reason="denied"}'),
        3,
      );
      assert.equal(
        samples.get('tcp_echo_datagrams_refused_total{reason="rate_limited"}'),
        7 - answered,
      );
      for (let i = 0; i < answered; i++) await v4.receive();
    } finally {
      for (const socket of sockets) socket.close();
    }
  },
);
