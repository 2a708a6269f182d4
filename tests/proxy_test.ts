// The PROXY protocol on real sockets: serveEcho({ proxyProtocol }) over TCP,
// TLS and Unix sockets, the clients' sendProxy, malformed and late headers
// while others are served, trusted proxies, 10,000 headers with random
// addresses, socat sending crafted bytes, and the CLIs.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { echoOnce, serveEcho } from "../mod.ts";
import { encodeProxyHeader } from "../lib/proxy/header.ts";
import { testCertificates } from "./_certs.ts";
import {
  captureLogs,
  LineClient,
  readAll,
  sendAndRead,
  writeAll,
} from "./_helpers.ts";
import {
  CLIENT,
  LOCK,
  run,
  SERVER,
  ServerProcess,
  Spawned,
} from "./_process.ts";

const logs = await captureLogs();
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The peer the server logged for its next "Opened" record. */
async function openedPeer(): Promise<string> {
  const record = await logs.waitFor((r) =>
    r.rawMessage.toString().startsWith("Opened {peer}")
  );
  return String(record.properties.peer);
}

engineTest(
  "a PROXY header's client becomes the peer; what follows it is the stream",
  async (engine, t) => {
    await using server = serveEcho({ engine, port: 0, proxyProtocol: true });
    const { port } = server.addr;
    const headers: [string, Uint8Array, string][] = [
      [
        "v1 TCP4",
        encoder.encode("PROXY TCP4 192.0.2.1 198.51.100.2 40000 7\r\n"),
        "192.0.2.1:40000",
      ],
      [
        "v1 TCP6",
        encoder.encode("PROXY TCP6 2001:db8::1 2001:db8::2 40001 7\r\n"),
        "[2001:db8::1]:40001",
      ],
      [
        "v2 INET",
        encodeProxyHeader({
          version: 2,
          source: { hostname: "203.0.113.9", port: 1234 },
          destination: { hostname: "198.51.100.2", port: 7 },
        }),
        "203.0.113.9:1234",
      ],
      [
        "v2 INET6",
        encodeProxyHeader({
          version: 2,
          source: { hostname: "2001:db8::9", port: 4321 },
          destination: { hostname: "2001:db8::2", port: 7 },
        }),
        "[2001:db8::9]:4321",
      ],
    ];
    for (const [name, header, peer] of headers) {
      await t.step(name, async () => {
        logs.clear();
        // Header and data in one write.
        assert.equal(
          await sendAndRead(
            { port },
            new Uint8Array([...header, ...encoder.encode("after")]),
          ),
          "after",
        );
        assert.equal(await openedPeer(), peer);
        // The header a byte at a time, then the data.
        logs.clear();
        const bytes = [...header].map((b) => new Uint8Array([b]));
        assert.equal(
          await sendAndRead({ port }, ...bytes, encoder.encode("slow")),
          "slow",
        );
        assert.equal(await openedPeer(), peer);
      });
    }
    await t.step(
      "v2 LOCAL and v1 UNKNOWN keep the connection's address",
      async () => {
        for (const version of [1, 2] as const) {
          logs.clear();
          const header = encodeProxyHeader({ version });
          assert.equal(
            await sendAndRead({ port }, header, encoder.encode("own")),
            "own",
          );
          assert.match(await openedPeer(), /^127\.0\.0\.1:\d+$/);
        }
      },
    );
    assert.equal(server.stats.proxyHeaderFailures, 0);
  },
);

engineTest(
  "malformed, late and untrusted headers are closed and counted; others are served",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({
      engine,
      port: 0,
      proxyProtocol: true,
      proxyTimeout: 300,
    });
    const { port } = server.addr;
    await using good = new LineClient(await Deno.connect({ port }));
    await good.send(encodeProxyHeader({ version: 1 }));
    await good.send("before\n");
    await good.line(/^before$/);
    const bad = [
      "GET / HTTP/1.0\r\n\r\n",
      `PROXY TCP4 ${"1".repeat(120)}`,
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
      "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
      "PROXY TCP4 ::1 ::1 1 2\r\n",
    ];
    for (const text of bad) {
      assert.equal(
        await sendAndRead({ port }, encoder.encode(`${text}data`)),
        "",
      );
    }
    // A datagram protocol on a stream, and a header cut short by a close.
    const dgram = encodeProxyHeader({
      version: 2,
      source: { hostname: "1.2.3.4", port: 1 },
      destination: { hostname: "5.6.7.8", port: 2 },
    });
    dgram[13] = 0x12;
    assert.equal(await sendAndRead({ port }, dgram), "");
    assert.equal(
      await sendAndRead({ port }, encoder.encode("PROXY TCP4 1.2")),
      "",
    );
    // Half a header, then silence: closed at the timeout.
    const started = performance.now();
    using silent = await Deno.connect({ port });
    await writeAll(silent, encoder.encode("PROXY TCP4 "));
    assert.deepEqual(await readAll(silent), new Uint8Array());
    assert.ok(performance.now() - started >= 250);

    await good.send("after\n");
    await good.line(/^after$/);
    await logs.waitFor(() => server.stats.proxyHeaderFailures === 9);
    assert.equal(server.stats.accepted, 1);
    const reasons = logs.find("Bad PROXY header from {peer}: {reason}")
      .map((r) => String(r.properties.reason));
    assert.ok(reasons.includes("not a PROXY header"), reasons.join("\n"));
    assert.ok(reasons.includes("no complete PROXY header within 300 ms"));
    assert.ok(reasons.includes("closed in the middle of its PROXY header"));
    assert.ok(
      reasons.includes("v2 header names a datagram protocol on a stream"),
    );
  },
);

