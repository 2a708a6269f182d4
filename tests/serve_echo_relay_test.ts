// serveEcho({ mode: "broadcast" | "chat" }): delivery order under load, the
// line limit, slow consumers, chat names and rooms, announce() and shutdown.

import assert from "node:assert/strict";
import { type Engine, ENGINES, engineTest } from "./_engines.ts";

/** Where a relay test runs: the engine, and how many workers. */
interface Setup {
  engine: Engine;
  workers: number;
}
import net from "node:net";
import { once } from "node:events";
import { type EchoServer, serveEcho } from "../mod.ts";
import { captureLogs, LineClient, localPeer } from "./_helpers.ts";

const logs = await captureLogs();

const NAME_RULE =
  "1 to 32 letters, digits or symbols, starting with a letter or digit; no spaces, no < > [ ], valid UTF-8";

/**
 * Resolves once the server has logged `count` opened connections since the
 * last `logs.clear()`.
 */
function opened(count: number): Promise<unknown> {
  let seen = 0;
  return logs.waitFor((r) =>
    r.rawMessage.toString().startsWith("Opened") && ++seen >= count
  );
}

/** Connects `count` clients at once and waits until the server has them all. */
async function connectAll(
  server: EchoServer,
  count: number,
): Promise<LineClient[]> {
  await server.ready;
  logs.clear();
  const clients = await Promise.all(
    Array.from({ length: count }, () => LineClient.connect(server.addr.port)),
  );
  await opened(count);
  return clients;
}

async function closeAll(clients: LineClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c[Symbol.asyncDispose]()));
}

/**
 * 200 clients each send `perClient` lines in one burst; every client must
 * receive every line exactly once, all in the same order, each sender's lines
 * in the order sent.
 */
async function everyoneHearsEveryone(
  mode: "broadcast" | "chat",
  perClient: number,
  setup: Setup,
): Promise<void> {
  await using server = serveEcho({ port: 0, mode, ...setup });
  const clients = await connectAll(server, 200);
  try {
    await Promise.all(clients.map((c, i) =>
      c.send(
        Array.from({ length: perClient }, (_, j) => `c${i}-${j}\n`).join(""),
      )
    ));
    const total = 200 * perClient;
    const messages = (lines: string[]) =>
      lines.filter((l) => /(^|> )c\d+-\d+$/.test(l));
    await Promise.all(
      clients.map((c) => c.until((lines) => messages(lines).length >= total)),
    );
    const order = messages(clients[0].lines);
    assert.equal(order.length, total);
    assert.equal(new Set(order).size, total, "a line arrived twice");
    for (const c of clients) assert.deepEqual(messages(c.lines), order);
    const bySender = new Map<string, number[]>();
    for (const line of order) {
      const [, sender, seq] = line.match(/c(\d+)-(\d+)$/)!;
      bySender.set(sender, [...bySender.get(sender) ?? [], Number(seq)]);
    }
    for (const seqs of bySender.values()) {
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    }
    assert.equal(server.stats.dropped, 0, "a healthy client was dropped");
    const { perWorker } = server.stats;
    assert.equal(perWorker.length, setup.workers);
    assert.ok(perWorker.every((n) => n > 0), `spread: ${perWorker}`);
  } finally {
    await closeAll(clients);
  }
}

/**
 * Every test in this loop runs on each engine, without workers, then
 * across two.
 */
for (const engine of ENGINES) {
  for (const workers of [1, 2]) {
    const setup: Setup = { engine, workers };
    const across = `${
      workers === 1 ? "" : ` (across ${workers} workers)`
    } [${engine}]`;

    Deno.test(`broadcast: 200 clients × 10 lines, everyone gets every line once, in one order${across}`, async () => {
      await everyoneHearsEveryone("broadcast", 10, setup);
    });

    Deno.test(`chat: 200 clients × 10 lines, everyone gets every line once, in one order${across}`, async () => {
      await everyoneHearsEveryone("chat", 10, setup);
    });

    Deno.test(`broadcast: a client that never reads is dropped; the others finish on time${across}`, async () => {
      await neverReaderIsDropped(setup);
    });

    Deno.test(`chat: 2,000 clients joining at once all stay and hear every later join${across}`, async () => {
      await joinBurst(2000, setup);
    });

    Deno.test(`chat: 200 joins and leaves in a burst, each announced once${across}`, async () => {
      await joinsAndLeaves(setup);
    });

    Deno.test(`announce() reaches every client in every mode${across}`, async (t) => {
      await announceReachesAll(t, setup);
    });

    Deno.test(`shutdown() in broadcast and chat tells clients, then closes them without waiting${across}`, async (t) => {
      await shutdownTellsClients(t, setup);
    });
  }
}

