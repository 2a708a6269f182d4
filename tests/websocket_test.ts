// WebSocket beside TCP (serveEcho's `websocket`, --websocket): every mode
// over /ws, echo byte-exact with text as text and binary as binary, close
// codes echoed, messages over the limit closed with 1009, browsers and TCP
// clients in one chat room, the health endpoints and a drain, bad upgrades
// answered and counted, and the command line's flags.

import assert from "node:assert/strict";
import { createCertificates, echoOnce, loadTest, serveEcho } from "../mod.ts";
import { serveMetrics } from "../metrics.ts";
import {
  captureLogs,
  concat,
  LineClient,
  localPeer,
  readAll,
  writeAll,
} from "./_helpers.ts";
import {
  assertUsageErrors,
  CLIENT,
  LOCK,
  resetClients,
  run,
  runClient,
  SERVER,
  Spawned,
} from "./_process.ts";
import { frame, RawWebSocket } from "./_websocket.ts";
import { startRedis } from "./_redis.ts";
import { testCertificates } from "./_certs.ts";
import { echoFraming, lineFraming } from "../lib/websocket/framing.ts";
import { openWebSocket } from "../lib/client/websocket.ts";
import { wsPackageDir } from "../bench/websocket.ts";
import {
  closePayload,
  encodeFrames,
  FrameReader,
  OP_CLOSE,
  OP_PING,
  OP_TEXT,
} from "../lib/websocket/frames.ts";
import {
  acceptUpgrade,
  encodeResponse,
  HeadReader,
} from "../lib/websocket/http.ts";

/** A WebSocket client that keeps what arrives, and waits on events. */
class WsClient implements AsyncDisposable {
  readonly messages: (string | Uint8Array)[] = [];
  readonly closed: Promise<CloseEvent>;
  #socket: WebSocket;
  #wake: (() => void) | undefined;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      this.messages.push(
        typeof event.data === "string"
          ? event.data
          : new Uint8Array(event.data),
      );
      this.#wake?.();
    };
    this.closed = new Promise((resolve) => {
      socket.onclose = (event) => {
        resolve(event);
        this.#wake?.();
      };
    });
  }

  static async open(url: string): Promise<WsClient> {
    const socket = new WebSocket(url);
    const client = new WsClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error(`Cannot open ${url}`));
    });
    return client;
  }

  send(message: string | Uint8Array): void {
    this.#socket.send(message);
  }

  /** Resolves once `count` messages have arrived (all of them). */
  async received(count: number): Promise<(string | Uint8Array)[]> {
    while (this.messages.length < count) {
      if (this.#socket.readyState === WebSocket.CLOSED) {
        throw new Error(`Closed after ${this.messages.length} messages`);
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    return this.messages;
  }

  /** Resolves the first message arrived that matches `pattern`. */
  async line(pattern: RegExp): Promise<string> {
    for (let seen = 0;; seen++) {
      const [message] = await this.received(seen + 1).then((m) =>
        m.slice(seen)
      );
      if (typeof message === "string" && pattern.test(message)) return message;
    }
  }

  close(code?: number, reason?: string): void {
    this.#socket.close(code, reason);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#socket.readyState !== WebSocket.CLOSED) this.#socket.close();
    await this.closed;
  }
}

/** An echo server (or `mode`) on TCP with a WebSocket listener beside. */
async function serveBoth(more: Record<string, unknown> = {}) {
  const { websocket = {}, ...rest } = more;
  const server = serveEcho({
    port: 0,
    websocket: { port: 0, ...websocket as object },
    ...rest,
  });
  await server.ready;
  return {
    server,
    url: `ws://127.0.0.1:${server.websocketAddr!.port}/ws`,
    http: `http://127.0.0.1:${server.websocketAddr!.port}`,
  };
}

Deno.test("echo over WebSocket: text as text, binary as binary, byte-exact, in order; the close code and reason come back", async () => {
  const { server, url } = await serveBoth();
  await using _server = server;
  await using ws = await WsClient.open(url);
  const every = Uint8Array.from({ length: 256 }, (_, i) => i);
  const sent: (string | Uint8Array)[] = [
    "hi",
    every,
    "é✓ 𝄞 and more",
    "x".repeat(200_000),
    new Uint8Array(0),
    "",
    Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256),
    "",
  ];
  for (const message of sent) ws.send(message);
  assert.deepEqual(await ws.received(sent.length), sent);
  ws.close(4001, "done here");
  const closed = await ws.closed;
  assert.equal(closed.code, 4001);
  assert.equal(closed.reason, "done here");
  const bytes = sent.reduce(
    (n, m) =>
      n + (typeof m === "string" ? new TextEncoder().encode(m) : m)
        .length,
    0,
  );
  assert.equal(server.stats.bytesIn, bytes);
  assert.equal(server.stats.bytesOut, bytes);
  assert.equal(server.stats.accepted, 1);
});

Deno.test("a message over the limit closes that WebSocket with 1009; the others go on", async () => {
  const { server, url } = await serveBoth({
    websocket: { maxMessageBytes: 1000 },
  });
  await using _server = server;
  await using other = await WsClient.open(url);
  await using big = await WsClient.open(url);
  big.send("y".repeat(1000));
  assert.equal((await big.received(1))[0], "y".repeat(1000));
  big.send("y".repeat(1001));
  const closed = await big.closed;
  assert.equal(closed.code, 1009);
  assert.equal(
    closed.reason,
    "message too big: 1001 bytes, the limit is 1000",
  );
  other.send("still here");
  assert.deepEqual(await other.received(1), ["still here"]);
});

Deno.test("line mode over WebSocket: a message is a line, one with newlines several, each answered as one message", async () => {
  const { server, url } = await serveBoth({ mode: "line" });
  await using _server = server;
  await using ws = await WsClient.open(url);
  ws.send("one");
  ws.send("two\nthree\n");
  assert.deepEqual(await ws.received(3), ["one", "two", "three"]);
});

