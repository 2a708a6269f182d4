// Chat's files between members: tickets and file names free of I/O; offers
// to clients that cannot take files (nc); the file listener's refusals; a
// 50 MiB file between two interactive clients (processes), verified and
// resumed after the receiver is killed mid-way; a hostile file name; and
// transfers across workers and across instances through a real Redis.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createCertificates, serveEcho } from "../mod.ts";
import {
  parsePreface,
  prefaceOf,
  refusal,
  sign,
  type Transfer,
} from "../lib/files/ticket.ts";
import { FileAgent, fileEvents, safeFileName } from "../lib/cli/chat_files.ts";
import {
  chatClient,
  LineClient,
  pseudoRandomBytes,
  readAll,
  readExactly,
  tempDir,
  writeAll,
} from "./_helpers.ts";
import { CLIENT, LOCK, ROOT, run, Spawned, writeStdin } from "./_process.ts";
import { hashPassword } from "../lib/relay/chat_users.ts";
import { startRedis } from "./_redis.ts";
import { engineTest } from "./_engines.ts";

const encoder = new TextEncoder();

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

Deno.test("a ticket lets in only the transfer it was signed for, until it expires", () => {
  const secret = new Uint8Array(32).fill(7);
  const transfer: Transfer = {
    id: "f3",
    attempt: 2,
    side: "get",
    offset: 100,
    size: 5000,
    until: 1_000_000,
  };
  const token = sign(secret, transfer);
  const line = prefaceOf(transfer, token);
  assert.equal(line, `tcp-echo-file/1 f3 2 get 100 5000 1000000 ${token}`);
  const parsed = parsePreface(line);
  assert.ok("transfer" in parsed);
  assert.deepEqual(parsed.transfer, transfer);
  assert.equal(refusal(secret, transfer, token, 999_999), undefined);
  assert.equal(
    refusal(secret, transfer, token, 1_000_001),
    "an expired ticket: /accept again",
  );
  for (
    const changed of [
      { offset: 0 },
      { side: "put" as const },
      { attempt: 1 },
      { size: 5001 },
      { until: 2_000_000 },
      { id: "f4" },
    ]
  ) {
    assert.equal(
      refusal(secret, { ...transfer, ...changed }, token, 0),
      "a ticket this server did not sign",
      JSON.stringify(changed),
    );
  }
  assert.equal(
    refusal(new Uint8Array(32), transfer, token, 0),
    "a ticket this server did not sign",
  );
  for (
    const [bad, error] of [
      ["GET / HTTP/1.1", "not a file transfer"],
      ["tcp-echo-file/1 f1 1 get 0 10", "a malformed ticket"],
      [`tcp-echo-file/1 f1 1 del 0 10 1 ${token}`, "a malformed ticket"],
      [`tcp-echo-file/1 x1 1 get 0 10 1 ${token}`, "a malformed ticket"],
      [`tcp-echo-file/1 f1 1 get 11 10 1 ${token}`, "a malformed ticket"],
      [`tcp-echo-file/1 f1 1 get -1 10 1 ${token}`, "a malformed ticket"],
      [`tcp-echo-file/1 f1 1 get 0 10 1 short`, "a malformed ticket"],
    ]
  ) {
    assert.deepEqual(parsePreface(bad), { error }, bad);
  }
});

Deno.test("received files are named inside the download folder, whatever the offer says", () => {
  const cases: [string, string][] = [
    ["report.pdf", "report.pdf"],
    ["../../etc/passwd", "passwd"],
    ["..\\..\\windows\\win.ini", "win.ini"],
    ["..", "file"],
    [".", "file"],
    ["", "file"],
    ["/", "file"],
    [".bashrc", "bashrc"],
    ["a\u0000b\u001b[31mc", "a_b_[31mc"],
    ['con:"x"|?*.txt', "con__x____.txt"],
    ["é".repeat(150), "é".repeat(100)],
  ];
  for (const [name, safe] of cases) {
    assert.equal(safeFileName(name), safe, JSON.stringify(name));
  }
});

