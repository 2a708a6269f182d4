// UDP (RFC 862's datagram echo): serveEcho({ udp }), the clients' `udp`,
// loss and late replies in load tests, the CLIs, and socat and nc -u as
// peers.

import assert from "node:assert/strict";
import { engineTest, loadEngineTest } from "./_engines.ts";
import { EchoError, echoOnce, loadTest, serveEcho } from "../mod.ts";
import { captureLogs, pseudoRandomBytes } from "./_helpers.ts";
import {
  assertUsageErrors,
  CLIENT,
  LOCK,
  run,
  SERVER,
  ServerProcess,
} from "./_process.ts";

const logs = await captureLogs();
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A UDP peer that answers as `reply` says: bytes to send back (after
 * `delayMs`, if any), or undefined to say nothing.
 */
function fakeServer(
  reply: (data: Uint8Array, n: number) => Uint8Array | undefined,
  delayMs: (n: number) => number = () => 0,
): { port: number } & AsyncDisposable {
  const socket = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const serving = (async () => {
    const buffer = new Uint8Array(65_536);
    for (let n = 1;; n++) {
      let data: Uint8Array, from: Deno.Addr;
      try {
        [data, from] = await socket.receive(buffer);
      } catch {
        return; // Closed by the test.
      }
      const answer = reply(data.slice(), n);
      if (answer === undefined) continue;
      const wait = delayMs(n);
      if (wait === 0) {
        await socket.send(answer, from).catch(() => {});
      } else {
        const timer = setTimeout(() => {
          timers.delete(timer);
          socket.send(answer, from).catch(() => {});
        }, wait);
        timers.add(timer);
      }
    }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      for (const timer of timers) clearTimeout(timer);
      socket.close();
      await serving;
    },
  };
}

engineTest(
  "serveEcho({ udp: true }) echoes datagrams on the TCP port number, exactly, and counts them",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, udp: true });
    const { port } = server.addr;
    assert.equal(await echoOnce("over TCP", { port }), "over TCP");
    assert.equal(await echoOnce("over UDP", { port, udp: true }), "over UDP");
    const largest = pseudoRandomBytes(65_507, 3);
    assert.deepEqual(await echoOnce(largest, { port, udp: true }), largest);
    assert.deepEqual(
      await echoOnce(new Uint8Array(), { port, udp: true }),
      new Uint8Array(),
    );
    await assert.rejects(
      () => echoOnce(new Uint8Array(65_508), { port, udp: true }),
      (error: RangeError & { option: string }) =>
        error instanceof RangeError && error.option === "udp",
    );
    const stats = server.stats;
    assert.equal(stats.datagramsIn, 3);
    assert.equal(stats.datagramsOut, 3);
    assert.equal(stats.datagramBytesIn, 8 + 65_507);
    assert.equal(stats.datagramBytesOut, stats.datagramBytesIn);
    assert.equal(stats.accepted, 1);
    assert.equal(stats.bytesIn, 8);
  },
);

engineTest(
  'serveEcho({ udp: "only" }) serves UDP without TCP; with workers, TCP on all, UDP here',
  async (engine, t) => {
    await t.step("only", async () => {
      await using server = serveEcho({ engine, port: 0, udp: "only" });
      const { port } = server.addr;
      assert.equal(await echoOnce("u", { port, udp: true }), "u");
      await assert.rejects(
        () => Deno.connect({ port }),
        Deno.errors.ConnectionRefused,
      );
    });
    await t.step("workers", async () => {
      await using server = serveEcho({
        engine,
        port: 0,
        udp: true,
        workers: 2,
      });
      await server.ready;
      const { port } = server.addr;
      const replies = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => echoOnce(`${i}`, { port, udp: i % 2 === 0 }),
        ),
      );
      replies.forEach((reply, i) => assert.equal(reply, `${i}`));
      assert.equal(server.stats.datagramsOut, 10);
      assert.equal(server.stats.accepted, 10);
    });
    await t.step("IPv6", async () => {
      await using server = serveEcho({
        engine,
        hostname: "::1",
        port: 0,
        udp: true,
      });
      const { port } = server.addr;
      assert.equal(
        await echoOnce("six", { hostname: "::1", port, udp: true }),
        "six",
      );
    });
  },
);

Deno.test("UDP options that cannot work are option errors", () => {
  const cases: [Record<string, unknown>, string, typeof Error][] = [
    [{ udp: true, mode: "chat" }, "udp", RangeError],
    [{ udp: true, mode: "line" }, "udp", RangeError],
    [{ udp: true, cert: "x", key: "y" }, "udp", TypeError],
    [{ udp: "maybe" }, "udp", RangeError],
  ];
  for (const [options, option, type] of cases) {
    assert.throws(
      () => serveEcho({ port: 0, ...options }),
      (error: Error & { option: string }) =>
        error instanceof type && error.option === option,
      JSON.stringify(options),
    );
  }
});