Deno.test("info mode over WebSocket answers with its transport and the client's address", async () => {
  const { server, url } = await serveBoth({ mode: "info" });
  await using _server = server;
  await using ws = await WsClient.open(url);
  ws.send("transport\nclientip");
  assert.deepEqual(await ws.received(2), ["websocket", "127.0.0.1"]);
});

Deno.test("chat: browsers and TCP clients share one room, and see each other's lines in one order", async () => {
  const { server, url } = await serveBoth({ mode: "chat" });
  await using _server = server;
  await using alice = await WsClient.open(url);
  await alice.line(/^\* welcome, you are user1;/);
  alice.send("/nick alice");
  await alice.line(/^\* user1 is now alice$/);
  await using bob = await LineClient.connect(server.addr.port);
  await bob.line(/^\* welcome, you are user2;/);
  await bob.send("/nick bob\n");
  await bob.line(/^\* user2 is now bob$/);
  await using carol = await WsClient.open(url);
  await carol.line(/^\* welcome, you are user3;/);
  alice.send("hello from a browser");
  await bob.send("hello from nc\n");
  carol.send("and another browser");
  // Each sees the three lines, in the one order the relay gave them.
  const said = (lines: unknown[]) =>
    lines.filter((l) => typeof l === "string" && /^<\w+> /.test(l));
  const order = said(await bob.until((lines) => said(lines).length === 3));
  const inBrowser = async (ws: WsClient) => {
    for (let n = 1;; n++) {
      const lines = said(await ws.received(n));
      if (lines.length === 3) return lines;
    }
  };
  assert.deepEqual(await inBrowser(alice), order);
  assert.deepEqual(await inBrowser(carol), order);
  assert.deepEqual(
    [...order].sort(),
    [
      "<alice> hello from a browser",
      "<bob> hello from nc",
      "<user3> and another browser",
    ],
  );
});

Deno.test("/healthz and /readyz: 200 while serving; a drain turns /readyz to 503 and refuses new upgrades while open WebSockets finish", async () => {
  const { server, url, http } = await serveBoth({ gracePeriod: 30_000 });
  const get = async (path: string, init?: RequestInit) => {
    const response = await fetch(`${http}${path}`, init);
    return `${response.status} ${(await response.text()).trim()}`;
  };
  assert.equal(await get("/healthz"), "200 ok");
  assert.equal(await get("/readyz"), "200 ready");
  assert.equal(
    await get("/elsewhere"),
    "404 Not found: try /, /ws, /info, /healthz or /readyz",
  );
  assert.equal(
    await get("/ws"),
    "426 /ws speaks WebSocket: send an Upgrade request",
  );
  const open = await WsClient.open(url);
  const stopping = server.shutdown();
  assert.equal(await get("/readyz"), "503 draining");
  assert.equal(await get("/healthz"), "200 ok");
  await assert.rejects(WsClient.open(url));
  // The open one still echoes until it closes.
  open.send("still served");
  assert.deepEqual(await open.received(1), ["still served"]);
  open.close();
  await open.closed;
  await stopping;
});

Deno.test("a bad upgrade is answered 400, logged and counted; the server goes on", async () => {
  const { server, url, http } = await serveBoth();
  await using _server = server;
  const response = await fetch(`${http}/ws`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-version": "13",
    },
  });
  assert.equal(response.status, 400);
  assert.match(await response.text(), /^Bad WebSocket upgrade: /);
  assert.equal(server.stats.websocketBadUpgrades, 1);
  await using ws = await WsClient.open(url);
  ws.send("fine");
  assert.deepEqual(await ws.received(1), ["fine"]);
});

Deno.test("websocket.only: no TCP listener; the options are checked", async () => {
  await using server = serveEcho({
    port: 0,
    websocket: { port: 0, only: true },
  });
  await server.ready;
  assert.equal(server.transport, "websocket");
  assert.deepEqual(server.addr, server.websocketAddr);
  await using ws = await WsClient.open(
    `ws://127.0.0.1:${server.websocketAddr!.port}/ws`,
  );
  ws.send("only");
  assert.deepEqual(await ws.received(1), ["only"]);
  assert.throws(
    () => serveEcho({ port: 0, websocket: { port: 70000 } }),
    /Cannot use websocket: port must be an integer from 0 to 65535, got 70000/,
  );
  assert.throws(
    () => serveEcho({ port: 0, websocket: { maxMessageBytes: 0 } }),
    /Cannot use websocket.maxMessageBytes: must be an integer from 1 to 67108864, got 0/,
  );
  assert.throws(
    () => serveEcho({ port: 0, engine: "native", websocket: { port: 0 } }),
    /Cannot use engine: native does not serve WebSocket \(the default engine does\)/,
  );
});

Deno.test("--websocket prints where it listens; --websocket-only alone; usage errors", async () => {
  await using server = new Spawned(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-sys=hostname",
    SERVER,
    "--port",
    "0",
    "--mode",
    "line",
    "--websocket",
    "127.0.0.1:0",
  ]);
  await server.stdout.waitFor(/^Listening on 127\.0\.0\.1:\d+$/);
  const line = await server.stdout.waitFor(/^WebSocket on /);
  const url = line.match(/^WebSocket on (ws:\/\/127\.0\.0\.1:\d+\/ws)$/)![1];
  await using ws = await WsClient.open(url);
  ws.send("through the command line");
  assert.deepEqual(await ws.received(1), ["through the command line"]);
  await assertUsageErrors(
    [
      Deno.execPath(),
      "run",
      LOCK,
      "--allow-net",
      "--allow-sys=hostname",
      SERVER,
    ],
    [
      [
        ["--websocket-only"],
        "Give --websocket with --websocket-only",
      ],
      [
        ["--websocket", "127.0.0.1:0", "--max-message-bytes", "0"],
        "Invalid --max-message-bytes: must be an integer from 1 to 67108864, got 0",
      ],
      [
        ["--websocket", "127.0.0.1:0", "--mode", "proxy", "--upstream", "h:1"],
        "Invalid --websocket: serves echo, line, info, broadcast and chat mode, not proxy",
      ],
    ],
  );
});

