// Chat's talking commands: private lines (/msg) wherever the other user is
// (another room, another worker, another instance through Redis), /me,
// /rooms, /whois, /help, and flood control (chatRate).

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { localBus } from "../lib/relay/relay.ts";
import { chatClient, LineClient } from "./_helpers.ts";
import { chatRelay, member } from "./_relay.ts";
import { startRedis } from "./_redis.ts";
import { engineTest } from "./_engines.ts";
import { run } from "./_process.ts";

engineTest(
  "/msg reaches one user in any room, and the sender sees it; /me, /rooms, /whois and /help",
  async (engine) => {
    await using server = serveEcho({ port: 0, mode: "chat", engine });
    await server.ready;
    const { port } = server.addr;
    await using alice = await chatClient(port, "alice");
    await using bob = await chatClient(port, "bob");
    await using carol = await chatClient(port, "carol");
    await bob.send("/join den\n");
    await bob.line(/^\* bob joined den$/);
    await alice.send("/msg Bob  psst,  over here\n");
    await alice.line(/^\[to bob\] psst, {2}over here$/);
    await bob.line(/^\[from alice\] psst, {2}over here$/);
    await alice.send("/msg nobody hi\n/msg bob\n");
    await alice.line(/^ERR no such user: nobody$/);
    await alice.line(/^ERR usage: \/msg NAME TEXT$/);
    await alice.send("/me waves\n");
    await carol.line(/^\* alice waves$/);
    await alice.send("/rooms\n/whois bob\n/whois ghost\n/help\n");
    await alice.line(/^\* rooms \(2\): den 1, lobby 2$/);
    const whois = await alice.line(/^\* bob: in den since /);
    const since = Date.parse(
      whois.replace(/^.* since (\S+), not logged in$/, "$1"),
    );
    assert.ok(Math.abs(Date.now() - since) < 60_000, whois);
    await alice.line(/^ERR no such user: ghost$/);
    await alice.line(
      /^\* commands: \/nick NAME, \/join ROOM, \/who, \/rooms, \/msg NAME TEXT, \/me TEXT, \/whois NAME, \/history N, \/login NAME PASSWORD, \/protocol text\|json, \/accept ID, \/reject ID, \/help, \/quit; \/\/text sends \/text$/,
    );
    // Nobody else heard the private line.
    await carol.send("/who\n");
    await carol.line(/^\* in lobby/);
    assert.ok(
      !carol.lines.some((l) => l.includes("psst")),
      carol.lines.join("\n"),
    );
  },
);

Deno.test("/msg crosses workers: each of five users gets the private line meant for it alone", async () => {
  await using server = serveEcho({ port: 0, mode: "chat", workers: 2 });
  await server.ready;
  const { port } = server.addr;
  await using sender = await chatClient(port, "sender");
  const others: LineClient[] = [];
  try {
    for (let i = 0; i < 5; i++) others.push(await chatClient(port, `u${i}`));
    for (let i = 0; i < 5; i++) await sender.send(`/msg u${i} for u${i}\n`);
    for (let i = 0; i < 5; i++) {
      await others[i].line(new RegExp(`^\\[from sender\\] for u${i}$`));
    }
    await sender.line(/^\[to u4\] for u4$/);
    for (let i = 0; i < 5; i++) {
      const wrong = others[i].lines.filter((l) =>
        l.startsWith("[from") && l !== `[from sender] for u${i}`
      );
      assert.deepEqual(wrong, []);
    }
  } finally {
    for (const client of others) await client[Symbol.asyncDispose]();
  }
});

Deno.test("/msg and /whois cross instances through Redis; the private line is not in the room's history", async () => {
  await using redis = await startRedis();
  await using a = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await using b = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await Promise.all([a.ready, b.ready]);
  await using alice = await chatClient(a.addr.port, "alice");
  await using bob = await chatClient(b.addr.port, "bob");
  await alice.send("/msg bob across the cluster\n");
  await bob.line(/^\[from alice\] across the cluster$/);
  await alice.line(/^\[to bob\] across the cluster$/);
  await bob.send("/whois alice\n");
  await bob.line(/^\* alice: in lobby since /);
  await using late = await LineClient.connect(a.addr.port);
  await late.line(/^\* welcome, you are /);
  await late.send("/who\n");
  await late.line(/^\* in lobby \(3\)/);
  assert.ok(!late.lines.some((l) => l.includes("across the cluster")));
});