engineTest(
  "broadcast relays lines unchanged: empty, CRLF, any bytes, split writes",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, mode: "broadcast" });
    const [alice, bob] = await connectAll(server, 2);
    try {
      const input = "\nwith crlf\r\n\xff bytes\n";
      await alice.send(new Uint8Array([...input].map((c) => c.charCodeAt(0))));
      for (const byte of new TextEncoder().encode("split\n")) {
        await alice.send(new Uint8Array([byte]));
      }
      await bob.count(4);
      const expected = new Uint8Array(
        [...input + "split\n"].map((c) => c.charCodeAt(0)),
      );
      assert.deepEqual(bob.bytes, expected);
      await alice.count(4);
      assert.deepEqual(alice.bytes, expected);
    } finally {
      await closeAll([alice, bob]);
    }
  },
);

engineTest(
  "broadcast: a last line without newline gets one; a reset mid-line is dropped",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, mode: "broadcast" });
    const [listener, quitter] = await connectAll(server, 2);
    try {
      await quitter.send("bye, no newline");
      await quitter.conn.closeWrite();
      await listener.count(1);

      const peer = await connectAll(server, 1).then(([c]) => c);
      // A node:net socket, to reset (SO_LINGER 0) after half a line.
      const socket = net.connect(server.addr.port, "127.0.0.1");
      await once(socket, "connect");
      socket.write("half a li");
      await new Promise<void>((resolve) => socket.write("ne", () => resolve()));
      socket.resetAndDestroy();
      await logs.waitFor((r) =>
        r.rawMessage.toString().startsWith("Closed") &&
        r.properties.reason === "reset by peer"
      );
      await peer.send("after\n");
      await listener.count(2);
      assert.deepEqual(listener.lines, ["bye, no newline", "after"]);
      await peer[Symbol.asyncDispose]();
    } finally {
      await closeAll([listener, quitter]);
    }
  },
);

engineTest(
  "broadcast: a line at the limit is relayed; one byte over gets ERR, the others go on",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      mode: "broadcast",
      maxLineBytes: 10,
    });
    const [listener, sender] = await connectAll(server, 2);
    try {
      await sender.send("0123456789\r\n0123456789X\nnever\n");
      assert.equal(
        await sender.line(/^ERR/),
        "ERR line too long (max 10 bytes)",
      );
      await sender.closed;
      await listener.send("still here\n");
      await listener.count(2);
      assert.deepEqual(listener.lines, ["0123456789\r", "still here"]);
    } finally {
      await closeAll([listener, sender]);
    }
  },
);

/**
 * `count` chat clients connect at once (in waves that fit the listen queue)
 * and read all the time: none may be dropped, and each must hear its own
 * join and every later one. The server is busy with about count²/2 notice
 * deliveries; that must not be mistaken for slow clients.
 */
async function joinBurst(count: number, setup: Setup): Promise<void> {
  await using server = serveEcho({ port: 0, mode: "chat", ...setup });
  await server.ready;
  const NOTICE = new TextEncoder().encode(" joined lobby\n");
  const joins: number[] = [];
  const conns: Deno.TcpConn[] = [];
  const reading: Promise<void>[] = [];
  let joined = 0;
  let allJoined!: () => void;
  const done = new Promise<void>((resolve) => allJoined = resolve);
  const expected = count * (count + 1) / 2;
  /** Reads until the server closes, counting join notices. */
  async function read(conn: Deno.TcpConn, i: number): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    let tail = new Uint8Array(0);
    try {
      for (let n; (n = await conn.read(buffer)) !== null;) {
        const text = new Uint8Array(tail.length + n);
        text.set(tail);
        text.set(buffer.subarray(0, n), tail.length);
        let at = 0;
        for (let end; (end = text.indexOf(10, at)) !== -1; at = end + 1) {
          const ending = text.subarray(end + 1 - NOTICE.length, end + 1);
          if (ending.every((b, k) => b === NOTICE[k])) {
            joins[i]++;
            if (++joined === expected) allJoined();
          }
        }
        tail = text.slice(at);
      }
    } catch {
      // Reset: counted as not having heard everything.
    }
  }
  try {
    for (let i = 0; i < count; i += 500) {
      const wave = await Promise.all(
        Array.from(
          { length: Math.min(500, count - i) },
          () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
        ),
      );
      for (const conn of wave) {
        joins.push(0);
        reading.push(read(conn, conns.length));
        conns.push(conn);
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      done,
      new Promise((resolve) => timer = setTimeout(resolve, 60_000)),
    ]);
    clearTimeout(timer);
    assert.equal(
      server.stats.dropped,
      0,
      `a reading client was dropped: ${
        JSON.stringify(
          logs.records.filter((r) => r.level === "warning").slice(0, 3).map((
            r,
          ) => r.properties),
        )
      }`,
    );
    assert.equal(joined, expected, "join notices missing");
    // Every client heard a different number of joins: its own and later.
    assert.deepEqual(
      [...joins].sort((a, b) => a - b),
      Array.from({ length: count }, (_, i) => i + 1),
    );
  } finally {
    for (const conn of conns) conn.close();
    await Promise.all(reading);
  }
}