Deno.test("/info answers JSON: who answered, the client as a trusted proxy names it in X-Forwarded-For, the request", async () => {
  const { server, http } = await serveBoth({
    trustedProxies: ["127.0.0.1", "10.0.0.0/8"],
    id: "backend-a",
  });
  await using _server = server;
  const info = async (forwardedFor?: string) => {
    const response = await fetch(`${http}/info?x=1`, {
      headers: forwardedFor === undefined
        ? { "x-test": "yes" }
        : { "x-test": "yes", "x-forwarded-for": forwardedFor },
    });
    assert.equal(response.status, 200);
    return await response.json();
  };
  const plain = await info();
  assert.equal(plain.hostname, Deno.hostname());
  assert.equal(plain.id, "backend-a");
  assert.equal(plain.mode, "echo");
  assert.equal(plain.client.ip, "127.0.0.1");
  assert.ok(plain.client.port > 0);
  assert.deepEqual(plain.server, {
    ip: "127.0.0.1",
    port: server.websocketAddr!.port,
  });
  assert.equal(plain.transport, "websocket");
  assert.equal(plain.request.method, "GET");
  assert.equal(plain.request.path, "/info");
  assert.equal(plain.request.headers["x-test"], "yes");
  assert.ok(!Number.isNaN(Date.parse(plain.time)));
  // The rightmost address no trusted proxy vouches for is the client.
  const forwarded = await info("198.51.100.7, 203.0.113.9, 10.1.2.3");
  assert.deepEqual(forwarded.client, { ip: "203.0.113.9", port: 0 });
  // From a peer that is not trusted, the header is not believed.
  const { server: untrusting, http: other } = await serveBoth();
  await using _untrusting = untrusting;
  const response = await fetch(`${other}/info`, {
    headers: { "x-forwarded-for": "203.0.113.9" },
  });
  assert.equal((await response.json()).client.ip, "127.0.0.1");
});

Deno.test("a WebSocket client named by a trusted X-Forwarded-For is that client to info mode and the access rules", async () => {
  const { server } = await serveBoth({
    mode: "info",
    trustedProxies: ["127.0.0.1"],
    deny: ["192.0.2.0/24"],
  });
  await using _server = server;
  const port = server.websocketAddr!.port;
  using ws = await RawWebSocket.open(port, "/ws", {
    "X-Forwarded-For": "203.0.113.9",
  });
  assert.match(ws.response, /^HTTP\/1\.1 101 /);
  await ws.send(frame(1, "clientip"));
  const answer = await ws.next();
  assert.equal(new TextDecoder().decode(answer!.payload), "203.0.113.9");
  using denied = await RawWebSocket.open(port, "/ws", {
    "X-Forwarded-For": "192.0.2.1",
  });
  assert.notEqual(await denied.closeFrame(), undefined);
  assert.equal(server.stats.refused.denied, 1);
});

Deno.test("a frame that breaks the protocol is closed with 1002 (1007 for text that is not UTF-8), logged and counted as an error; the server goes on", async () => {
  const logs = await captureLogs();
  const { server, url } = await serveBoth();
  await using _server = server;
  const port = server.websocketAddr!.port;
  const rsv = frame(1, "an extension's bit, none agreed");
  rsv[0] |= 0x40;
  const fragmentedPing = frame(9, "ping");
  fragmentedPing[0] &= 0x7f;
  const continuation = frame(1, "first part");
  continuation[0] &= 0x7f;
  const broken: [Uint8Array, number, string][] = [
    [frame(3, "a reserved opcode"), 1002, "reserved opcode 3"],
    [rsv, 1002, "reserved bits set, and no extension was agreed"],
    [
      frame(1, "unmasked", false),
      1002,
      "an unmasked frame: a client must mask what it sends",
    ],
    [fragmentedPing, 1002, "a fragmented control frame"],
    [
      concat([continuation, frame(1, "a new message")]),
      1002,
      "a new message before the last one's final fragment",
    ],
    [
      frame(0, "nothing to continue"),
      1002,
      "a continuation frame with no message to continue",
    ],
    [
      frame(8, Uint8Array.of(0x03, 0xed)),
      1002,
      "close code 1005 is not one a peer may send",
    ],
    [
      frame(1, Uint8Array.of(0xff, 0xfe)),
      1007,
      "a text message that is not UTF-8",
    ],
  ];
  for (const [bad, code, reason] of broken) {
    using ws = await RawWebSocket.open(port);
    await ws.send(bad);
    assert.deepEqual(await ws.closeFrame(), { code, reason });
    await logs.closed(localPeer(ws.conn));
  }
  assert.equal(server.stats.closed.error, broken.length);
  const records = logs.records.filter((r) =>
    r.rawMessage.toString().startsWith("Closed {peer}")
  );
  assert.deepEqual(
    records.map((r) => r.properties.reason),
    broken.map(() => "protocol error"),
  );
  await using ws = await WsClient.open(url);
  ws.send("fine");
  assert.deepEqual(await ws.received(1), ["fine"]);
});

Deno.test("a frame whose header says it is over the limit is closed with 1009 before its payload comes", async () => {
  const { server } = await serveBoth({ websocket: { maxMessageBytes: 1000 } });
  await using _server = server;
  using ws = await RawWebSocket.open(server.websocketAddr!.port);
  // A header claiming 2^40 bytes, and no payload: answered at once.
  const header = Uint8Array.of(0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4);
  await ws.send(header);
  assert.deepEqual(await ws.closeFrame(), {
    code: 1009,
    reason: "message too big: 1099511627776 bytes, the limit is 1000",
  });
  // Fragments add up: 600 + 600 bytes is over 1000.
  using fragmented = await RawWebSocket.open(server.websocketAddr!.port);
  const part = frame(2, new Uint8Array(600));
  part[0] &= 0x7f;
  await fragmented.send(concat([part, frame(0, new Uint8Array(600))]));
  assert.deepEqual(await fragmented.closeFrame(), {
    code: 1009,
    reason: "message too big: 1200 bytes, the limit is 1000",
  });
});

