// Chat accounts: registered names taken only by /login, logins right and
// wrong (counted, a wrong one answered after a delay, guessing bounded),
// --chat-require-login, passwords in no log, history or Redis stream, the
// users file written by --add-user and read again on SIGHUP.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import {
  hashPassword,
  parseUsers,
  verifyPassword,
} from "../lib/relay/chat_users.ts";
import { isChatName } from "../lib/relay/chat.ts";
import { captureLogs, chatClient, LineClient } from "./_helpers.ts";
import { startRedis } from "./_redis.ts";
import { LOCK, run, SERVER, Spawned } from "./_process.ts";

/** A users file with `users` (name: password). */
async function usersFile(users: Record<string, string>): Promise<string> {
  const lines = await Promise.all(
    Object.entries(users).map(async ([name, password]) =>
      `${name}:${await hashPassword(password)}`
    ),
  );
  return `# test users\n${lines.join("\n")}\n`;
}

Deno.test("the users file: scrypt hashes in PHC strings, checked in constant time; a bad line is named", async () => {
  const hash = await hashPassword("correct horse");
  assert.match(
    hash,
    /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/,
  );
  assert.equal(await verifyPassword("correct horse", hash), true);
  assert.equal(await verifyPassword("correct horsE", hash), false);
  assert.notEqual(await hashPassword("correct horse"), hash); // Salted.
  const users = parseUsers(`# c\n\nAlice:${hash}\n`, isChatName);
  assert.deepEqual([...users.keys()], ["alice"]);
  for (
    const [text, problem] of [
      ["alice", "line 1 is not NAME:HASH"],
      [`a<b:${hash}`, 'line 1 names "a<b", not a chat name'],
      ["alice:plain", "line 1 has no scrypt hash of ours"],
      [`alice:${hash}\nALICE:${hash}`, "line 2 names ALICE again"],
    ]
  ) {
    assert.throws(() => parseUsers(text, isChatName), (error: Error) => {
      assert.ok(error.message.includes(problem), error.message);
      return true;
    });
  }
});

Deno.test("a registered name is taken only by /login: a wrong password waits a second and is counted, the right one renames and logs in; the squatter gives way", async () => {
  const logs = await captureLogs();
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    chatUsers: await usersFile({ alice: "s3cret pass" }),
  });
  await server.ready;
  const { port } = server.addr;
  await using squatter = await chatClient(port);
  await squatter.send("/nick Alice\n/nick bob\n");
  await squatter.line(/^ERR alice is registered: \/login alice PASSWORD$/);
  await squatter.line(/^\* user1 is now bob$/);
  await using alice = await chatClient(port);
  const started = performance.now();
  await alice.send("/login alice wrong\n");
  await alice.line(/^ERR login failed for alice$/);
  assert.ok(performance.now() - started >= 900, "answered without a delay");
  await alice.send("/nick alice s3cret pass\n");
  await alice.line(/^ERR usage: \/nick NAME PASSWORD$/);
  await alice.send("/login ALICE s3cret\n");
  await alice.line(/^ERR login failed for ALICE$/);
  // bob is registered now: the squatter who took the name before gives it
  // way when bob logs in.
  server.reloadChatUsers(
    await usersFile({ alice: "s3cret", bob: "builder" }),
  );
  await alice.send("/login alice s3cret\n");
  await alice.line(/^\* logged in as alice$/);
  await using bob = await chatClient(port);
  await bob.send("/login bob builder\n");
  await bob.line(/^\* logged in as bob$/);
  await squatter.line(/^\* bob logged in elsewhere$/);
  await squatter.line(/^\* bob is now user\d+$/);
  await alice.send("/whois alice\n/nick other\n");
  await alice.line(/^\* alice: in lobby since .*, logged in$/);
  await alice.line(/^ERR you are logged in as alice$/);
  assert.deepEqual(server.stats.chatLogins, { ok: 2, failed: 2, refused: 0 });
  // No password in any log record.
  const logged = logs.records.map((r) =>
    JSON.stringify(r.properties) + r.rawMessage
  );
  assert.ok(!logged.some((l) => l.includes("s3cret") || l.includes("wrong")));
  assert.equal(
    logs.records.filter((r) => r.rawMessage === "Login {result} for {peer}")
      .length,
    4,
  );
});

Deno.test("guessing is bounded: after 3 failures a connection's logins are refused unchecked, and counted", async () => {
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    chatUsers: await usersFile({ alice: "right" }),
  });
  await server.ready;
  await using guesser = await chatClient(server.addr.port);
  for (const guess of ["a", "b", "c"]) {
    await guesser.send(`/login alice ${guess}\n`);
  }
  await guesser.until((l) =>
    l.filter((x) => x.startsWith("ERR login failed")).length === 3
  );
  await guesser.send("/login alice right\n");
  await guesser.line(/^ERR too many failed logins: try again later$/);
  assert.deepEqual(server.stats.chatLogins, { ok: 0, failed: 3, refused: 1 });
  // Another connection from the same address may still log in.
  await using other = await chatClient(server.addr.port);
  await other.send("/login alice right\n");
  await other.line(/^\* logged in as alice$/);
});