Deno.test("the UDP client: a reply that differs, no reply, and replies from elsewhere", async () => {
  {
    await using mangler = fakeServer((data) => data.map((b) => b ^ 1));
    await assert.rejects(
      () => echoOnce("abc", { port: mangler.port, udp: true }),
      (error: Error) =>
        error instanceof EchoError &&
        error.message === "Reply differs from what was sent at byte 0",
    );
  }
  {
    await using silent = fakeServer(() => undefined);
    await assert.rejects(
      () => echoOnce("abc", { port: silent.port, udp: true, timeout: 200 }),
      (error: Error) =>
        error instanceof DOMException && error.name === "TimeoutError" &&
        /^No reply from 127\.0\.0\.1:\d+ within 200 ms$/.test(error.message),
    );
  }
  await assert.rejects(
    () => echoOnce("x", { udp: true, path: "/tmp/x.sock" }),
    TypeError,
  );
});

loadEngineTest(
  "loadTest({ udp }) counts lost datagrams, skips late replies, and checks every reply",
  async (engine, t) => {
    if (engine.nativeIo === "io_uring") {
      // Its datagrams are stamped per socket: UDP runs on epoll.
      await assert.rejects(
        () => loadTest({ ...engine, port: 9, udp: true, count: 1 }),
        /io_uring drives long-lived TCP and Unix streams; UDP runs on epoll/,
      );
      return;
    }
    await t.step("our server: nothing lost", async () => {
      await using server = serveEcho({ port: 0, udp: "only" });
      const report = await loadTest({
        ...engine,
        port: server.addr.port,
        udp: true,
        connections: 5,
        count: 500,
        message: 100,
      });
      assert.equal(report.roundTrips, 500);
      assert.equal(report.lost, 0);
      assert.equal(report.mismatches + report.otherErrors, 0);
      assert.equal(server.stats.datagramsIn, 500);
    });
    await t.step("a server that drops every third datagram", async () => {
      await using lossy = fakeServer((data, n) =>
        n % 3 === 0 ? undefined : data
      );
      const report = await loadTest({
        ...engine,
        port: lossy.port,
        udp: true,
        count: 30,
        timeout: 100,
      });
      assert.equal(report.lost, 10);
      assert.equal(report.roundTrips, 20);
      assert.equal(report.mismatches, 0);
    });
    await t.step(
      "a reply that comes after its datagram was counted lost",
      async () => {
        // The 2nd reply comes at 300 ms, long after its 150 ms wait, while
        // the 4th datagram (each later reply takes 100 ms) waits for its own.
        await using late = fakeServer(
          (data) => data,
          (n) => n === 2 ? 300 : n > 2 ? 100 : 0,
        );
        const report = await loadTest({
          ...engine,
          port: late.port,
          udp: true,
          count: 6,
          timeout: 150,
        });
        assert.equal(report.lost, 1);
        assert.equal(report.roundTrips, 5);
        assert.equal(report.mismatches, 0);
      },
    );
  },
);

engineTest("socat UDP: and nc -u get their datagrams back", async (engine) => {
  await using server = serveEcho({ engine, port: 0, udp: "only" });
  const port = String(server.addr.port);
  const socat = await run(
    "socat",
    ["-t", "0.5", "-", `UDP:127.0.0.1:${port}`],
    encoder.encode("from socat"),
  );
  assert.equal(socat.code, 0, socat.stderr);
  assert.equal(decoder.decode(socat.stdout), "from socat");
  const nc = await run(
    "nc",
    ["-u", "-w", "1", "127.0.0.1", port],
    encoder.encode("from nc"),
  );
  assert.equal(decoder.decode(nc.stdout), "from nc");
  assert.equal(server.stats.datagramsOut, 2);
});

function client(args: string[]) {
  return run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--unstable-net",
    CLIENT,
    ...args,
  ]);
}