Deno.test("a WebSocket client that sends on but does not read is held back by TCP in echo mode (nothing piles up), and dropped in broadcast mode as a TCP one; the others go on", async () => {
  const logs = await captureLogs();
  {
    const { server, url } = await serveBoth({
      websocket: { maxMessageBytes: 16384 },
    });
    await using _server = server;
    using greedy = await RawWebSocket.open(server.websocketAddr!.port);
    const chunk = frame(2, new Uint8Array(16384));
    // Bounded: 64 MiB at most. The server reads only as it can echo, so
    // once the kernel's buffers are full a send stops completing.
    let sent = 0;
    for (; sent < 4096; sent++) {
      const { promise, resolve } = Promise.withResolvers<boolean>();
      const timer = setTimeout(() => resolve(false), 1000);
      greedy.send(chunk).then(() => resolve(true), () => resolve(false));
      const done = await promise;
      clearTimeout(timer);
      if (!done) break;
    }
    assert.ok(sent < 4096, "the sends went on: nothing held them back");
    assert.ok(server.stats.bytesIn < 32 * 1024 * 1024);
    await using ws = await WsClient.open(url);
    ws.send("fine");
    assert.deepEqual(await ws.received(1), ["fine"]);
    greedy.conn.close();
  }
  {
    const { server, url } = await serveBoth({
      mode: "broadcast",
      channelBytes: 65536,
    });
    await using _server = server;
    using idle = await RawWebSocket.open(server.websocketAddr!.port);
    const peer = localPeer(idle.conn);
    await using talker = await WsClient.open(url);
    // Bounded: 4,096 lines of 1 KiB, far past the idle one's 64 KiB queue
    // and the kernel's buffers.
    const line = "x".repeat(1024);
    for (let i = 0; i < 4096 && server.stats.closed.sendQueueFull === 0; i++) {
      talker.send(line);
      if (i % 64 === 63) await talker.line(/^x/);
    }
    const closed = await logs.closed(peer);
    assert.equal(closed.properties.reason, "send queue full");
    assert.equal(server.stats.closed.sendQueueFull, 1);
    await using ws = await WsClient.open(url);
    ws.send("fine");
    await ws.line(/^fine$/);
  }
});

Deno.test("drainDelay: /readyz turns 503 at once (on --metrics too) while the server still accepts, then it drains; a stop cuts the delay short", async () => {
  const { server, url, http } = await serveBoth({ drainDelay: 300 });
  await using metrics = serveMetrics(server, { port: 0 });
  const get = async (base: string, path: string) => {
    const response = await fetch(`${base}${path}`);
    return `${response.status} ${(await response.text()).trim()}`;
  };
  const metricsUrl = `http://127.0.0.1:${metrics.addr.port}`;
  assert.equal(await get(metricsUrl, "/readyz"), "200 ready");
  assert.equal(await get(metricsUrl, "/healthz"), "200 ok");
  assert.equal(server.draining, false);
  const started = performance.now();
  const stopping = server.shutdown();
  assert.equal(server.draining, true);
  assert.equal(await get(http, "/readyz"), "503 draining");
  assert.equal(await get(metricsUrl, "/readyz"), "503 draining");
  // Still accepting, on both listeners.
  await using late = await WsClient.open(url);
  late.send("accepted late");
  assert.deepEqual(await late.received(1), ["accepted late"]);
  await using tcp = await LineClient.connect(server.addr.port);
  await tcp.send("tcp too");
  await tcp.until((_) => tcp.bytes.length === 7);
  late.close();
  await late.closed;
  await tcp.conn.closeWrite();
  await stopping;
  assert.ok(performance.now() - started >= 300);
  // A stop during a long delay ends it at once.
  const controller = new AbortController();
  const stopped = serveEcho({
    port: 0,
    drainDelay: 3_600_000,
    signal: controller.signal,
  });
  await stopped.ready;
  const waiting = stopped.shutdown();
  controller.abort();
  await waiting;
});

Deno.test("the client speaks WebSocket: echoOnce of text and binary, wss:// with caCerts, and a load test that checks every byte", async () => {
  const { server, url } = await serveBoth();
  await using _server = server;
  assert.equal(
    await echoOnce("hi over WebSocket ✓", { websocket: url }),
    "hi over WebSocket ✓",
  );
  const every = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(
    await echoOnce(every, { websocket: url, websocketBinary: true }),
    every,
  );
  await assert.rejects(
    echoOnce(every, { websocket: url }),
    /Cannot send this as a text message: it is not UTF-8/,
  );
  for (const websocketBinary of [false, true]) {
    const report = await loadTest({
      websocket: url,
      websocketBinary,
      connections: 4,
      count: 2000,
      message: 300,
    });
    assert.equal(report.roundTrips, 2000);
    assert.equal(report.mismatches + report.otherErrors, 0);
    assert.equal(report.messageBytes, 300);
  }
  assert.equal(server.stats.bytesIn, server.stats.bytesOut);
  // TLS: the same certificate as TCP's, and the client trusts its CA.
  const certs = await createCertificates({ names: ["localhost"] });
  await using tls = serveEcho({
    port: 0,
    cert: certs.cert,
    key: certs.key,
    websocket: { port: 0 },
  });
  await tls.ready;
  const wss = `wss://localhost:${tls.websocketAddr!.port}/ws`;
  assert.equal(
    await echoOnce("over wss", { websocket: wss, caCerts: [certs.caCert] }),
    "over wss",
  );
  await assert.rejects(
    echoOnce("untrusted", { websocket: wss }),
    Deno.errors.ConnectionRefused,
  );
  await assert.rejects(
    echoOnce("x", { websocket: "http://127.0.0.1/ws" }),
    /Cannot use websocket: must be a ws:\/\/ or wss:\/\/ URL, got http:\/\/127\.0\.0\.1\/ws/,
  );
});

