// serveEcho({ faults }) and --fault on the default engine: connections
// through the faults that hit their clients, in every mode and over TLS,
// the others untouched; what no engine, or the other one, serves refused
// with its reason; the CLI's flags and their errors.

import assert from "node:assert/strict";
import dgram from "node:dgram";
import { echoOnce, echoStream, serveEcho } from "../mod.ts";
import { serveMetrics } from "../metrics.ts";
import { testCertificates } from "./_certs.ts";
import { ENGINES, engineTest } from "./_engines.ts";
import { LineClient, readAll, readExactly, writeAll } from "./_helpers.ts";
import { assertUsageErrors, LOCK, SERVER } from "./_process.ts";

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

Deno.test("a limit cuts the echo of the clients it names exactly, then a clean end; others get theirs whole", async () => {
  await using server = serveEcho({
    port: 0,
    faults: [
      {
        kind: "limit",
        bytes: 1000,
        direction: "send",
        clients: ["127.0.0.0/8"],
      },
      { kind: "latency", ms: 50, name: "elsewhere", clients: ["10.0.0.0/8"] },
    ],
  });
  await server.ready;
  const { port } = server.addr;
  {
    using conn = await Deno.connect({ port });
    const reading = readAll(conn);
    await writeAll(conn, bytes(5000));
    assert.deepEqual(await reading, bytes(1000));
  }
  // Counted: the connection hit, the limit that ended it; and in metrics.
  assert.equal(server.stats.faulted, 1);
  assert.equal(server.stats.faultActions.limit, 1);
  await using metrics = serveMetrics(server, { port: 0 });
  const text = await (await fetch(
    `http://127.0.0.1:${metrics.addr.port}/metrics`,
  )).text();
  assert.match(text, /^tcp_echo_faulted_connections_total 1$/m);
  assert.match(text, /^tcp_echo_fault_actions_total\{action="limit"\} 1$/m);
  assert.match(text, /^tcp_echo_fault_actions_total\{action="drop"\} 0$/m);
  // ::1 is not in 127.0.0.0/8: its echo is whole.
  await using v6 = serveEcho({
    hostname: "::1",
    port: 0,
    faults: [{ kind: "limit", bytes: 1, clients: ["127.0.0.0/8"] }],
  });
  await v6.ready;
  assert.equal(
    await echoOnce("whole", { hostname: "::1", port: v6.addr.port }),
    "whole",
  );
});

Deno.test("down closes the connections of the clients it names as soon as they are accepted, and counts them", async () => {
  await using server = serveEcho({
    port: 0,
    faults: [{ kind: "down", clients: ["127.0.0.1"] }],
  });
  await server.ready;
  for (let i = 0; i < 3; i++) {
    using conn = await Deno.connect({ port: server.addr.port });
    assert.equal((await readAll(conn).catch(() => new Uint8Array())).length, 0);
  }
  await using v6 = serveEcho({
    hostname: "::1",
    port: 0,
    faults: [{ kind: "down", clients: ["127.0.0.1"] }],
  });
  await v6.ready;
  assert.equal(
    await echoOnce("up", { hostname: "::1", port: v6.addr.port }),
    "up",
  );
  assert.equal(server.stats.faultActions.down, 3);
  assert.equal(server.stats.accepted, 0);
});

Deno.test("faults act in every mode, and over TLS on its encrypted bytes: latency and a slicer of 7 bytes keep the echo exact", async () => {
  await using certs = await testCertificates();
  const faults = [
    { kind: "latency", ms: 20, direction: "receive" },
    { kind: "slicer", size: 7, delayMs: 1, direction: "send" },
  ] as const;
  await using tls = serveEcho({
    port: 0,
    cert: certs.cert,
    key: certs.key,
    faults,
  });
  await tls.ready;
  const payload = bytes(5_000);
  const echo = await new Response(
    echoStream([payload], {
      port: tls.addr.port,
      tls: true,
      caCerts: [certs.ca],
      serverName: "localhost",
    }),
  ).bytes();
  assert.deepEqual(echo, payload);
  await using chat = serveEcho({ port: 0, mode: "chat", faults });
  await chat.ready;
  await using alice = await LineClient.connect(chat.addr.port);
  await alice.line(/^\* welcome, you are user1;/);
  await alice.send("/nick alice\n");
  await alice.line(/^\* user1 joined lobby$/);
  await alice.line(/^\* user1 is now alice$/);
});