/** A chat client that takes files, speaking the protocol by hand. */
async function filesClient(port: number, name: string): Promise<LineClient> {
  const client = await chatClient(port, name);
  await client.send("/caps files\n");
  await client.line(/^\{"type":"caps","files":true/);
  return client;
}

/** The JSON object of the last line of `client` matching `pattern`. */
async function objectOf(
  client: LineClient,
  pattern: RegExp,
): Promise<Record<string, unknown>> {
  await client.line(pattern);
  const line = client.lines.findLast((l) => pattern.test(l))!;
  return JSON.parse(line);
}

/** The ticket of a `file-put` or `file-get` event, as a first line. */
function prefaceFor(event: Record<string, unknown>, side: "put" | "get") {
  const transfer = {
    id: event.id as string,
    attempt: event.attempt as number,
    side,
    offset: event.offset as number,
    size: event.size as number,
    until: event.until as number,
  };
  return encoder.encode(`${prefaceOf(transfer, event.token as string)}\n`);
}

/** Sends `bytes` from the event's offset, as a sender's client does. */
async function put(
  event: Record<string, unknown>,
  bytes: Uint8Array,
  port = event.port as number,
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, prefaceFor(event, "put"));
  await writeAll(conn, bytes.subarray(event.offset as number));
  await conn.closeWrite();
  try {
    return new TextDecoder().decode(await readAll(conn));
  } finally {
    conn.close();
  }
}

/** Gets the bytes of a `file-get` event: the answer line, then the bytes. */
async function get(
  event: Record<string, unknown>,
  port = event.port as number,
): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, prefaceFor(event, "get"));
  await conn.closeWrite();
  try {
    return await readAll(conn);
  } finally {
    conn.close();
  }
}