Deno.test("client --ws: one message, a load test, a session in chat mode with a line per message; usage errors", async () => {
  const { server, url } = await serveBoth({ mode: "chat" });
  await using _server = server;
  const { server: echo, url: echoUrl } = await serveBoth();
  await using _echo = echo;
  const once = await runClient(["--ws", echoUrl, "hello", "there"]);
  assert.equal(once.code, 0, once.stderr);
  assert.equal(new TextDecoder().decode(once.stdout), "hello there\n");
  const load = await runClient([
    "--ws",
    echoUrl,
    "--ws-binary",
    "--connections",
    "2",
    "--count",
    "500",
  ]);
  assert.equal(load.code, 0, load.stderr);
  assert.match(new TextDecoder().decode(load.stdout), /round trips +500 in /);
  // A chat session: each message the server sends is a line.
  await using bob = await LineClient.connect(server.addr.port);
  await bob.line(/^\* welcome, you are user1;/);
  const session = runClient(
    ["--ws", url, "--interactive"],
    new TextEncoder().encode("/nick alice\nhi bob\n"),
  );
  await bob.line(/^<alice> hi bob$/);
  await bob.send("hi alice\n");
  const { code, stdout, stderr } = await session;
  assert.equal(code, 0, stderr);
  const lines = new TextDecoder().decode(stdout).split("\n");
  assert.ok(lines.includes("* user2 is now alice"), lines.join("\n"));
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", CLIENT],
    [
      [["--ws", url, "--udp", "x"], "Give --ws or --udp, not both"],
      [["--ca", CLIENT, "x"], "Give --tls or --ws with --ca"],
      [["--ws-binary", "x"], "Give --ws with --ws-binary"],
      [
        ["--ws", "ftp://127.0.0.1/ws", "x"],
        "Invalid --ws: must be a ws:// or wss:// URL, got ftp://127.0.0.1/ws",
      ],
    ],
  );
});

Deno.test("a ping gets its pong; 1,000 upgrades at once past maxConnections: the rest closed with 1013 and counted, everyone admitted served", async () => {
  const { server } = await serveBoth({ maxConnections: 500 });
  await using _server = server;
  const port = server.websocketAddr!.port;
  {
    using ws = await RawWebSocket.open(port);
    await ws.send(frame(9, "are you there"));
    const pong = await ws.next();
    assert.equal(pong?.opcode, 10);
    assert.equal(new TextDecoder().decode(pong!.payload), "are you there");
  }
  const sockets = await Promise.all(
    Array.from({ length: 1000 }, () => RawWebSocket.open(port)),
  );
  try {
    assert.ok(sockets.every((ws) => /^HTTP\/1\.1 101 /.test(ws.response)));
    // Each admitted one echoes its message; each other one is told why.
    const outcomes = await Promise.all(sockets.map(async (ws, i) => {
      await ws.send(frame(1, `client ${i}`)).catch(() => {});
      const first = await ws.next().catch(() => null);
      if (first?.opcode === 1) {
        assert.equal(new TextDecoder().decode(first.payload), `client ${i}`);
        return "served";
      }
      assert.equal(first?.opcode, 8);
      const view = new DataView(first!.payload.buffer);
      assert.equal(view.getUint16(0), 1013);
      return "full";
    }));
    const served = outcomes.filter((o) => o === "served").length;
    assert.equal(served + outcomes.filter((o) => o === "full").length, 1000);
    // The first one (the ping's) may still be counted open: 499 or 500.
    assert.ok(served >= 499 && served <= 500, `${served} served`);
    assert.equal(server.stats.rejected, 1000 - served);
  } finally {
    for (const ws of sockets) ws[Symbol.dispose]();
  }
});

Deno.test("the rules, limits and faults of TCP clients hold for WebSocket ones: a limit per address (1008), a limit fault", async () => {
  const logs = await captureLogs();
  const { server, url } = await serveBoth({
    mode: "line",
    maxConnectionsPerIp: 1,
    faults: [{ kind: "limit", bytes: 4, direction: "send", name: "short" }],
  });
  await using _server = server;
  await using first = await WsClient.open(url);
  await using second = await WsClient.open(url);
  const refused = await second.closed;
  assert.equal(refused.code, 1008);
  assert.equal(refused.reason, "refused: perAddress");
  assert.equal(server.stats.refused.perAddress, 1);
  // The fault lets 4 bytes of "abcdefgh\n" out: no whole line, so no
  // message, and then the end.
  first.send("abcdefgh");
  await first.closed;
  assert.deepEqual(first.messages, []);
  await logs.waitFor((r) => r.properties.reason === "ended by a fault");
  assert.equal(server.stats.closed.fault, 1);
});

Deno.test("chat across instances through Redis: a browser on one, a TCP client on the other", async () => {
  await using redis = await startRedis();
  await using a = serveEcho({
    port: 0,
    mode: "chat",
    redis: redis.url,
    websocket: { port: 0, only: true },
  });
  await using b = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await Promise.all([a.ready, b.ready]);
  await using browser = await WsClient.open(
    `ws://127.0.0.1:${a.websocketAddr!.port}/ws`,
  );
  await browser.line(/^\* welcome, you are /);
  browser.send("/nick alice");
  await browser.line(/is now alice$/);
  await using bob = await LineClient.connect(b.addr.port);
  await bob.line(/^\* welcome, you are /);
  browser.send("across the cluster");
  await bob.line(/^<alice> across the cluster$/);
  await bob.send("/nick bob\nback at you\n");
  await browser.line(/^<bob> back at you$/);
});

