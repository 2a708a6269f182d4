// Broadcast and chat across instances that share a real Redis (Debian's
// redis-server, started here on a Unix socket): one order everywhere, every
// line exactly once, unique names under a race, ghosts gone after a
// SIGKILL, a Redis restart mid-stream, and the CLI's --redis.

import assert from "node:assert/strict";
import { ENGINES } from "./_engines.ts";

import { serveEcho } from "../mod.ts";
import { serveMetrics } from "../metrics.ts";
import { captureLogs, LineClient } from "./_helpers.ts";
import { LOCK, run, SERVER, ServerProcess } from "./_process.ts";
import { startRedis } from "./_redis.ts";
import { testCertificates } from "./_certs.ts";
import { chatRelay, member } from "./_relay.ts";
import { RedisBus } from "../lib/relay/redis_bus.ts";

/** The native engine where this machine has it: clustered with the default. */
const OTHER_ENGINE = ENGINES.at(-1)!;

const logs = await captureLogs();
const decoder = new TextDecoder();

/**
 * Two broadcast instances on `url`, a client on each (`sender` on the one
 * with `redisHold`), both members everywhere once `ready` went round.
 */
async function broadcastPair(url: string, redisHold?: number) {
  const a = serveEcho({ port: 0, mode: "broadcast", redis: url, redisHold });
  const b = serveEcho({ port: 0, mode: "broadcast", redis: url });
  await Promise.all([a.ready, b.ready]);
  const sender = await LineClient.connect(a.addr.port);
  const far = await LineClient.connect(b.addr.port);
  await far.send("ready\n");
  await sender.line(/^ready$/);
  return {
    a,
    sender,
    far,
    async [Symbol.asyncDispose]() {
      await Promise.all([sender, far].map((c) => c[Symbol.asyncDispose]()));
      await Promise.all([a.shutdown(), b.shutdown()]);
    },
  };
}

Deno.test("3 instances × 50 clients, 10,050 lines: every client gets every line once, in one order (one on the native engine)", async () => {
  await using redis = await startRedis();
  const instances = [0, 1, 2].map((i) =>
    serveEcho({
      engine: i === 1 ? OTHER_ENGINE : "default",
      port: 0,
      mode: "broadcast",
      redis: redis.url,
      channelCapacity: 4000,
      channelBytes: 8 * 1024 * 1024,
    })
  );
  try {
    await Promise.all(instances.map((s) => s.ready));
    const clients: LineClient[] = [];
    for (const server of instances) {
      for (let i = 0; i < 50; i++) {
        clients.push(await LineClient.connect(server.addr.port));
      }
    }
    // Everyone is a member everywhere once a marker from the last client
    // reaches the first.
    await clients.at(-1)!.send("ready\n");
    await clients[0].line(/^ready$/, 30_000);
    const perClient = 67;
    await Promise.all(clients.map(async (client, c) => {
      for (let i = 0; i < perClient; i++) await client.send(`${c}:${i}\n`);
    }));
    const total = clients.length * perClient + 1;
    await Promise.all(clients.map((client) => client.count(total, 60_000)));
    const first = clients[0].lines.filter((l) => l !== "ready");
    // Every line once, and each sender's lines in the order it sent them.
    assert.equal(new Set(first).size, clients.length * perClient);
    for (let c = 0; c < clients.length; c += 37) {
      const own = first.filter((l) => l.startsWith(`${c}:`));
      assert.deepEqual(
        own,
        Array.from({ length: perClient }, (_, i) => `${c}:${i}`),
      );
    }
    // One order for every client on every instance.
    for (const client of clients) {
      assert.deepEqual(client.lines.filter((l) => l !== "ready"), first);
    }
    await Promise.all(clients.map((c) => c[Symbol.asyncDispose]()));
  } finally {
    await Promise.all(instances.map((s) => s.shutdown()));
  }
});