async function neverReaderIsDropped(setup: Setup): Promise<void> {
  await using server = serveEcho({ port: 0, mode: "broadcast", ...setup });
  const [alice, bob] = await connectAll(server, 2);
  logs.clear();
  // Never reads: the kernel's buffers fill, then its send queue.
  using sleeper = await Deno.connect({ port: server.addr.port });
  await opened(1);
  try {
    const line = "x".repeat(4000);
    const perSender = 2000; // 2 × 2000 × 4 kB = 16 MB for each reader
    const burst = (name: string) =>
      Array.from({ length: 100 }, (_, i) => `${name}${i} ${line}\n`).join("");
    await Promise.all([alice, bob].map(async (c, k) => {
      for (let i = 0; i < perSender / 100; i++) await c.send(burst("ab"[k]));
    }));
    await Promise.all(
      [alice, bob].map((c) => c.count(2 * perSender, 30_000)),
    );
    const dropped = await logs.waitFor((r) =>
      r.rawMessage.toString().startsWith("Dropping")
    );
    assert.equal(dropped.properties.peer, localPeer(sleeper));
    assert.equal(server.stats.dropped, 1);
    const closed = await logs.closed(localPeer(sleeper));
    assert.equal(closed.properties.reason, "send queue full");
    assert.equal(server.stats.closed.sendQueueFull, 1);
  } finally {
    await closeAll([alice, bob]);
  }
}

engineTest(
  "chat: no control characters, no invalid UTF-8, no names that pass for the server or a user",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0, mode: "chat" });
    const [mallory, alice] = await connectAll(server, 2);
    try {
      await alice.line(/^\* user2 joined lobby$/);
      const bytes = (text: string) =>
        new Uint8Array([...text].map((c) => c.charCodeAt(0)));
      await mallory.send(bytes(
        "innocent\r[server] shutting down\n" +
          "x\r* user9 is now admin\n" +
          "\x1b[2Jcleared\x00\x07\x08\x7f\xc2\x9b tab\tkept\r\n" +
          "bad \xff\xfe utf-8, good \xc3\xa9\n" +
          "/nick [server]\n/nick <bob>\n/nick bob>\n/nick *x\n" +
          "/nick \xff\xfe\n/nick a\x1bb\n" +
          "/NICK Mallory\n/WHO\n/Join Side\n",
      ));
      await mallory.line(/^\* Mallory joined Side$/);
      const R = "\uFFFD";
      const said = (lines: string[]) => lines.filter((l) => l.startsWith("<"));
      await alice.line(/^\* Mallory left lobby$/);
      assert.deepEqual(said(alice.lines), [
        `<user1> innocent${R}[server] shutting down`,
        `<user1> x${R}* user9 is now admin`,
        `<user1> ${R}[2Jcleared${R}${R}${R}${R}${R} tab\tkept`,
        `<user1> bad ${R}${R} utf-8, good \u00e9`,
      ]);
      // Every byte alice got is printable but TAB and the line endings.
      assert.ok(
        !alice.bytes.some((b) =>
          (b < 0x20 && b !== 0x09 && b !== 0x0a) || b === 0x7f
        ),
        "a control character was relayed",
      );
      assert.deepEqual(
        mallory.lines.filter((l) => l.startsWith("ERR")),
        Array(6).fill(`ERR usage: /nick NAME (${NAME_RULE})`),
      );
      assert.ok(mallory.lines.includes("* in lobby (2): Mallory, user2"));
      assert.ok(alice.lines.includes("* user1 is now Mallory"));
    } finally {
      await closeAll([mallory, alice]);
    }
  },
);