Deno.test("with workers, every worker serves WebSocket clients on the one port, in one chat room, and /readyz turns 503 on each", async () => {
  const stop = new AbortController();
  const server = serveEcho({
    port: 0,
    mode: "chat",
    workers: 2,
    drainDelay: 60_000,
    signal: stop.signal,
    websocket: { port: 0 },
  });
  await server.ready;
  const port = server.websocketAddr!.port;
  const url = `ws://127.0.0.1:${port}/ws`;
  const clients: WsClient[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const ws = await WsClient.open(url);
      clients.push(ws);
      await ws.line(/^\* welcome, you are /);
    }
    // The kernel spread them (each client's port hashes to a worker).
    assert.equal(server.stats.perWorker.length, 2);
    assert.ok(
      server.stats.perWorker.every((n) => n > 0),
      `${server.stats.perWorker}`,
    );
    clients[0].send("to everyone, on every worker");
    for (const ws of clients.slice(1)) {
      await ws.line(/> to everyone, on every worker$/);
    }
    const stopping = server.shutdown();
    // Each worker's listener says so (new connections spread over both).
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, {
        headers: { connection: "close" },
      });
      assert.equal(response.status, 503);
      await response.body?.cancel();
    }
    // No need to wait out the delay: a stop ends it.
    stop.abort();
    await stopping;
  } finally {
    stop.abort();
    await Promise.all(clients.map((ws) => ws[Symbol.asyncDispose]()));
    await server.finished;
  }
});

Deno.test("server --tls-cert --websocket serves wss://, and client --ws wss://… --ca trusts its authority", async () => {
  await using certs = await testCertificates();
  await using server = new Spawned(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-sys=hostname",
    SERVER,
    ...["--port", "0", "--websocket", "127.0.0.1:0"],
    ...["--tls-cert", certs.certFile, "--tls-key", certs.keyFile],
  ]);
  const line = await server.stdout.waitFor(/^WebSocket on /);
  const url = line.match(/^WebSocket on (wss:\/\/127\.0\.0\.1:\d+\/ws)$/)![1];
  const trusted = await run(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", "--allow-read", CLIENT],
    ...["--ws", url.replace("127.0.0.1", "localhost")],
    ...["--ca", certs.caFile, "over wss"],
  ]);
  assert.equal(trusted.code, 0, trusted.stderr);
  assert.equal(new TextDecoder().decode(trusted.stdout), "over wss\n");
  const untrusted = await runClient(["--ws", url, "over wss"]);
  assert.equal(untrusted.code, 1);
  // One line of ours (Deno adds a hint of its own about certificates).
  assert.match(
    untrusted.stderr,
    /^error: Echo via (wss:\/\/127\.0\.0\.1:\d+\/ws) failed: Cannot open \1: .*invalid peer certificate: UnknownIssuer \(the server's certificate is not signed by an authority this client trusts: name that authority's certificate with --ca FILE; [^)]*\)$/m,
  );
});

Deno.test("reloadTls() rotates the wss:// listener's certificate for new handshakes; an open WebSocket goes on", async () => {
  await using certs = await testCertificates();
  const server = serveEcho({
    port: 0,
    cert: certs.cert,
    key: certs.key,
    websocket: { port: 0 },
  });
  await using _server = server;
  await server.ready;
  const port = server.websocketAddr!.port;
  const subject = async () => {
    const shown = await run("openssl", [
      ...["s_client", "-connect", `127.0.0.1:${port}`, "-brief"],
      ...["-CAfile", certs.caFile],
    ], new TextEncoder().encode("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    return shown.stderr.match(/Peer certificate: (.*)/)?.[1] ?? shown.stderr;
  };
  assert.equal(await subject(), "CN = localhost");
  const client = Deno.createHttpClient({ caCerts: [certs.ca] });
  try {
    const socket = new WebSocket(`wss://localhost:${port}/ws`, { client });
    const opened = Promise.withResolvers<void>();
    const messages: string[] = [];
    const next = () =>
      new Promise<string>((resolve) =>
        socket.onmessage = (e) => resolve(e.data)
      );
    socket.onopen = () => opened.resolve();
    socket.onerror = () => opened.reject(new Error("cannot open"));
    await opened.promise;
    const closed = new Promise((resolve) => socket.onclose = resolve);
    socket.send("before");
    messages.push(await next());
    await server.reloadTls({ cert: certs.other.cert, key: certs.other.key });
    assert.equal(await subject(), "CN = other.example");
    socket.send("after");
    messages.push(await next());
    assert.deepEqual(messages, ["before", "after"]);
    socket.close();
    await closed;
  } finally {
    client.close();
  }
});

Deno.test("clients that dribble their headers (slowloris) do not keep anyone else from being served, and get a 408 past the header timeout, counted", async () => {
  const logs = await captureLogs();
  const { server, url, http } = await serveBoth({
    websocket: { headerTimeout: 2000 },
  });
  await using _server = server;
  const port = server.websocketAddr!.port;
  const dribbling = await Promise.all(
    Array.from({ length: 200 }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(
        new TextEncoder().encode("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: web"),
      );
      return conn;
    }),
  );
  try {
    await using ws = await WsClient.open(url);
    ws.send("still served");
    assert.deepEqual(await ws.received(1), ["still served"]);
    const health = await fetch(`${http}/healthz`);
    assert.equal(await health.text(), "ok\n");
    // Past the timeout, each is answered 408 and closed.
    const answer = new TextDecoder().decode(await readAll(dribbling[0]));
    assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(answer, /\r\n\r\nrequest head not complete in 2000 ms\n$/);
    await Promise.all(dribbling.slice(1).map((conn) => readAll(conn)));
  } finally {
    for (const conn of dribbling) conn.close();
  }
  assert.equal(server.stats.websocketBadUpgrades, 200);
  assert.equal(
    logs.records.filter((r) =>
      r.properties.reason === "request head not complete in 2000 ms"
    ).length,
    200,
  );
});

Deno.test("bad HTTP is answered with its status and closed, counted: a garbled request line, a header too long, a POST, an old version, a bad key or version; a page and /info are kept alive", async () => {
  const { server } = await serveBoth();
  await using _server = server;
  const port = server.websocketAddr!.port;
  const exchange = async (request: string) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, new TextEncoder().encode(request));
    const answer = new TextDecoder().decode(await readAll(conn));
    conn.close();
    return answer.split("\r\n")[0] + " | " +
      answer.slice(answer.indexOf("\r\n\r\n") + 4).trim();
  };
  const upgrade = (more: string) =>
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
    `Connection: Upgrade\r\n${more}\r\n`;
  const cases: [string, string][] = [
    ["HELLO\r\n\r\n", "HTTP/1.1 400 Bad Request | not an HTTP request line"],
    [
      `GET / HTTP/1.1\r\nX-Long: ${"a".repeat(20000)}\r\n\r\n`,
      "HTTP/1.1 431 Request Header Fields Too Large | a request head over 16384 bytes",
    ],
    [
      "POST /ws HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
      "HTTP/1.1 405 Method Not Allowed | POST is not served: GET is",
    ],
    [
      "GET / HTTP/2.0\r\n\r\n",
      "HTTP/1.1 505 HTTP Version Not Supported | HTTP/2.0 is not served: HTTP/1.1 is",
    ],
    [
      upgrade(
        "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
      ),
      "HTTP/1.1 426 Upgrade Required | Bad WebSocket upgrade: Sec-WebSocket-Version 8 is not served: 13 is",
    ],
    [
      upgrade("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"),
      "HTTP/1.1 400 Bad Request | Bad WebSocket upgrade: Sec-WebSocket-Key is not 16 bytes in base64",
    ],
  ];
  for (const [request, expected] of cases) {
    assert.equal(await exchange(request), expected);
  }
  // All but the POST, which is no bad input: a method not served.
  assert.equal(server.stats.websocketBadUpgrades, cases.length - 1);
  // A browser's way: several requests on one connection, then a close.
  const kept = await exchange(
    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
      "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  assert.match(kept, /^HTTP\/1\.1 200 OK \| ok\nHTTP\/1\.1 200 OK\r\n/);
  assert.match(kept, /content-type: text\/html/);
  assert.match(kept, /\r\n\r\nready$/);
  // The HEAD's page came without its body: the next answer follows.
  assert.doesNotMatch(kept, /<html/i);
});