Deno.test("chat across two instances, one on each engine: /who everywhere, and one name for one of two racing /nick", async () => {
  await using redis = await startRedis();
  await using a = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await using b = serveEcho({
    engine: OTHER_ENGINE,
    port: 0,
    mode: "chat",
    redis: redis.url,
  });
  await Promise.all([a.ready, b.ready]);
  await using ann = await LineClient.connect(a.addr.port);
  await using ben = await LineClient.connect(b.addr.port);
  await ann.line(/^\* user2 joined lobby$/);
  await ben.line(/^\* user2 joined lobby$/);
  // Both ask for the same name at once: the stream's order decides.
  await Promise.all([ann.send("/nick alice\n"), ben.send("/nick alice\n")]);
  // Both hear the winner's rename; only the loser hears that it is taken.
  const notice = await ann.line(/^\* user\d is now alice$/);
  assert.equal(await ben.line(/^\* user\d is now alice$/), notice);
  const [winner, loser] = notice === "* user1 is now alice"
    ? [ann, ben]
    : [ben, ann];
  await loser.line(/^ERR name taken: alice$/);
  await winner.send("/who\n");
  await winner.line(/^\* in lobby/);
  assert.ok(
    !winner.lines.some((l) => l.startsWith("ERR")),
    winner.lines.join("\n"),
  );
  await ben.send("/who\n");
  const who = await ben.line(/^\* in lobby \(2\): /);
  assert.match(who, /alice/);
  // A newcomer on the other instance gets the room's history.
  await ann.send("history line\n");
  await ben.line(/> history line$/);
  await using cal = await LineClient.connect(b.addr.port);
  await cal.line(/> history line$/);
});

Deno.test("an instance that is SIGKILLed leaves no ghosts: its members go within 15 s", async () => {
  await using redis = await startRedis();
  await using survivor = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await survivor.ready;
  await using doomed = await ServerProcess.start(
    ["--mode", "chat", "--redis", redis.url, "--log-level", "error"],
    [
      Deno.execPath(),
      "run",
      LOCK,
      "--allow-net",
      "--allow-read",
      "--allow-write",
      SERVER,
    ],
  );
  await using watcher = await LineClient.connect(survivor.addr.port);
  await watcher.line(/^\* user1 joined lobby$/);
  await using ghost = await LineClient.connect(doomed.port);
  await ghost.send("/nick ghost\n");
  await watcher.line(/^\* user2 is now ghost$/);
  const killedAt = performance.now();
  doomed.child.kill("SIGKILL");
  await doomed.status();
  await watcher.line(/^\* ghost left lobby$/, 20_000);
  const seconds = (performance.now() - killedAt) / 1000;
  assert.ok(seconds < 15, `${seconds} s`);
  await watcher.send("/who\n");
  assert.match(
    await watcher.line(/^\* in lobby/),
    /^\* in lobby \(1\): user1$/,
  );
});

Deno.test("an orderly stop takes its members away at once, and --redis that does not answer is exit 1", async () => {
  await using redis = await startRedis();
  await using stays = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await stays.ready;
  const goes = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await goes.ready;
  await using watcher = await LineClient.connect(stays.addr.port);
  await watcher.line(/joined lobby$/);
  const leaver = await LineClient.connect(goes.addr.port);
  await watcher.line(/^\* user2 joined lobby$/);
  await goes.shutdown();
  await leaver.closed;
  await watcher.line(/^\* user2 left lobby$/, 5000);
  await leaver[Symbol.asyncDispose]();

  const result = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    SERVER,
    "--mode",
    "chat",
    "--redis",
    `unix://${redis.dir}/missing.sock`,
  ]);
  assert.equal(result.code, 1);
  // One line: no "Stopping now" record after it, with workers or without.
  assert.match(
    result.stderr,
    /^error: Cannot start: Redis at unix:\/\/.*missing\.sock: connect ENOENT[^\n]*\n$/,
  );
  const pool = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--unstable-net",
    SERVER,
    "--mode",
    "chat",
    "--workers",
    "2",
    "--redis",
    `unix://${redis.dir}/missing.sock`,
  ]);
  assert.equal(pool.code, 1);
  assert.match(pool.stderr, /^error: Cannot start: [^\n]*\n$/);
  const echo = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    SERVER,
    "--redis",
    redis.url,
  ]);
  assert.equal(echo.code, 2);
  assert.equal(
    echo.stderr,
    "error: Invalid --redis: only broadcast and chat mode span instances (see --help)\n",
  );
});