Deno.test("what an engine cannot act out is refused with its reason; a bad spec names the fault and field", () => {
  assert.throws(
    () =>
      serveEcho({
        path: "/tmp/never-made.sock",
        faults: [{ kind: "down", how: "refuse" }],
      }),
    (error: Error) =>
      error.message ===
        "Cannot use engine: default does not serve down faults that refuse, on a Unix socket (the native engine does)",
  );
  assert.throws(
    () => serveEcho({ port: 0, faults: [{ kind: "reset", bytes: 1 }] }),
    (error: Error) =>
      error.message ===
        "Cannot use engine: default does not serve reset faults (the native engine does)",
  );
  assert.throws(
    () => serveEcho({ port: 0, faults: [{ kind: "drop", probability: 1 }] }),
    (error: Error & { option?: string }) =>
      error.option === "faults" &&
      error.message ===
        "Cannot use faults: faults[0]: drop acts on UDP replies: give udp",
  );
  assert.throws(
    () => serveEcho({ port: 0, faults: [{ kind: "latency" } as never] }),
    (error: Error & { option?: string }) =>
      error instanceof TypeError && error.option === "faults" &&
      error.message === "Cannot use faults: faults[0].ms: is required",
  );
});

Deno.test("--fault and --faults FILE: usage errors name the flag and the field", async () => {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(file, '[{"kind": "bandwidth"}]');
    await assertUsageErrors(
      [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
      [
        [
          ["--fault", "latency:jitter=5"],
          "Invalid --fault: latency.ms: is required, got 'latency:jitter=5'",
        ],
        [
          ["--fault", "lag:ms=5"],
          "Invalid --fault: lag.kind: must be one of latency, bandwidth, slicer, limit, reset, hang, slow_close, down, drop, duplicate, reorder, corrupt, got 'lag:ms=5'",
        ],
        [
          ["--faults", file],
          "Invalid --faults: faults[0].bytesPerSecond: is required",
        ],
        [
          ["--fault", "reset:bytes=1"],
          "Invalid --engine: default does not serve reset faults (the native engine does)",
        ],
      ],
    );
  } finally {
    await Deno.remove(file);
  }
});

/**
 * Sends `datagrams` to `port` from one socket; the replies, once `count`
 * have come or `ms` have passed (to show that no more come).
 */