Deno.test("server --udp and client --udp, --max-loss, and their usage errors", async () => {
  await using server = await ServerProcess.start([
    "--udp",
    "--log-level",
    "error",
  ], [
    Deno.execPath(),
    "run",
    LOCK,
    "--allow-net",
    "--unstable-net",
    SERVER,
  ]);
  const port = String(server.port);
  const hi = await client(["--udp", "--port", port, "hi"]);
  assert.equal(hi.code, 0, hi.stderr);
  assert.equal(decoder.decode(hi.stdout), "hi\n");
  const load = await client([
    "--udp",
    "--port",
    port,
    "--connections",
    "3",
    "--count",
    "300",
  ]);
  assert.equal(load.code, 0, load.stderr);
  assert.match(
    decoder.decode(load.stdout),
    /errors +0 connect, 0 closed before any echo, 0 mismatched echoes, 0 other, 0 lost \(0\.00 %\)/,
  );
  assert.doesNotMatch(load.stderr, /note:/);

  await using lossy = fakeServer((data, n) => n % 2 === 0 ? undefined : data);
  const lost = await client([
    "--udp",
    "--port",
    String(lossy.port),
    "--count",
    "10",
    "--timeout",
    "100",
    "--max-loss",
    "20",
  ]);
  assert.equal(lost.code, 1);
  assert.match(
    lost.stderr,
    /^note: 5 datagrams got no reply within --timeout \(100 ms\), each holding its socket that long: a server may drop datagrams over a rate limit \(ours answers --udp-rate a second from one address, 1000 by default\)\nerror: 50\.00 % of datagrams to 127\.0\.0\.1:\d+ got no reply, more than --max-loss 20\n$/,
  );
  const tolerated = await client([
    "--udp",
    "--port",
    String(lossy.port),
    "--count",
    "10",
    "--timeout",
    "100",
  ]);
  assert.equal(tolerated.code, 0, tolerated.stderr);
  assert.match(tolerated.stderr, /^note: 5 datagrams got no reply within/m);

  const none = await client([
    "--udp",
    "--port",
    String(lossy.port),
    "--timeout",
    "300",
    "x",
  ]);
  // The fake answers every other datagram: the first, so try twice.
  const again = await client([
    "--udp",
    "--port",
    String(lossy.port),
    "--timeout",
    "300",
    "x",
  ]);
  assert.deepEqual([none.code, again.code].sort(), [0, 1]);

  const usage: [string[], string][] = [
    [["--udp", "-"], "Unexpected - with --udp: give MESSAGE, one datagram"],
    [["--udp", "--tls", "x"], "Give --udp or --tls, not both"],
    [["--max-loss", "5", "--count", "1"], "Give --udp with --max-loss"],
    [
      ["--udp", "--max-loss", "101", "--count", "1"],
      "Invalid --max-loss: expected a percentage from 0 to 100, got '101'",
    ],
    [
      ["--udp", "a".repeat(65_508)],
      "Invalid --udp: a datagram holds at most 65507 bytes, got 65508",
    ],
  ];
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", "--unstable-net", CLIENT],
    usage,
  );
  const serverUsage: [string[], string][] = [
    [
      ["--udp", "--mode", "chat"],
      "Invalid --udp: UDP serves echo and info mode only (see --help)",
    ],
    [
      ["--udp", "--unix", "/tmp/x.sock"],
      "Give --unix or --udp, not both (see --help)",
    ],
    [
      ["--udp-only", "--udp"],
      "Give --udp-only or --udp, not both (see --help)",
    ],
  ];
  for (const [args, message] of serverUsage) {
    const result = await run(Deno.execPath(), [
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--unstable-net",
      SERVER,
      ...args,
    ]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stderr, `error: ${message}\n`);
  }
  const unstable = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    SERVER,
    "--udp",
    "--port",
    "0",
  ]);
  assert.equal(unstable.code, 2);
  assert.equal(
    unstable.stderr,
    "error: Invalid --udp: run Deno with --unstable-net (Deno.listenDatagram is unstable)\n",
  );
});

engineTest(
  "udpRate answers a source no faster than its rate, drops the rest, and says so once a second",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({
      engine,
      port: 0,
      udp: "only",
      udpRate: 10,
    });
    const socket = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    const to = {
      transport: "udp" as const,
      hostname: "127.0.0.1",
      port: server.addr.port,
    };
    for (let i = 0; i < 30; i++) await socket.send(encoder.encode(`${i}`), to);
    // The server runs in this process: let it take all 30 (bounded).
    for (let turn = 0; turn < 2000 && server.stats.datagramsIn < 30; turn++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const { datagramsIn, datagramsOut, datagramsRateLimited } = server.stats;
    assert.equal(datagramsIn, 30);
    assert.ok(datagramsOut >= 10 && datagramsOut <= 11, `${datagramsOut}`);
    assert.equal(datagramsRateLimited, 30 - datagramsOut);
    // One warning for the burst (not one per datagram), when the first went.
    await logs.waitFor((r) =>
      String(r.rawMessage).startsWith("Dropping UDP datagrams")
    );
    const warnings = logs.records.filter((r) =>
      String(r.rawMessage).startsWith("Dropping UDP datagrams")
    );
    assert.equal(warnings.length, 1);
    const [warning] = warnings;
    assert.equal(warning.level, "warning");
    assert.equal(warning.properties.udpRate, 10);
    assert.equal(warning.properties.dropped, 1);
    assert.equal(
      warning.properties.peer,
      `127.0.0.1:${(socket.addr as Deno.NetAddr).port}`,
    );
    const buffer = new Uint8Array(64);
    for (let i = 0; i < datagramsOut; i++) await socket.receive(buffer);
    socket.close();
  },
);