engineTest(
  "trustedProxies: only their headers are believed",
  async (engine) => {
    logs.clear();
    {
      await using server = serveEcho({
        engine,
        port: 0,
        proxyProtocol: true,
        trustedProxies: ["10.0.0.0/8", "2001:db8::/32"],
      });
      const header = encodeProxyHeader({ version: 1 });
      assert.equal(
        await sendAndRead(
          { port: server.addr.port },
          header,
          encoder.encode("x"),
        ),
        "",
      );
      await logs.waitFor((r) => r.properties.reason === "not a trusted proxy");
      assert.equal(server.stats.proxyHeaderFailures, 1);
    }
    {
      await using server = serveEcho({
        engine,
        port: 0,
        proxyProtocol: true,
        trustedProxies: ["127.0.0.1"],
      });
      const header = encodeProxyHeader({ version: 1 });
      assert.equal(
        await sendAndRead(
          { port: server.addr.port },
          header,
          encoder.encode("x"),
        ),
        "x",
      );
    }
    assert.throws(
      () =>
        serveEcho({
          engine,
          port: 0,
          proxyProtocol: true,
          trustedProxies: ["10.0.0.0/33"],
        }),
      (error: RangeError & { option: string }) =>
        error instanceof RangeError && error.option === "trustedProxies",
    );
    assert.throws(
      () => serveEcho({ engine, port: 0, proxyTimeout: 100 }),
      (error: TypeError & { option: string }) =>
        error.option === "proxyTimeout",
    );
  },
);