engineTest(
  "chat: names, messages, notices, /who, /nick, /join, history and /quit",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      mode: "chat",
      history: 2,
    });
    const port = server.addr.port;
    await using alice = await LineClient.connect(port);
    assert.match(await alice.line(/^\* welcome/), /you are user1;/);
    await alice.line(/^\* user1 joined lobby$/);
    await alice.send("/nick alice\nfirst\nsecond\nthird\n");
    await alice.line(/^<alice> third$/);

    await using bob = await LineClient.connect(port);
    await bob.line(/^\* bob|^\* user2 joined lobby$/);
    // History: the last 2 lines of the room, then the join notice.
    assert.deepEqual(bob.lines.slice(1), [
      "<alice> second",
      "<alice> third",
      "* user2 joined lobby",
    ]);
    await alice.line(/^\* user2 joined lobby$/);

    await bob.send("/nick Alice\n/nick bad name\n/nick \n/bogus\n//slash\n\n");
    await bob.line(/^<user2> \/slash$/);
    assert.deepEqual(bob.lines.slice(4), [
      "ERR name taken: Alice",
      `ERR usage: /nick NAME (${NAME_RULE})`,
      `ERR usage: /nick NAME (${NAME_RULE})`,
      "ERR unknown command /bogus (try /help; //text sends /text)",
      "<user2> /slash",
    ]);
    await bob.send(`/nick ${"b".repeat(33)}\n/nick bob\n/who\n`);
    assert.equal(await bob.line(/^\* in lobby/), "* in lobby (2): alice, bob");
    await alice.line(/^\* user2 is now bob$/);

    await bob.send("/join side\nonly side hears this\n");
    await alice.line(/^\* bob left lobby$/);
    await bob.line(/^<bob> only side hears this$/);
    await alice.send("lobby only\n/who\n");
    assert.equal(await alice.line(/^\* in lobby/), "* in lobby (1): alice");
    assert.ok(!alice.lines.includes("<bob> only side hears this"));
    assert.ok(!bob.lines.includes("<alice> lobby only"));

    await bob.send("/quit\nnot sent\n");
    await bob.closed;
    assert.deepEqual(bob.lines.slice(-1), ["* bye"]);
    const quit = await logs.closed(localPeer(bob.conn));
    assert.equal(quit.properties.reason, "quit command");
    assert.equal(server.stats.closed.quitCommand, 1);
    await alice.send("/join side\n");
    // side's history is gone with its last member; alice is alone there.
    await alice.line(/^\* alice joined side$/);
    await alice.send("/who\n");
    assert.equal(await alice.line(/^\* in side/), "* in side (1): alice");
    // bob's empty line was never relayed.
    assert.ok(!alice.lines.some((l) => /^<(user2|bob)> ?$/.test(l)));
  },
);

async function joinsAndLeaves(setup: Setup): Promise<void> {
  await using server = serveEcho({ port: 0, mode: "chat", ...setup });
  await server.ready;
  await using watcher = await LineClient.connect(server.addr.port);
  await watcher.line(/^\* user1 joined lobby$/);
  const clients = await connectAll(server, 200);
  const joined = (lines: string[]) =>
    lines.filter((l) => / joined lobby$/.test(l)).length;
  await watcher.until((lines) => joined(lines) === 201);
  await closeAll(clients);
  await watcher.until((lines) =>
    lines.filter((l) => / left lobby$/.test(l)).length === 200
  );
  const names = watcher.lines.filter((l) => / left lobby$/.test(l));
  assert.equal(new Set(names).size, 200);
  assert.equal(server.stats.active, 1);
  await watcher.send("/who\n");
  assert.equal(await watcher.line(/^\* in lobby/), "* in lobby (1): user1");
}

async function announceReachesAll(
  t: Deno.TestContext,
  setup: Setup,
): Promise<void> {
  const expected = {
    echo: "hello all",
    line: "hello all",
    broadcast: "[server] hello all",
    chat: "[server] hello all",
  };
  for (const [mode, line] of Object.entries(expected)) {
    await t.step(mode, async () => {
      await using server = serveEcho({
        port: 0,
        mode: mode as keyof typeof expected,
        ...setup,
      });
      const clients = await connectAll(server, 10);
      try {
        assert.equal(server.announce("hello all"), 10);
        for (const c of clients) await c.line(/hello all/);
        for (const c of clients) {
          assert.equal(c.lines.find((l) => l.includes("hello all")), line);
        }
        assert.throws(() => server.announce("two\nlines"), TypeError);
      } finally {
        await closeAll(clients);
      }
    });
  }
}

async function shutdownTellsClients(
  t: Deno.TestContext,
  setup: Setup,
): Promise<void> {
  for (const mode of ["broadcast", "chat"] as const) {
    await t.step(mode, async () => {
      const server = serveEcho({
        port: 0,
        mode,
        gracePeriod: 60_000,
        ...setup,
      });
      const clients = await connectAll(server, 10);
      try {
        await server.shutdown();
        for (const c of clients) {
          await c.closed;
          assert.equal(c.lines.at(-1), "[server] shutting down");
          assert.equal(
            c.lines.filter((l) => l === "[server] shutting down").length,
            1,
          );
        }
      } finally {
        await closeAll(clients);
      }
    });
  }
}