Deno.test("chatRequireLogin: in no room and silent until logged in; then in the lobby", async () => {
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    chatUsers: await usersFile({ alice: "pw" }),
    chatRequireLogin: true,
  });
  await server.ready;
  const { port } = server.addr;
  await using alice = await LineClient.connect(port);
  assert.equal(
    await alice.line(/^\* welcome/),
    "* welcome, you are user1; log in: /login NAME PASSWORD; /help lists the commands",
  );
  await using guest = await LineClient.connect(port);
  await guest.line(/^\* welcome/);
  await guest.send("hello?\n/who\n/nick guest\n/help\n");
  await guest.until((l) =>
    l.filter((x) => x.startsWith("ERR log in first")).length === 3
  );
  await guest.line(/^\* commands: /);
  await alice.send("/login alice pw\n");
  await alice.line(/^\* alice joined lobby$/);
  await alice.send("/who\n/whois user2\n");
  await alice.line(/^\* in lobby \(1\): alice$/);
  await alice.line(/^\* user2: in no room since .*, not logged in$/);
  assert.ok(
    !guest.lines.some((l) => l.includes("alice")),
    guest.lines.join("\n"),
  );
  assert.throws(
    () => serveEcho({ port: 0, mode: "chat", chatRequireLogin: true }),
    /chatRequireLogin: needs chatUsers/,
  );
  assert.throws(
    () => serveEcho({ port: 0, mode: "echo", chatUsers: "" }),
    /chatUsers: registers chat users only/,
  );
});

Deno.test("logins across workers and instances: the password stays where the client is, out of the Redis stream and history", async () => {
  await using redis = await startRedis();
  const chatUsers = await usersFile({ alice: "pa55word", bob: "b0bpass" });
  await using a = serveEcho({
    port: 0,
    mode: "chat",
    redis: redis.url,
    chatUsers,
    workers: 2,
  });
  await using b = serveEcho({
    port: 0,
    mode: "chat",
    redis: redis.url,
    chatUsers,
  });
  await Promise.all([a.ready, b.ready]);
  await using alice = await chatClient(a.addr.port);
  await using bob = await chatClient(b.addr.port);
  await alice.send("/login alice pa55word\nhi from alice\n");
  await bob.line(/^<alice> hi from alice$/);
  await bob.send("/login bob b0bpass\n/whois alice\n");
  await bob.line(/^\* alice: in lobby since .*, logged in$/);
  await alice.line(/^\* user\d+ is now bob$/);
  const socket = redis.url.replace(/^unix:\/\//, "");
  const stream = await run("redis-cli", [
    "-s",
    socket,
    "--raw",
    "XRANGE",
    "tcp-echo:stream",
    "-",
    "+",
  ]);
  const entries = new TextDecoder().decode(stream.stdout);
  assert.match(entries, /hi from alice/);
  assert.ok(!/pa55word|b0bpass/.test(entries), "a password reached Redis");
  await using late = await chatClient(a.addr.port);
  await late.send("/who\n");
  await late.line(/^\* in lobby \(3\)/);
  assert.ok(!late.lines.some((l) => /pa55word|b0bpass/.test(l)));
});

Deno.test("server --add-user writes the users file from stdin (0600), --chat-users serves it, SIGHUP reads it again; errors are one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/users`;
    const add = (name: string, password: string) =>
      run(Deno.execPath(), [
        ...["run", LOCK, "--allow-read", "--allow-write", SERVER],
        ...["--chat-users", file, "--add-user", name],
      ], new TextEncoder().encode(`${password}\n`));
    const added = await add("alice", "first");
    assert.equal(added.code, 0, added.stderr);
    assert.equal(
      new TextDecoder().decode(added.stdout),
      `Added alice to ${file} (1 registered)\n`,
    );
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    await using server = new Spawned(Deno.execPath(), [
      ...["run", LOCK, "--allow-net", "--allow-read", SERVER],
      ...["--port", "0", "--mode", "chat", "--chat-users", file],
    ]);
    const port = Number(
      (await server.stdout.waitFor(/^Listening on /)).split(":").pop(),
    );
    const changed = await add("alice", "second");
    assert.equal(
      new TextDecoder().decode(changed.stdout),
      `Changed the password of alice in ${file}\n`,
    );
    server.child.kill("SIGHUP");
    await server.stderr.waitFor(/Reloaded the chat users: 1 registered/);
    await using alice = await chatClient(port);
    await alice.send("/login alice second\n");
    await alice.line(/^\* logged in as alice$/);
    const text = await Deno.readTextFile(file);
    assert.ok(!text.includes("second") && !text.includes("first"));
    const bad = await add("not a name", "x");
    assert.equal(bad.code, 1);
    assert.equal(
      bad.stderr.trim(),
      'error: Cannot add not a name: "not a name" is not a chat name',
    );
    await Deno.writeTextFile(`${dir}/broken`, "alice:plain\n");
    const broken = await run(Deno.execPath(), [
      ...["run", LOCK, "--allow-net", "--allow-read", SERVER],
      ...["--port", "0", "--mode", "chat", "--chat-users", `${dir}/broken`],
    ]);
    assert.equal(broken.code, 2);
    assert.match(
      broken.stderr.trim(),
      /^error: Invalid --chat-users: line 1 has no scrypt hash of ours .*\(see --help\)$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