Deno.test("Redis killed and restarted mid-stream: nothing lost, nothing twice, one order", async () => {
  logs.clear();
  await using redis = await startRedis();
  await using pair = await broadcastPair(redis.url);
  const { sender, far } = pair;
  for (let i = 0; i < 100; i++) await sender.send(`before ${i}\n`);
  await far.line(/^before 99$/);
  await redis.kill();
  for (let i = 0; i < 100; i++) await sender.send(`during ${i}\n`);
  await redis.start();
  for (let i = 0; i < 100; i++) await sender.send(`after ${i}\n`);
  await far.line(/^after 99$/, 30_000);
  await sender.line(/^after 99$/, 30_000);
  const expected = [
    "ready",
    ...["before", "during", "after"].flatMap((w) =>
      Array.from({ length: 100 }, (_, i) => `${w} ${i}`)
    ),
  ];
  assert.deepEqual(far.lines, expected);
  assert.deepEqual(sender.lines, expected);
  // The outage and the recovery are logged once each by each instance,
  // not once a line.
  const outages = logs.records.filter((r) =>
    String(r.rawMessage).startsWith("Redis unreachable")
  );
  const recoveries = logs.records.filter((r) =>
    String(r.rawMessage).startsWith("Redis is back")
  );
  assert.ok(outages.length >= 1 && outages.length <= 2, `${outages.length}`);
  assert.equal(recoveries.length, outages.length);
});

Deno.test("the operator's lines reach the clients of every instance, on either engine", async () => {
  await using redis = await startRedis();
  await using a = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await using b = serveEcho({
    engine: OTHER_ENGINE,
    port: 0,
    mode: "chat",
    redis: redis.url,
  });
  await Promise.all([a.ready, b.ready]);
  await using near = await LineClient.connect(a.addr.port);
  await using far = await LineClient.connect(b.addr.port);
  await near.line(/^\* user2 joined lobby$/);
  await far.line(/^\* user2 joined lobby$/);
  a.announce("maintenance at noon");
  await near.line(/^\[server\] maintenance at noon$/);
  await far.line(/^\[server\] maintenance at noon$/);
  // Once each.
  for (const client of [near, far]) {
    assert.equal(
      client.lines.filter((l) => l === "[server] maintenance at noon").length,
      1,
    );
  }
});

Deno.test("over redisHold lines while Redis is away, the sender hears ERR and the held lines go out in order", async () => {
  await using redis = await startRedis();
  await using pair = await broadcastPair(redis.url, 5);
  const { sender, far } = pair;
  await redis.kill();
  // Eight lines in one write, so one read: five are held, three refused.
  await sender.send(
    Array.from({ length: 8 }, (_, i) => `during ${i}\n`).join(""),
  );
  const refused = "ERR cluster unavailable, line not sent";
  await sender.until((lines) =>
    lines.filter((l) => l === refused).length === 3
  );
  // What metrics see meanwhile: Redis away, five lines held.
  assert.deepEqual(await pair.a.clusterStatus(), {
    up: false,
    heldLines: 5,
    lagSeconds: undefined,
  });
  await redis.start();
  // Once the held lines are out, the next line is taken again.
  await far.line(/^during 4$/, 30_000);
  await sender.line(/^during 4$/, 30_000);
  await sender.send("after\n");
  await far.line(/^after$/, 30_000);
  await sender.line(/^after$/, 30_000);
  const held = Array.from({ length: 5 }, (_, i) => `during ${i}`);
  assert.deepEqual(far.lines, ["ready", ...held, "after"]);
  const back = await pair.a.clusterStatus();
  assert.equal(back?.up, true);
  assert.equal(back?.heldLines, 0);
  assert.ok(back?.lagSeconds !== undefined && back.lagSeconds < 5, `${back}`);
  assert.deepEqual(sender.lines, [
    "ready",
    refused,
    refused,
    refused,
    ...held,
    "after",
  ]);
});