Deno.test("a down fault that refuses answers upgrades (and /readyz) 503 on the WebSocket listener until it is lifted", async () => {
  const { server, url, http } = await serveBoth({ liveFaults: true });
  await using _server = server;
  await server.setFaults([{ kind: "down", how: "refuse" }]);
  const readyz = async () => {
    const response = await fetch(`${http}/readyz`);
    return `${response.status} ${(await response.text()).trim()}`;
  };
  assert.equal(await readyz(), "503 not accepting");
  await assert.rejects(WsClient.open(url));
  await server.setFaults([]);
  assert.equal(await readyz(), "200 ready");
  await using ws = await WsClient.open(url);
  ws.send("back");
  assert.deepEqual(await ws.received(1), ["back"]);
});

Deno.test("the framings, free of I/O: echo cuts the bytes written back where the messages were, typed as they came; the line modes make a line of a message and a message of a line", () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  const text = (t: string) => ({ text: true, bytes: encode(t) });
  const echo = echoFraming();
  assert.deepEqual(echo.received(encode("héllo"), true), encode("héllo"));
  assert.deepEqual(
    echo.received(Uint8Array.of(0, 255), false),
    Uint8Array.of(0, 255),
  );
  assert.deepEqual(echo.received(new Uint8Array(0), true), new Uint8Array(0));
  // Written back in pieces that straddle the messages' bounds.
  const back = encode("héllo");
  assert.deepEqual(echo.sent(back.subarray(0, 3)), []);
  assert.deepEqual(
    echo.sent(Uint8Array.of(...back.subarray(3), 0)),
    [text("héllo")],
  );
  assert.deepEqual(echo.sent(Uint8Array.of(255)), [
    { text: false, bytes: Uint8Array.of(0, 255) },
    text(""),
  ]);
  const lines = lineFraming();
  assert.deepEqual(lines.received(encode("one"), true), encode("one\n"));
  assert.deepEqual(lines.received(encode("two\n"), true), encode("two\n"));
  assert.deepEqual(lines.received(new Uint8Array(0), true), encode("\n"));
  assert.deepEqual(lines.sent(encode("a\nb")), [text("a")]);
  assert.deepEqual(lines.sent(encode("c\n\nd\n")), [
    text("bc"),
    text(""),
    text("d"),
  ]);
  // A line that is not UTF-8 (from a TCP client) goes out as text that is.
  assert.deepEqual(lines.sent(Uint8Array.of(0x61, 0xff, 0x0a)), [
    text("a\ufffd"),
  ]);
});

Deno.test("clients that reset while queued on the WebSocket listener are counted as accept errors, as the stream listener's are, and the next upgrade is served", async () => {
  const { server, url } = await serveBoth();
  await using _server = server;
  const resets = 20;
  resetClients(server.websocketAddr!.port, resets);
  await using ws = await WsClient.open(url);
  ws.send("still here");
  assert.deepEqual(await ws.received(1), ["still here"]);
  // Deno's accept() fails on a reset socket (it asks for its peer).
  assert.equal(server.stats.acceptErrors, resets);
});