async function udpReplies(
  port: number,
  datagrams: Uint8Array[],
  count: number,
  ms: number,
): Promise<Uint8Array[]> {
  const socket = dgram.createSocket("udp4");
  const replies: Uint8Array[] = [];
  const { promise: enough, resolve: done } = Promise.withResolvers<void>();
  socket.on("message", (message) => {
    replies.push(new Uint8Array(message));
    if (replies.length >= count) done();
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const timer = setTimeout(done, ms);
  try {
    for (const d of datagrams) {
      await new Promise<void>((resolve, reject) =>
        socket.send(d, port, "127.0.0.1", (e) => e ? reject(e) : resolve())
      );
    }
    await enough;
    return replies;
  } finally {
    clearTimeout(timer);
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

engineTest(
  "datagram faults on UDP replies: dropped, sent twice, one bit flipped, held back",
  async (engine) => {
    const one = [Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)];
    for (
      const [fault, wait, check] of [
        [
          { kind: "drop", probability: 1 },
          1,
          (r: Uint8Array[]) => r.length === 0,
        ],
        [
          { kind: "duplicate", probability: 1 },
          3,
          (r: Uint8Array[]) =>
            r.length === 2 && r.every((d) => d.join() === one[0].join()),
        ],
        [
          { kind: "corrupt", probability: 1 },
          2,
          (r: Uint8Array[]) =>
            r.length === 1 &&
            r[0].reduce((bits, b, i) => bits + popcount(b ^ one[0][i]), 0) ===
              1,
        ],
      ] as const
    ) {
      await using server = serveEcho({
        port: 0,
        engine,
        udp: true,
        faults: [fault],
      });
      await server.ready;
      // More than it should send, or 300 ms: none more comes.
      const replies = await udpReplies(server.addr.port, one, wait, 300);
      assert.ok(
        check(replies),
        `${fault.kind}: ${replies.map((r) => r.join())}`,
      );
      assert.equal(server.stats.faultActions[fault.kind], 1, fault.kind);
    }
    // Reorder with every datagram held: each goes once its hold is over.
    await using held = serveEcho({
      port: 0,
      engine,
      udp: true,
      faults: [{ kind: "reorder", probability: 1, window: 5 }],
    });
    await held.ready;
    const three = [1, 2, 3].map((i) => Uint8Array.of(i));
    const replies = await udpReplies(held.addr.port, three, 3, 10_000);
    assert.deepEqual(replies.map((r) => r[0]), [1, 2, 3]);
  },
);

/** The bits set in `b`. */
function popcount(b: number): number {
  let n = 0;
  for (; b; b >>= 1) n += b & 1;
  return n;
}

Deno.test("setFaults() changes the faults of new connections (workers too); open ones keep theirs; a refusal keeps the old", async () => {
  await using server = serveEcho({ port: 0, workers: 2, udp: true });
  await server.ready;
  const { port } = server.addr;
  const echo = async (conn: Deno.Conn, n: number) => {
    await writeAll(conn, bytes(n));
    await conn.closeWrite();
    return (await readAll(conn)).length;
  };
  using before = await Deno.connect({ port });
  // Accepted (one round trip) before the faults change.
  await writeAll(before, Uint8Array.of(7));
  assert.deepEqual(await readExactly(before, 1), Uint8Array.of(7));
  await server.setFaults([{ kind: "limit", bytes: 10, direction: "send" }]);
  // Six new connections, spread over both workers by the kernel: all cut.
  for (let i = 0; i < 6; i++) {
    using conn = await Deno.connect({ port });
    assert.equal(await echo(conn, 100), 10, `connection ${i}`);
  }
  // The one opened before keeps its whole echo.
  assert.equal(await echo(before, 100), 100);
  await assert.rejects(
    server.setFaults([{ kind: "reset", bytes: 1 }]),
    /default does not serve reset faults/,
  );
  {
    using conn = await Deno.connect({ port });
    assert.equal(await echo(conn, 100), 10, "the old faults stay");
  }
  // UDP replies too; [] lifts everything.
  await server.setFaults([{ kind: "drop", probability: 1 }]);
  assert.deepEqual(await udpReplies(port, [Uint8Array.of(1)], 1, 300), []);
  await server.setFaults([]);
  assert.equal((await udpReplies(port, [Uint8Array.of(1)], 1, 5000)).length, 1);
  {
    using conn = await Deno.connect({ port });
    assert.equal(await echo(conn, 100), 100);
  }
  await using tcpOnly = serveEcho({ port: 0 });
  await tcpOnly.ready;
  await assert.rejects(
    tcpOnly.setFaults([{ kind: "drop", probability: 1 }]),
    /faults\[0\]: drop acts on UDP replies: give udp/,
  );
  if (ENGINES.includes("native")) {
    await using native = serveEcho({ port: 0, engine: "native" });
    await native.ready;
    await native.setFaults([{ kind: "latency", ms: 1 }]);
    await native.setFaults([]);
    await using nativeUdp = serveEcho({ port: 0, engine: "native", udp: true });
    await nativeUdp.ready;
    await nativeUdp.setFaults([{ kind: "drop", probability: 1 }]);
    assert.deepEqual(
      await udpReplies(nativeUdp.addr.port, [Uint8Array.of(1)], 1, 300),
      [],
    );
    await nativeUdp.setFaults([]);
  }
});