Deno.test("rediss:// and a password in the URL: one chat over TLS and plain TCP, and a wrong password or an untrusted Redis is exit 1", async () => {
  await using certs = await testCertificates();
  await using redis = await startRedis({ password: "s3cret", tls: certs });
  // Deno trusts our test CA for TLS (node-redis's too) with DENO_CERT.
  await using overTls = await ServerProcess.start(
    ["--mode", "chat", "--redis", redis.tlsUrl!, "--log-level", "error"],
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
    { env: { DENO_CERT: certs.caFile } },
  );
  await using overTcp = serveEcho({
    port: 0,
    mode: "chat",
    redis: redis.tcpUrl!,
  });
  await overTcp.ready;
  await using ann = await LineClient.connect(overTls.port);
  await ann.line(/^\* user1 joined lobby$/);
  await using ben = await LineClient.connect(overTcp.addr.port);
  await ann.line(/^\* user2 joined lobby$/);
  await ben.send("over TLS?\n");
  assert.equal(await ann.line(/over TLS/), "<user2> over TLS?");

  const serve = (url: string, env: Record<string, string> = {}) =>
    run(
      Deno.execPath(),
      [
        "run",
        LOCK,
        "--allow-net",
        "--allow-read",
        SERVER,
        "--mode",
        "chat",
        "--redis",
        url,
      ],
      undefined,
      undefined,
      env,
    );
  const wrong = await serve(redis.tcpUrl!.replace("s3cret", "guess"));
  assert.equal(wrong.code, 1);
  assert.match(
    wrong.stderr,
    /^error: Cannot start: Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: WRONGPASS/,
  );
  assert.ok(!wrong.stderr.includes("guess"), wrong.stderr);
  const none = await serve(redis.tcpUrl!.replace(":s3cret@", ""));
  assert.equal(none.code, 1);
  assert.match(none.stderr, /: NOAUTH Authentication required/);
  const untrusted = await serve(redis.tlsUrl!);
  assert.equal(untrusted.code, 1);
  assert.match(
    untrusted.stderr,
    /: self-signed certificate in certificate chain/,
  );
});

Deno.test("an instance that starts once the stream is trimmed starts from a snapshot: names, rooms and history", async () => {
  // Small stream nodes, so that MAXLEN ~ 40 trims at once.
  await using redis = await startRedis({
    config: ["--stream-node-max-entries", "10"],
  });
  const options = {
    url: redis.url,
    key: "trim",
    holdLimit: 1000,
    streamLength: 40,
    snapshotEvery: 20,
  };
  const line = (text: string) => [new TextEncoder().encode(`${text}\n`)];
  const a = chatRelay(new RedisBus(options));
  await a.ready;
  const ann = member("a:1");
  const bob = member("a:2");
  a.join(ann);
  a.join(bob);
  await a.submit(ann, line("/nick alice"));
  await a.submit(ann, line("/join den"));
  await a.submit(ann, line("in the den"));
  for (let i = 0; i < 100; i++) await a.submit(bob, line(`lobby ${i}`));
  // The joins and the rename are gone from the stream.
  const length = await run("redis-cli", [
    "-s",
    redis.url.slice("unix://".length),
    "XLEN",
    "trim:stream",
  ]);
  assert.ok(Number(decoder.decode(length.stdout)) < 60, length.stderr);

  const c = chatRelay(new RedisBus(options));
  await c.ready;
  const cat = member("c:1");
  c.join(cat);
  await c.submit(cat, line("/who"));
  // user3, not user1: the names given so far came with the snapshot.
  assert.ok(
    cat.lines.includes("* in lobby (2): user2, user3"),
    cat.lines.join("\n"),
  );
  await c.submit(cat, line("/nick alice"));
  assert.ok(cat.lines.includes("ERR name taken: alice"), cat.lines.join("\n"));
  await c.submit(cat, line("/join den"));
  await c.submit(cat, line("/who"));
  assert.deepEqual(cat.lines.slice(-3), [
    "<alice> in the den",
    "* user3 joined den",
    "* in den (2): alice, user3",
  ]);
  // alice, on the first instance, saw cat come in before her next line.
  await a.submit(ann, line("hi cat"));
  assert.deepEqual(ann.lines.slice(-2), [
    "* user3 joined den",
    "<alice> hi cat",
  ]);
  await Promise.all([a.close(), c.close()]);
});