engineTest(
  "10,000 PROXY headers with random addresses are all served as those addresses",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ engine, port: 0, proxyProtocol: true });
    const { port } = server.addr;
    const random = (n: number) => Math.floor(Math.random() * n);
    const claimed = new Set<string>();
    const one = async (i: number) => {
      const v6 = i % 2 === 1;
      const hostname = v6
        ? `2001:db8:${random(65536).toString(16)}::${
          random(65536).toString(16)
        }`
        : `10.${random(256)}.${random(256)}.${random(256)}`;
      const source = { hostname, port: 1 + random(65535) };
      const header = encodeProxyHeader({
        version: i % 3 === 0 ? 1 : 2,
        source,
        destination: { hostname: v6 ? "2001:db8::1" : "10.0.0.1", port: 7 },
      });
      claimed.add(
        v6
          ? `[${
            new URL(`http://[${hostname}]`).hostname.slice(1, -1)
          }]:${source.port}`
          : `${hostname}:${source.port}`,
      );
      assert.equal(
        await sendAndRead({ port }, header, encoder.encode(`${i}`)),
        `${i}`,
      );
    };
    for (let i = 0; i < 10_000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => one(i + j)));
    }
    assert.equal(server.stats.accepted, 10_000);
    assert.equal(server.stats.proxyHeaderFailures, 0);
    const opened = new Set(
      logs.records
        .filter((r) => r.rawMessage.toString().startsWith("Opened {peer}"))
        .map((r) => String(r.properties.peer)),
    );
    for (const peer of claimed) assert.ok(opened.has(peer), peer);
  },
);

Deno.test("PROXY headers over TLS (before the handshake) and Unix sockets, from our clients", async () => {
  await using certs = await testCertificates();
  {
    logs.clear();
    await using server = serveEcho({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      proxyProtocol: true,
    });
    await server.ready;
    const reply = await echoOnce("over TLS", {
      port: server.addr.port,
      tls: true,
      caCerts: [certs.ca],
      serverName: "localhost",
      sendProxy: "v2",
      proxySource: "[2001:db8::5]:5555",
    });
    assert.equal(reply, "over TLS");
    assert.equal(await openedPeer(), "[2001:db8::5]:5555");
  }
  {
    logs.clear();
    const path = `${certs.dir}/proxy.sock`;
    await using server = serveEcho({ path, proxyProtocol: true });
    await server.ready;
    const claimed = await echoOnce("unix", {
      path,
      sendProxy: "v1",
      proxySource: "192.0.2.50:5050",
    });
    assert.equal(claimed, "unix");
    assert.equal(await openedPeer(), "192.0.2.50:5050");
    logs.clear();
    assert.equal(await echoOnce("local", { path, sendProxy: "v2" }), "local");
    assert.match(await openedPeer(), /proxy\.sock#1$/);
  }
  // Without a handshake timeout the gate reads the header all the same.
  await using untimed = serveEcho({
    port: 0,
    cert: certs.cert,
    key: certs.key,
    handshakeTimeout: 0,
    proxyProtocol: true,
  });
  await untimed.ready;
  assert.equal(
    await echoOnce("untimed", {
      port: untimed.addr.port,
      tls: true,
      caCerts: [certs.ca],
      serverName: "localhost",
      sendProxy: "v1",
    }),
    "untimed",
  );
});

Deno.test("socat sends a crafted PROXY header; the CLIs send and read them", async () => {
  await using server = await ServerProcess.start([
    "--proxy-protocol",
    "--trusted-proxy",
    "127.0.0.0/8",
    "--trusted-proxy",
    "::1",
  ]);
  const port = String(server.port);
  const socat = await run(
    "socat",
    ["-t", "5", "-", `TCP:127.0.0.1:${port}`],
    encoder.encode(
      "PROXY TCP4 198.51.100.77 192.0.2.1 6000 9000\r\nfrom socat",
    ),
  );
  assert.equal(socat.code, 0, socat.stderr);
  assert.equal(decoder.decode(socat.stdout), "from socat");
  await server.stderr.waitFor(/Opened 198\.51\.100\.77:6000 /);
  for (const version of ["v1", "v2"]) {
    const result = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      CLIENT,
      "--port",
      port,
      "--send-proxy",
      version,
      "--proxy-source",
      "203.0.113.1:7001",
      `hi ${version}`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(decoder.decode(result.stdout), `hi ${version}\n`);
  }
  await server.stderr.waitFor(/Opened 203\.0\.113\.1:7001 /);
  const plain = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    CLIENT,
    "--port",
    port,
    "plain",
  ]);
  assert.equal(plain.code, 1);
  await server.stderr.waitFor(
    /Bad PROXY header from 127\.0\.0\.1:\d+: not a PROXY header/,
  );

  const usage: [string, string[], string][] = [
    [
      SERVER,
      ["--proxy-timeout", "5"],
      "Give --proxy-protocol with --proxy-timeout (see --help)",
    ],
    [
      SERVER,
      ["--proxy-protocol", "--trusted-proxy", "10.0.0.0/40"],
      "Invalid --trusted-proxy: has a prefix length that is not 0 to 32, got '10.0.0.0/40' (see --help)",
    ],
    [
      CLIENT,
      ["--send-proxy", "v3", "x"],
      "Invalid --send-proxy: expected one of v1, v2, got 'v3' (see --help)",
    ],
    [
      CLIENT,
      ["--proxy-source", "1.2.3.4:5", "x"],
      "Give --send-proxy with --proxy-source (see --help)",
    ],
    [
      CLIENT,
      ["--send-proxy", "v1", "--proxy-source", "host:5", "x"],
      "Invalid --proxy-source: must be ADDRESS:PORT, an IP address and a port, got host:5 (see --help)",
    ],
  ];
  for (const [script, args, message] of usage) {
    const result = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      script,
      ...args,
    ]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stderr, `error: ${message}\n`);
  }
});

/** Resolves once `path` exists, checking every 20 ms for up to 5 s. */
async function appears(path: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    try {
      await Deno.lstat(path);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new Error(`${path} did not appear within 5 s`);
}

engineTest(
  "HAProxy as a real proxy: it reads our client's header and sends its own v1 and v2 headers to our server",
  async (engine) => {
    await using certs = await testCertificates(); // A temporary directory.
    await using server = serveEcho({ engine, port: 0, proxyProtocol: true });
    for (const send of ["send-proxy", "send-proxy-v2"]) {
      logs.clear();
      const socket = `${certs.dir}/${send}.sock`;
      const config = `${certs.dir}/${send}.cfg`;
      await Deno.writeTextFile(
        config,
        [
          "defaults",
          "  mode tcp",
          "  timeout connect 5s",
          "  timeout client 30s",
          "  timeout server 30s",
          "frontend in",
          `  bind unix@${socket} accept-proxy`,
          "  default_backend echo",
          "backend echo",
          `  server echo 127.0.0.1:${server.addr.port} ${send}`,
          "",
        ].join("\n"),
      );
      await using haproxy = new Spawned("haproxy", ["-f", config, "-db"]);
      await appears(socket);
      // The client claims an address; HAProxy believes it (accept-proxy) and
      // passes it on in a header of its own.
      for (
        const [version, source, peer] of [
          ["v1", "203.0.113.5:4444", "203.0.113.5:4444"],
          ["v2", "[2001:db8::42]:4242", "[2001:db8::42]:4242"],
        ] as const
      ) {
        logs.clear();
        const reply = await echoOnce(`through ${send}`, {
          path: socket,
          sendProxy: version,
          proxySource: source,
        });
        assert.equal(reply, `through ${send}`);
        assert.equal(await openedPeer(), peer);
      }
      haproxy.child.kill("SIGTERM");
      await haproxy.status();
    }
    assert.equal(server.stats.proxyHeaderFailures, 0);
  },
);