/** Offers `bytes` from `from` to `to` (both filesClients); the two tickets. */
async function offerAndAccept(
  from: LineClient,
  to: LineClient,
  toName: string,
  bytes: Uint8Array,
  fileName = "data.bin",
): Promise<[Record<string, unknown>, Record<string, unknown>]> {
  await from.send(
    `/offer ${toName} ${bytes.length} ${sha256(bytes)} ${fileName}\n`,
  );
  const offer = await objectOf(to, /^\{"type":"file-offer"/);
  assert.equal(offer.receivable, true);
  assert.equal(offer.sha256, sha256(bytes));
  await to.send(`/accept ${offer.id}\n`);
  return [
    await objectOf(from, /^\{"type":"file-put"/),
    await objectOf(to, /^\{"type":"file-get"/),
  ];
}

Deno.test("a client that cannot take files (nc) hears of the offer and why, and the sender is told; limits and bad offers are refused", async () => {
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    maxFileBytes: 1000,
  });
  await server.ready;
  const { port } = server.addr;
  await using alice = await filesClient(port, "alice");
  await using nc = await chatClient(port, "carol");
  const hash = "ab".repeat(32);
  await alice.send(`/offer carol 10 ${hash} notes.txt\n`);
  await nc.line(
    /^\* alice offers notes\.txt \(10 bytes\), but your client cannot take files: our interactive client can \(deno task client -i\)$/,
  );
  await alice.line(/^ERR carol's client cannot take files; nothing offered$/);
  await nc.send(`/offer alice 10 ${hash} x\n`);
  await nc.line(
    /^ERR your client cannot send files: our interactive client can/,
  );
  await using bob = await filesClient(port, "bob");
  for (
    const [line, error] of [
      [
        `/offer bob 1001 ${hash} big.iso`,
        "big.iso is 1001 bytes, over this server's limit of 1000 (--max-file-bytes)",
      ],
      [`/offer dave 10 ${hash} x`, "no such user: dave"],
      [`/offer alice 10 ${hash} x`, "you cannot send a file to yourself"],
      [`/offer bob 10 abc x`, "usage: /offer NAME SIZE SHA256 FILENAME"],
      ["/accept f99", "no such offer: f99"],
      ["/accept nonsense", "usage: /accept ID [OFFSET]"],
    ]
  ) {
    await alice.send(`${line}\n`);
    await alice.until((lines) => lines.includes(`ERR ${error}`));
  }
  // An offer answered: rejected, both sides told.
  await alice.send(`/offer bob 10 ${hash} a.txt\n`);
  const offer = await objectOf(bob, /^\{"type":"file-offer"/);
  await alice.send(`/accept ${offer.id} 11\n`);
  await alice.line(new RegExp(`^ERR ${offer.id} is your own offer$`));
  await bob.send(`/accept ${offer.id} 11\n`);
  await bob.line(/^ERR usage: \/accept ID \[OFFSET\] \(OFFSET: 0 to 10,/);
  await bob.send(`/reject ${offer.id}\n`);
  const end = await objectOf(alice, /^\{"type":"file-end"/);
  assert.equal(end.result, "rejected");
  await bob.line(/^\{"type":"file-end".*"result":"rejected"/);
  await bob.send(`/accept ${offer.id}\n`);
  await bob.line(new RegExp(`^ERR no such offer: ${offer.id}$`));
});

engineTest(
  "the file listener refuses what is not a ticket it signed, with one ERR line each",
  async (engine) => {
    await using server = serveEcho({ port: 0, mode: "chat", engine });
    await server.ready;
    const { port } = server.addr;
    await using alice = await filesClient(port, "alice");
    await using bob = await filesClient(port, "bob");
    const bytes = pseudoRandomBytes(1000);
    const [putEvent, getEvent] = await offerAndAccept(alice, bob, "bob", bytes);
    const filePort = putEvent.port as number;
    const answer = async (first: string) => {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: filePort,
      });
      await writeAll(conn, encoder.encode(first));
      try {
        return new TextDecoder().decode(await readAll(conn));
      } finally {
        conn.close();
      }
    };
    assert.equal(await answer("hello\n"), "ERR not a file transfer\n");
    assert.equal(await answer("x".repeat(300)), "ERR a first line too long\n");
    const forged = new TextDecoder().decode(prefaceFor(getEvent, "get"))
      .replace(" get 0 ", " get 1 ");
    assert.equal(
      await answer(forged),
      "ERR a ticket this server did not sign\n",
    );
    // The real tickets still work, in either order.
    const [got, said] = await Promise.all([
      get(getEvent),
      put(putEvent, bytes),
    ]);
    assert.equal(said, "OK\nDONE\n");
    assert.deepEqual(
      got,
      new Uint8Array([...encoder.encode("OK\n"), ...bytes]),
    );
    assert.deepEqual(server.stats.chatFiles, { done: 1, failed: 0 });
    assert.equal(server.stats.chatFileBytes, 1000);
  },
);

/** Our interactive client as a process: its input closed before it is killed. */
class Interactive extends Spawned {
  override async [Symbol.asyncDispose](): Promise<void> {
    await this.child.stdin.close().catch(() => {});
    await super[Symbol.asyncDispose]();
  }
}

/** Our interactive client, as a process, saving into `downloads`. */
function interactive(port: number, downloads: string): Interactive {
  return clientProcess(port, ["-i", "--download-dir", downloads]);
}

/** The client CLI on `port` with `args` and its input piped, in `cwd`. */
function clientProcess(
  port: number,
  args: string[],
  cwd?: string,
): Interactive {
  return new Interactive(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", "--allow-read", "--allow-write", CLIENT],
    ...["--port", String(port), ...args],
  ], { stdin: "piped", cwd });
}

/** Resolves once a `.part` file in `dir` holds at least `bytes`. */
async function partReaches(dir: string, bytes: number): Promise<number> {
  using watcher = Deno.watchFs(dir);
  const timer = setTimeout(() => watcher.close(), 20_000);
  try {
    for await (const _ of watcher) {
      for await (const entry of Deno.readDir(dir)) {
        if (!entry.name.endsWith(".part")) continue;
        const { size } = await Deno.stat(`${dir}/${entry.name}`);
        if (size >= bytes) return size;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`no .part file in ${dir} reached ${bytes} bytes in 20 s`);
}

Deno.test("a 50 MiB file between two interactive clients: verified by SHA-256, and resumed after the receiver is killed mid-way", async () => {
  await using dir = await tempDir();
  const size = 50 * 1024 * 1024;
  const bytes = pseudoRandomBytes(size, 50);
  const path = `${dir.path}/big.bin`;
  await Deno.writeFile(path, bytes);
  const downloads = `${dir.path}/downloads`;
  await Deno.mkdir(downloads);
  // Read at 25 MB/s, so that the receiver is killed mid-way.
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    maxBytesPerSecond: 25_000_000,
  });
  await server.ready;
  const { port } = server.addr;
  await using alice = interactive(port, downloads);
  await using bob = interactive(port, downloads);
  for (const [client, name] of [[alice, "alice"], [bob, "bob"]] as const) {
    await client.stdout.waitFor(/^\* your client may send and receive files/);
    await writeStdin(client.child, `/nick ${name}\n`);
    await client.stdout.waitFor(new RegExp(`^\\* user\\d+ is now ${name}$`));
  }
  await writeStdin(alice.child, `/send bob ${path}\n`);
  const offered = await bob.stdout.waitFor(
    new RegExp(
      `^\\* alice offers big\\.bin \\(${size} bytes, SHA-256 ${
        sha256(bytes)
      }\\): /accept (f\\d+) or /reject f\\d+$`,
    ),
  );
  const id = /accept (f\d+)/.exec(offered)![1];
  await writeStdin(bob.child, `/accept ${id}\n`);
  await partReaches(downloads, 8 * 1024 * 1024);
  bob.child.kill("SIGKILL");
  await bob.status();
  await alice.stdout.waitFor(
    new RegExp(
      `^\\[file\\] ${id}: sending stopped after \\d+ of ${size} bytes: ERR the receiver went away after \\d+ bytes$`,
    ),
  );
  // Bob again, as a new process: the offer waits for his name.
  await using again = interactive(port, downloads);
  await again.stdout.waitFor(/^\* your client may send and receive files/);
  await writeStdin(again.child, "/nick bob\n");
  await again.stdout.waitFor(new RegExp(`/accept ${id} or /reject ${id}$`));
  await writeStdin(again.child, `/accept ${id}\n`);
  const resumed = await again.stdout.waitFor(
    new RegExp(`^\\[file\\] ${id}: (\\d+) of ${size} bytes are here already`),
  );
  const had = Number(/: (\d+) of/.exec(resumed)![1]);
  assert.ok(had >= 8 * 1024 * 1024 && had < size, resumed);
  await again.stdout.waitFor(
    new RegExp(
      `^\\* getting big\\.bin \\(${id}\\) from alice, from byte ${had}$`,
    ),
  );
  const saved = await again.stdout.waitFor(
    new RegExp(
      `^\\[file\\] ${id}: saved big\\.bin as (.+) \\(${size} bytes, SHA-256 verified\\)$`,
    ),
    30_000,
  );
  assert.equal(saved.split(" as ")[1].split(" (")[0], `${downloads}/big.bin`);
  await alice.stdout.waitFor(
    new RegExp(
      `^\\* bob received big\\.bin \\(${id}\\): ${size} bytes, SHA-256 verified$`,
    ),
  );
  assert.equal(
    sha256(await Deno.readFile(`${downloads}/big.bin`)),
    sha256(bytes),
  );
  const left = [];
  for await (const entry of Deno.readDir(downloads)) left.push(entry.name);
  assert.deepEqual(left, ["big.bin"]);
  assert.deepEqual(server.stats.chatFiles, { done: 1, failed: 1 });
  assert.ok(server.stats.chatFileBytes >= size);
});

Deno.test("a file offered as ../../etc/passwd is saved as passwd in the download folder", async () => {
  await using dir = await tempDir();
  const downloads = `${dir.path}/in/downloads`;
  await using server = serveEcho({ port: 0, mode: "chat" });
  await server.ready;
  const { port } = server.addr;
  await using mallory = await filesClient(port, "mallory");
  await using bob = interactive(port, downloads);
  await bob.stdout.waitFor(/^\* your client may send and receive files/);
  await writeStdin(bob.child, "/nick bob\n");
  await bob.stdout.waitFor(/is now bob$/);
  const bytes = encoder.encode("root:x:0:0:root:/root:/bin/bash\n");
  await mallory.send(
    `/offer bob ${bytes.length} ${sha256(bytes)} ../../etc/passwd\n`,
  );
  const offer = await bob.stdout.waitFor(
    /^\* mallory offers \.\.\/\.\.\/etc\/passwd /,
  );
  const id = /accept (f\d+)/.exec(offer)![1];
  await writeStdin(bob.child, `/accept ${id}\n`);
  const event = await objectOf(mallory, /^\{"type":"file-put"/);
  assert.equal(await put(event, bytes), "OK\nDONE\n");
  await bob.stdout.waitFor(
    new RegExp(
      `^\\[file\\] ${id}: saved \\.\\./\\.\\./etc/passwd as ${downloads}/passwd \\(`,
    ),
  );
  assert.deepEqual(await Deno.readFile(`${downloads}/passwd`), bytes);
  await assert.rejects(Deno.lstat(`${dir.path}/etc`), Deno.errors.NotFound);
  await assert.rejects(Deno.lstat(`${dir.path}/in/etc`), Deno.errors.NotFound);
  await mallory.line(/^\{"type":"file-end".*"result":"received"/);
});

Deno.test("a transfer across workers: the file listener serves every worker's clients", async () => {
  await using server = serveEcho({ port: 0, mode: "chat", workers: 2 });
  await server.ready;
  const { port } = server.addr;
  // Enough clients that some land on each worker.
  const clients: LineClient[] = [];
  for (let i = 0; i < 6; i++) clients.push(await filesClient(port, `u${i}`));
  try {
    const bytes = pseudoRandomBytes(3 * 1024 * 1024, 3);
    for (let i = 0; i < 6; i += 2) {
      const [putEvent, getEvent] = await offerAndAccept(
        clients[i],
        clients[i + 1],
        `u${i + 1}`,
        bytes,
      );
      const [got] = await Promise.all([get(getEvent), put(putEvent, bytes)]);
      assert.equal(sha256(got.subarray(3)), sha256(bytes));
    }
    assert.deepEqual(server.stats.chatFiles, { done: 3, failed: 0 });
  } finally {
    for (const client of clients) await client[Symbol.asyncDispose]();
  }
});

Deno.test("a transfer across instances goes through Redis in bounded chunks, each client at its own instance's file listener", async () => {
  await using redis = await startRedis();
  await using a = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await using b = serveEcho({ port: 0, mode: "chat", redis: redis.url });
  await Promise.all([a.ready, b.ready]);
  await using alice = await filesClient(a.addr.port, "alice");
  await using bob = await filesClient(b.addr.port, "bob");
  const bytes = pseudoRandomBytes(5 * 1024 * 1024 + 7, 5);
  const [putEvent, getEvent] = await offerAndAccept(alice, bob, "bob", bytes);
  assert.notEqual(putEvent.port, getEvent.port);
  const [got, said] = await Promise.all([get(getEvent), put(putEvent, bytes)]);
  assert.equal(said, "OK\nDONE\n");
  assert.equal(sha256(got.subarray(3)), sha256(bytes));
  await bob.send(`/done ${getEvent.id} ok\n`);
  await alice.line(/^\{"type":"file-end".*"result":"received"/);
  assert.deepEqual(b.stats.chatFiles, { done: 1, failed: 0 });
  assert.equal(b.stats.chatFileBytes, bytes.length);
  assert.deepEqual(a.stats.chatFiles, { done: 0, failed: 0 });
});

/** The two terminals of docs/chat.md's session: each command, and its lines. */
function docSession(name: string): { args: string[]; lines: string[] } {
  const doc = Deno.readTextFileSync(`${ROOT}docs/chat.md`);
  const block = new RegExp(
    `<!-- files session: ${name}: (.*) -->\\n\\n\`\`\`text\\n([^]*?)\\n\`\`\``,
  ).exec(doc);
  assert.ok(block, `docs/chat.md has no session for ${name}`);
  return { args: block[1].split(" "), lines: block[2].split("\n") };
}

/**
 * Types each line of `lines` that starts with `/` once every line before
 * it has been printed, and checks that the others are printed, in order.
 */
async function play(client: Spawned, lines: string[]): Promise<void> {
  let printed = 0;
  for (const line of lines) {
    if (line.startsWith("/")) {
      await writeStdin(client.child, `${line}\n`);
      continue;
    }
    const pattern = new RegExp(
      `^${
        line.split("[..]").map((part) =>
          part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
        ).join(".*")
      }$`,
    );
    const seen = await client.stdout.waitFor(pattern).catch((error) => {
      throw new Error(`${error.message}\nstderr: ${client.stderr.text}`);
    });
    assert.equal(
      client.stdout.lines.indexOf(seen),
      printed++,
      `"${line}" came out of order:\n${client.stdout.text}`,
    );
  }
}

Deno.test("docs/chat.md's session runs as shown: a login, a private line, and a file checked by its SHA-256", async () => {
  await using dir = await tempDir();
  const bytes = pseudoRandomBytes(40960, 40);
  await Deno.writeFile(`${dir.path}/report.pdf`, bytes);
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    chatUsers: `alice:${await hashPassword("s3cret")}\n`,
  });
  await server.ready;
  const spawn = (args: string[]) =>
    clientProcess(server.addr.port, args, dir.path);
  const alice = docSession("alice");
  const bob = docSession("bob");
  await using aliceClient = spawn(alice.args);
  const alicePlays = play(aliceClient, alice.lines);
  alicePlays.catch(() => {}); // Awaited below, with bob's.
  // Bob comes once alice has logged in, as in the doc.
  await aliceClient.stdout.waitFor(/^\* logged in as alice$/);
  await using bobClient = spawn(bob.args);
  await Promise.all([alicePlays, play(bobClient, bob.lines)]);
  assert.deepEqual(
    await Deno.readFile(`${dir.path}/downloads/report.pdf`),
    bytes,
  );
});

/** What `fileEvents` lets through of `bytes` cut in pieces of `size`. */
async function throughFileEvents(
  bytes: Uint8Array,
  size: number,
): Promise<{ out: Uint8Array; chats: number; events: string[] }> {
  const events: string[] = [];
  const agent = new FileAgent({
    dial: () => Promise.reject(new Error("no dialing here")),
    downloadDir: ".",
    send: () => Promise.resolve(),
    print: () => Promise.resolve(),
  });
  agent.event = (event) => events.push(event.type);
  let chats = 0;
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    pieces.push(bytes.slice(i, i + size));
  }
  const out = new Uint8Array(
    await new Response(
      ReadableStream.from(pieces).pipeThrough(fileEvents(agent, () => chats++)),
    ).arrayBuffer(),
  );
  return { out, chats, events };
}

Deno.test("the interactive client's file events: a chat's are taken and read as text (or JSON in a JSON session), and any other server's bytes go through untouched", async () => {
  // Not chat: every byte as it came, invalid UTF-8 too.
  const binary = new Uint8Array([0x2a, 0x20, 0x77, 0xff, 0xfe, 0x0a, 0x7b, 0]);
  for (const size of [1, 3, binary.length]) {
    const { out, chats } = await throughFileEvents(binary, size);
    assert.deepEqual(out, binary);
    assert.equal(chats, 0);
  }
  const offer =
    '{"type":"file-offer","id":"f1","from":"ann","name":"a.txt","size":3,"sha256":"00","receivable":true,"ts":"x"}';
  const text = encoder.encode(
    `* welcome, you are user1; /help lists the commands\n${offer}\n<ann> {not json\n`,
  );
  const json = encoder.encode(
    `{"type":"welcome","name":"user1","note":null,"login":false,"ts":"x"}\n${offer}\n`,
  );
  for (const size of [1, 5, 200]) {
    const t = await throughFileEvents(text, size);
    assert.equal(t.chats, 1);
    assert.deepEqual(t.events, ["file-offer"]);
    assert.equal(
      new TextDecoder().decode(t.out),
      "* welcome, you are user1; /help lists the commands\n" +
        "* ann offers a.txt (3 bytes, SHA-256 00): /accept f1 or /reject f1\n" +
        "<ann> {not json\n",
    );
    const j = await throughFileEvents(json, size);
    assert.equal(j.chats, 1);
    assert.deepEqual(j.events, ["file-offer"]);
    assert.deepEqual(j.out, json);
  }
});

Deno.test("over TLS the file listener speaks TLS with the chat listener's certificate", async () => {
  const certs = await createCertificates({ names: ["localhost"] });
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    cert: certs.cert,
    key: certs.key,
  });
  await server.ready;
  const connect = (port: number) =>
    Deno.connectTls({ hostname: "localhost", port, caCerts: [certs.caCert] });
  const tlsClient = async (name: string) => {
    const client = new LineClient(await connect(server.addr.port));
    await client.line(/^\* welcome, you are /);
    await client.send(`/nick ${name}\n/caps files\n`);
    await client.line(/^\{"type":"caps","files":true/);
    return client;
  };
  await using alice = await tlsClient("alice");
  await using bob = await tlsClient("bob");
  const bytes = pseudoRandomBytes(300_000, 9);
  const [putEvent, getEvent] = await offerAndAccept(alice, bob, "bob", bytes);
  const exchange = async (
    event: Record<string, unknown>,
    side: "put" | "get",
  ) => {
    const conn = await connect(event.port as number);
    try {
      await writeAll(conn, prefaceFor(event, side));
      if (side === "put") await writeAll(conn, bytes);
      await conn.closeWrite();
      return await readAll(conn);
    } finally {
      conn.close();
    }
  };
  const [got, said] = await Promise.all([
    exchange(getEvent, "get"),
    exchange(putEvent, "put"),
  ]);
  assert.equal(new TextDecoder().decode(said), "OK\nDONE\n");
  assert.equal(sha256(got.subarray(3)), sha256(bytes));
  // In clear, the file listener is not spoken to.
  const plain = await Deno.connect({
    hostname: "127.0.0.1",
    port: putEvent.port as number,
  });
  await writeAll(plain, prefaceFor(getEvent, "get"));
  const answer = await readAll(plain).catch(() => new Uint8Array());
  plain.close();
  assert.ok(!new TextDecoder().decode(answer).startsWith("OK"));
});

for (const cluster of [false, true]) {
  Deno.test(
    `a receiver that does not read holds its sender back${
      cluster ? ", through Redis with 16 chunks at most in the stream" : ""
    }: the server reads a sender no faster than it delivers`,
    async () => {
      await using redis = cluster ? await startRedis() : undefined;
      await using server = serveEcho({
        port: 0,
        mode: "chat",
        redis: redis?.url,
      });
      await server.ready;
      const { port } = server.addr;
      await using alice = await filesClient(port, "alice");
      await using bob = await filesClient(port, "bob");
      const size = 64 * 1024 * 1024;
      await alice.send(`/offer bob ${size} ${"0".repeat(64)} big.bin\n`);
      const offer = await objectOf(bob, /^\{"type":"file-offer"/);
      await bob.send(`/accept ${offer.id}\n`);
      const putEvent = await objectOf(alice, /^\{"type":"file-put"/);
      const getEvent = await objectOf(bob, /^\{"type":"file-get"/);
      const filePort = putEvent.port as number;
      // The receiver asks, and then reads nothing.
      const idle = await Deno.connect({
        hostname: "127.0.0.1",
        port: filePort,
      });
      await writeAll(idle, prefaceFor(getEvent, "get"));
      const sender = await Deno.connect({
        hostname: "127.0.0.1",
        port: filePort,
      });
      await writeAll(sender, prefaceFor(putEvent, "put"));
      assert.equal(
        new TextDecoder().decode(await readExactly(sender, 3)),
        "OK\n",
      );
      // Bounded: 64 writes of 1 MiB at most; once the kernel's buffers and
      // the hop's window are full, a write stops completing.
      const chunk = new Uint8Array(1024 * 1024);
      let sent = 0;
      let stalled: Promise<void> | undefined;
      for (; sent < 64; sent++) {
        const { promise, resolve } = Promise.withResolvers<boolean>();
        const timer = setTimeout(() => resolve(false), 1000);
        const write = writeAll(sender, chunk);
        write.then(() => resolve(true), () => resolve(false));
        const done = await promise;
        clearTimeout(timer);
        if (!done) {
          stalled = write.catch(() => {});
          break;
        }
      }
      assert.ok(sent < 32, `${sent} MiB went: nothing held the sender back`);
      if (redis !== undefined) {
        const socket = redis.url.replace(/^unix:\/\//, "");
        const keys = await run("redis-cli", [
          ...["-s", socket, "--raw", "KEYS", "tcp-echo:file:*:data"],
        ]);
        const [key] = new TextDecoder().decode(keys.stdout).trim().split("\n");
        const length = await run("redis-cli", [
          ...["-s", socket, "--raw", "XLEN", key],
        ]);
        const chunks = Number(new TextDecoder().decode(length.stdout));
        assert.ok(chunks >= 1 && chunks <= 16, `${chunks} chunks in ${key}`);
      }
      // The receiver goes: the sender is told.
      idle.close();
      // The server reads (and drops) what the sender still sends a while
      // after its answer, so that the answer is not lost to a reset.
      const said = new TextDecoder().decode(await readAll(sender));
      sender.close();
      await stalled;
      assert.match(said, /^ERR the receiver went away after \d+ bytes\n$/);
      await bob.send(`/reject ${offer.id}\n`);
      await alice.line(/^\{"type":"file-end".*"result":"rejected"/);
    },
  );
}

Deno.test("the access rules hold at the file listener too: a denied address is closed before a byte is read", async () => {
  // Both listeners on every address; ::1 denied, 127.0.0.1 let in.
  await using server = serveEcho({
    hostname: "::",
    port: 0,
    mode: "chat",
    deny: ["::1"],
  });
  await server.ready;
  const { port } = server.addr;
  await using alice = await filesClient(port, "alice");
  await using bob = await filesClient(port, "bob");
  const bytes = pseudoRandomBytes(1000, 2);
  const [putEvent, getEvent] = await offerAndAccept(alice, bob, "bob", bytes);
  const denied = await Deno.connect({
    hostname: "::1",
    port: getEvent.port as number,
  });
  await writeAll(denied, prefaceFor(getEvent, "get")).catch(() => {});
  const answer = await readAll(denied).catch(() => new Uint8Array());
  denied.close();
  assert.equal(answer.length, 0);
  const [got] = await Promise.all([get(getEvent), put(putEvent, bytes)]);
  assert.equal(sha256(got.subarray(3)), sha256(bytes));
});
