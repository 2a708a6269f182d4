// WebSocket beside TCP (serveEcho's `websocket`, --websocket): every mode
// over /ws, echo byte-exact with text as text and binary as binary, close
// codes echoed, messages over the limit closed with 1009, browsers and TCP
// clients in one chat room, the health endpoints and a drain, bad upgrades
// answered and counted, and the command line's flags.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { LineClient } from "./_helpers.ts";
import { assertUsageErrors, LOCK, SERVER, Spawned } from "./_process.ts";

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
    "404 Not found: try /ws, /healthz or /readyz",
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
    [Deno.execPath(), "run", LOCK, "--allow-net", SERVER],
    [
      [
        ["--websocket-only"],
        "Give --websocket with --websocket-only",
      ],
      [
        ["--websocket", "127.0.0.1:0", "--workers", "2"],
        "Invalid --websocket: a WebSocket listener is served on one thread: not with workers",
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