Deno.test("a certificate's name crosses instances: the other one names the member by it too", async () => {
  await using redis = await startRedis();
  const options = { url: redis.url, key: "certs", holdLimit: 1000 };
  const line = (text: string) => [new TextEncoder().encode(`${text}\n`)];
  const a = chatRelay(new RedisBus(options), true);
  const b = chatRelay(new RedisBus(options), true);
  await Promise.all([a.ready, b.ready]);
  const guest = member("b:1");
  b.join(guest);
  await b.submit(guest, line("/nick alice"));
  const alice = member("a:1", "alice");
  a.join(alice);
  await a.submit(alice, line("hello"));
  await b.submit(guest, line("/who"));
  assert.deepEqual(guest.lines.slice(-5), [
    "* alice belongs to a client with its certificate",
    "* alice is now user3",
    "* alice joined lobby",
    "<alice> hello",
    "* in lobby (2): user3, alice",
  ], guest.lines.join("\n"));
  await Promise.all([a.close(), b.close()]);
});

Deno.test("an instance with workers joins the cluster, and --redis-key keeps clusters apart on one Redis", async () => {
  await using redis = await startRedis();
  // Two workers: their clients reach the relay on the main thread, which
  // reaches Redis.
  await using threaded = serveEcho({
    port: 0,
    mode: "broadcast",
    workers: 2,
    redis: redis.url,
  });
  await using plain = serveEcho({
    port: 0,
    mode: "broadcast",
    redis: redis.url,
  });
  await using apart = serveEcho({
    port: 0,
    mode: "broadcast",
    redis: redis.url,
    redisKey: "other",
  });
  await Promise.all([threaded.ready, plain.ready, apart.ready]);
  // A client is a member everywhere once its own line came back: its join
  // precedes it in the stream, so whatever is sent later reaches it.
  await using far = await LineClient.connect(plain.addr.port);
  await far.send("far\n");
  await far.line(/^far$/);
  const near: LineClient[] = [];
  // Enough connections that both workers get some: the kernel spreads them
  // by a hash, so all 24 on one has a chance of 2 in 2^24.
  for (let i = 0; i < 24; i++) {
    const client = await LineClient.connect(threaded.addr.port);
    near.push(client);
    await client.send(`hello ${i}\n`);
  }
  await far.until((lines) =>
    lines.filter((l) => l.startsWith("hello ")).length === near.length
  );
  await using elsewhere = await LineClient.connect(apart.addr.port);
  for (const [i, client] of near.entries()) await client.send(`from ${i}\n`);
  const from = (lines: string[]) => lines.filter((l) => l.startsWith("from "));
  await far.until((lines) => from(lines).length === near.length);
  assert.deepEqual(
    from(far.lines).sort(),
    near.map((_, i) => `from ${i}`).sort(),
  );
  const { perWorker } = threaded.stats;
  assert.equal(perWorker.filter((n) => n > 0).length, 2, `${perWorker}`);
  // The other cluster heard nothing; its own line reaches only itself.
  await elsewhere.send("alone\n");
  await elsewhere.line(/^alone$/);
  assert.deepEqual(elsewhere.lines, ["alone"]);
  assert.ok(!far.lines.includes("alone"));
  await Promise.all(near.map((c) => c[Symbol.asyncDispose]()));
});

Deno.test("a clustered server's metrics show the Redis link: up, lines held, lag; a lone server has none", async () => {
  await using redis = await startRedis();
  await using pair = await broadcastPair(redis.url);
  await using metrics = serveMetrics(pair.a, { port: 0 });
  const text = await (await fetch(
    `http://127.0.0.1:${metrics.addr.port}/metrics`,
  )).text();
  assert.match(text, /^tcp_echo_redis_up 1$/m);
  assert.match(text, /^tcp_echo_redis_held_lines 0$/m);
  assert.match(text, /^tcp_echo_redis_lag_seconds \d+(\.\d+)?$/m);
  await using lone = serveEcho({ port: 0, mode: "broadcast" });
  assert.equal(await lone.clusterStatus(), undefined);
  await using loneMetrics = serveMetrics(lone, { port: 0 });
  const loneText = await (await fetch(
    `http://127.0.0.1:${loneMetrics.addr.port}/metrics`,
  )).text();
  assert.doesNotMatch(loneText, /^tcp_echo_redis_up /m);
});