Deno.test("the client's WebSocket half-closes: a message that makes two lines gets both back, and a path the server does not serve is one line", async () => {
  const { server, url } = await serveBoth({ mode: "line" });
  await using _server = server;
  // One message, two lines: two messages back (a line a message, without
  // its end of line), both read before the end.
  const reply = await echoOnce("one\ntwo\n", { websocket: url, raw: true });
  assert.equal(reply, "onetwo");
  await assert.rejects(
    echoOnce("x", { websocket: url.replace(/\/ws$/, "/nope") }),
    (error: Error) =>
      error instanceof Deno.errors.ConnectionRefused &&
      /^Cannot open ws:\/\/127\.0\.0\.1:\d+\/nope: the server answered 404 Not Found, not 101 Switching Protocols$/
        .test(error.message),
  );
});

Deno.test("the client's WebSocket against a hand-written server: the first frames in the 101's packet, a ping's pong, masked messages, the close handshake; a masked frame from a server breaks the protocol", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = new URL(`ws://127.0.0.1:${listener.addr.port}/ws`);
  const serverFrames = (frames: { opcode: number; payload: Uint8Array }[]) =>
    encodeFrames(frames);
  /** Accepts one client, answers its upgrade with `first` after the 101. */
  const accept = async (first: Uint8Array) => {
    const conn = await listener.accept();
    const head = new HeadReader();
    const buffer = new Uint8Array(4096);
    let step;
    do {
      const n = await conn.read(buffer);
      step = head.push(buffer.subarray(0, n!));
    } while (step.state === "more");
    assert.equal(step.state, "done");
    const upgrade = acceptUpgrade(step.request);
    assert.ok(!("status" in upgrade));
    await writeAll(
      conn,
      concat([encodeResponse(101, upgrade.headers, new Uint8Array(0)), first]),
    );
    const frames = new FrameReader(1 << 20);
    const next = async () => {
      for (;;) {
        const event = frames.next();
        if (event !== undefined) return event;
        const n = await conn.read(buffer);
        if (n === null) return null;
        frames.push(buffer.subarray(0, n));
      }
    };
    return { conn, next };
  };
  const encoder = new TextEncoder();

  const [client, server] = await Promise.all([
    openWebSocket(url, false, undefined),
    accept(serverFrames([
      { opcode: OP_PING, payload: encoder.encode("p1") },
      { opcode: OP_TEXT, payload: encoder.encode("hello") },
    ])),
  ]);
  const buffer = new Uint8Array(100);
  const n = await client.read(buffer);
  assert.equal(new TextDecoder().decode(buffer.subarray(0, n!)), "hello");
  // The pong, then a message, masked (the server's reader insists).
  assert.deepEqual(await server.next(), {
    kind: "pong",
  });
  await client.write(encoder.encode("abc"));
  assert.deepEqual(await server.next(), {
    kind: "message",
    text: true,
    bytes: encoder.encode("abc"),
  });
  // The half-close: the server still sends, then closes.
  await client.closeWrite();
  assert.deepEqual(await server.next(), {
    kind: "close",
    code: 1000,
    reason: "",
  });
  await assert.rejects(
    client.write(encoder.encode("no")),
    Deno.errors.BrokenPipe,
  );
  await writeAll(
    server.conn,
    serverFrames([
      { opcode: OP_TEXT, payload: encoder.encode("late") },
      { opcode: OP_CLOSE, payload: closePayload(1000) },
    ]),
  );
  const late = await client.read(buffer);
  assert.equal(new TextDecoder().decode(buffer.subarray(0, late!)), "late");
  assert.equal(await client.read(buffer), null);
  // The client closes its socket after the server's close.
  assert.equal(await server.next(), null);
  server.conn.close();
  client.close();

  // A server that masks what it sends.
  const masked = encodeFrames([{
    opcode: OP_TEXT,
    payload: encoder.encode("x"),
  }], true);
  const [bad, badServer] = await Promise.all([
    openWebSocket(url, true, undefined),
    accept(masked),
  ]);
  await assert.rejects(
    bad.read(buffer),
    (error: Error) =>
      error instanceof Deno.errors.InvalidData &&
      error.message ===
        "The server broke the WebSocket protocol: a masked frame: a server must not mask what it sends",
  );
  assert.deepEqual(await badServer.next(), {
    kind: "close",
    code: 1002,
    reason: "a masked frame: a server must not mask what it sends",
  });
  assert.equal(await badServer.next(), null);
  badServer.conn.close();
  bad.close();
});

Deno.test("the client's WebSocket gives up on a server that says nothing at its timeout, over ws:// and wss://", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  for (const scheme of ["ws", "wss"]) {
    await assert.rejects(
      echoOnce("x", {
        websocket: `${scheme}://127.0.0.1:${listener.addr.port}/ws`,
        timeout: 300,
      }),
      (error: Error) => error.name === "TimeoutError",
    );
  }
  listener.close();
  await accepting.catch(() => {});
  for (const conn of held) conn.close();
});

Deno.test("the client's WebSocket against Node's ws (a server that is not ours): messages of every size exact, its half-close answered, and a session line by line", async () => {
  await using node = new Spawned("node", [
    "bench/node_ws_echo.mjs",
    "0",
    await wsPackageDir(),
  ]);
  const [, url] = (await node.stdout.waitFor(/^Listening on (ws:\/\/\S+)$/))
    .match(/^Listening on (\S+)$/)!;
  // Each text and binary message back as it went, whatever its size; the
  // close after them answered by ws's own close.
  assert.equal(await echoOnce("hi node", { websocket: url }), "hi node");
  const every = Uint8Array.from({ length: 200_000 }, (_, i) => i % 256);
  assert.deepEqual(
    await echoOnce(every, { websocket: url, websocketBinary: true }),
    every,
  );
  const report = await loadTest({
    websocket: url,
    connections: 4,
    count: 400,
    message: 70_000,
  });
  assert.deepEqual(report.errorMessages, []);
  assert.equal(report.roundTrips, 400);
  const session = await runClient(
    ["--ws", url, "-i"],
    new TextEncoder().encode("one\ntwo\n"),
  );
  assert.equal(session.code, 0, session.stderr);
  assert.equal(new TextDecoder().decode(session.stdout), "one\ntwo\n");
});