engineTest(
  "chatRate: past the burst, each line is refused with ERR to its sender alone and counted; the room hears the rest",
  async (engine) => {
    await using server = serveEcho({
      port: 0,
      mode: "chat",
      chatRate: 5,
      engine,
    });
    await server.ready;
    const { port } = server.addr;
    await using flood = await chatClient(port, "flood");
    await using quiet = await chatClient(port, "quiet");
    // The /nick took one token: 4 of these 20 go, in one write.
    const lines = Array.from({ length: 20 }, (_, i) => `line ${i}\n`).join("");
    await flood.send(lines);
    await flood.until((l) => l.filter((x) => x.startsWith("ERR")).length >= 16);
    await quiet.line(/^<flood> line 3$/);
    assert.deepEqual(
      flood.lines.filter((l) => l.startsWith("ERR")),
      Array(16).fill("ERR too many lines: at most 5 a second; line not sent"),
    );
    assert.equal(server.stats.chatLinesLimited, 16);
    await quiet.send("/who\n");
    await quiet.line(/^\* in lobby/);
    assert.deepEqual(
      quiet.lines.filter((l) => l.startsWith("<flood>")),
      ["<flood> line 0", "<flood> line 1", "<flood> line 2", "<flood> line 3"],
    );
    assert.ok(!quiet.lines.some((l) => l.startsWith("ERR")));
  },
);

Deno.test("flood control refills at its rate (a clock of our own): a token every 1/rate s, never more than the burst", async () => {
  let now = 0;
  const relay = chatRelay(localBus(), false, { rate: 2, now: () => now });
  const m = member("127.0.0.1:1");
  relay.join(m);
  const line = new TextEncoder().encode("hi\n");
  const refused = async () => {
    const before = m.lines.length;
    await relay.submit(m, [line]);
    return m.lines.slice(before).some((l) => l.startsWith("ERR too many"));
  };
  const three = async () => [await refused(), await refused(), await refused()];
  assert.deepEqual(await three(), [false, false, true]);
  now += 499;
  assert.equal(await refused(), true);
  now += 1;
  assert.deepEqual([await refused(), await refused()], [false, true]);
  now += 60_000; // Long quiet: the burst, not more.
  assert.deepEqual(await three(), [false, false, true]);
});

Deno.test("chatRate is checked: positive or Infinity, chat mode only", () => {
  assert.throws(
    () => serveEcho({ port: 0, mode: "chat", chatRate: 0 }),
    /Cannot use chatRate: must be a positive integer or Infinity, got 0/,
  );
  assert.throws(
    () => serveEcho({ port: 0, mode: "echo", chatRate: 5 }),
    /Cannot use chatRate: limits chat mode.s lines only/,
  );
});

Deno.test("with Redis, a line flood control refuses is answered where it was sent and never reaches the stream", async () => {
  await using redis = await startRedis();
  await using a = serveEcho({
    port: 0,
    mode: "chat",
    redis: redis.url,
    chatRate: 2,
  });
  await using b = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await Promise.all([a.ready, b.ready]);
  await using listener = await LineClient.connect(b.addr.port);
  await listener.line(/^\* welcome/);
  await using flood = await LineClient.connect(a.addr.port);
  await flood.line(/^\* welcome/);
  await flood.send("flood 1\nflood 2\nflood 3\nflood 4\n");
  await flood.until((l) =>
    l.filter((x) => x.startsWith("ERR too many")).length === 2
  );
  await listener.line(/^<user\d+> flood 2$/);
  assert.equal(a.stats.chatLinesLimited, 2);
  const socket = redis.url.replace(/^unix:\/\//, "");
  const stream = await run("redis-cli", [
    ...["-s", socket, "--raw", "XRANGE", "tcp-echo:stream", "-", "+"],
  ]);
  const entries = new TextDecoder().decode(stream.stdout);
  assert.match(entries, /flood 2/);
  assert.doesNotMatch(entries, /flood 3|flood 4/);
});
