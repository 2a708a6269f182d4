// Chat's JSON protocol: every type of object the server sends, checked
// against the schema in docs/chat-protocol.md (read from the doc itself);
// objects from the client; /protocol switching; text mode unchanged.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { ChatUsers, hashPassword } from "../lib/relay/chat_users.ts";
import { isChatName } from "../lib/relay/chat.ts";
import { type Bus, localBus } from "../lib/relay/relay.ts";
import { LineClient } from "./_helpers.ts";
import { chatRelay, member } from "./_relay.ts";
import { clientCommand, onTerminal, ROOT, run } from "./_process.ts";
import { chatJsonAsText } from "../lib/relay/chat_render.ts";

/** The schema: the first ```json block of docs/chat-protocol.md. */
function schema(): Record<string, Record<string, string>> {
  const doc = Deno.readTextFileSync(`${ROOT}docs/chat-protocol.md`);
  const block = /```json\n([^]*?)\n```/.exec(doc);
  assert.ok(block, "docs/chat-protocol.md has no ```json block");
  return JSON.parse(block[1]);
}

/** Checks `line` against `types`; returns its type. */
function check(
  types: Record<string, Record<string, string>>,
  line: string,
): string {
  const object = JSON.parse(line);
  const fields = types[object.type];
  assert.ok(fields, `a type the schema does not know: ${line}`);
  assert.deepEqual(
    Object.keys(object).sort(),
    ["type", "ts", ...Object.keys(fields)].sort(),
    line,
  );
  assert.ok(!Number.isNaN(Date.parse(object.ts)), `ts: ${line}`);
  for (const [field, kind] of Object.entries(fields)) {
    const value = object[field];
    const ok = kind === "string?"
      ? value === null || typeof value === "string"
      : kind === "string[]"
      ? Array.isArray(value) && value.every((v) => typeof v === "string")
      : kind === "room[]"
      ? Array.isArray(value) &&
        value.every((r) =>
          typeof r.name === "string" && typeof r.members === "number" &&
          Object.keys(r).length === 2
        )
      : (typeof value as string) === kind;
    assert.ok(ok, `${field} is not ${kind}: ${line}`);
  }
  return object.type;
}

const encoder = new TextEncoder();

Deno.test("every type of object chat sends matches the documented schema, and the schema has no type it never sends", async () => {
  const types = schema();
  const users = new ChatUsers(
    `alice:${await hashPassword("s3cret-pw")}\n`,
    isChatName,
  );
  const relay = chatRelay(localBus(), true, {
    protocol: "json",
    users,
    failureDelayMs: 1,
    // Tickets as a file desk makes them (lib/files/desk.ts), unsigned.
    files: {
      maxBytes: 1000,
      tickets: { ticket: () => ({ port: 1, until: 2, token: "t" }) },
    },
  });
  const a = member("127.0.0.1:1");
  const b = member("127.0.0.1:2");
  const say = (m: typeof a, ...lines: string[]) =>
    relay.submit(m, lines.map((l) => encoder.encode(`${l}\n`)));
  relay.join(a);
  relay.join(b);
  await relay.idle();
  await say(a, "hello", "/me waves", "/nick ann", "/who", "/rooms");
  await say(a, "/whois ann", "/help", "/history 1", "/join lobby", "/bogus");
  await say(a, "/msg user2 psst", "/protocol json");
  // A file, offered, accepted and received.
  await say(a, "/caps files");
  await say(b, "/caps files");
  await say(a, `/offer user2 10 ${"ab".repeat(32)} notes.txt`);
  await say(b, "/accept f1", "/done f1 ok");
  await relay.announce("maintenance");
  // A login, then the same user from elsewhere; a certificate's claim.
  // A login in an object is checked at the door, as one typed.
  await say(b, '{"type":"command","command":"/login alice s3cret-pw"}');
  await say(a, "/login alice s3cret-pw");
  const c = member("127.0.0.1:3", "ann-cert");
  await say(b, "/nick ann-cert");
  relay.join(c);
  await relay.idle();
  await say(c, "/join den", "/quit");
  await relay.idle();
  const seen = new Set<string>();
  for (const m of [a, b, c]) {
    for (const line of m.lines) seen.add(check(types, line));
  }
  assert.deepEqual([...seen].sort(), Object.keys(types).sort());
  assert.ok(
    ![...a.lines, ...b.lines, ...c.lines].some((l) => l.includes("s3cret")),
  );
  assert.ok(b.lines.some((l) => l.includes('"type":"elsewhere"')));
  await relay.close();
});

Deno.test("over TCP: --chat-protocol json from the start, objects in, /protocol text back; a text client beside it reads text", async () => {
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    chatProtocol: "json",
  });
  await server.ready;
  const { port } = server.addr;
  await using program = await LineClient.connect(port);
  const welcome = JSON.parse(await program.line(/"type":"welcome"/));
  assert.deepEqual({ ...welcome, ts: "" }, {
    type: "welcome",
    name: "user1",
    note: null,
    login: false,
    ts: "",
  });
  await using person = await LineClient.connect(port);
  await person.line(/"type":"welcome"/);
  await person.send("/protocol text\n");
  await person.line(/^\* protocol text$/);
  await program.send('{"type":"message","text":"/not a command"}\n');
  await person.line(/^<user1> \/not a command$/);
  const said = JSON.parse(await program.line(/"type":"message"/));
  assert.equal(said.text, "/not a command");
  await program.send('{"type":"command","command":"/nick bot"}\n');
  await person.line(/^\* user1 is now bot$/);
  await program.send("plain text works too\n");
  await person.line(/^<bot> plain text works too$/);
  server.announce("hello all");
  await person.line(/^\[server\] hello all$/);
  const announced = JSON.parse(await program.line(/"type":"server"/));
  assert.equal(announced.text, "hello all");
  await program.send("/protocol text\n");
  await program.line(/^\* protocol text$/);
  assert.throws(
    () => serveEcho({ port: 0, mode: "echo", chatProtocol: "json" }),
    /chatProtocol: is chat mode's/,
  );
});

Deno.test("chatJsonAsText: chat's objects read as text mode's lines, in any pieces; anything else passes as it came", async () => {
  const input = [
    '{"type":"message","room":"lobby","from":"ann","text":"hi","ts":"2026-12-07T00:00:00.000Z"}\n',
    '{"type":"rooms","rooms":[{"name":"lobby","members":2}],"total":1,"ts":"x"}\n',
    "plain line\n",
    '{"type":"unknown"}\n',
    '{"type":"whois","name":"ann","room":"","since":null,"how":"none","ts":"x"}\n',
    "a prompt without newline",
  ].join("");
  const bytes = encoder.encode(input);
  for (const size of [1, 7, bytes.length]) {
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += size) {
      pieces.push(bytes.slice(i, i + size));
    }
    const out = await new Response(
      ReadableStream.from(pieces).pipeThrough(chatJsonAsText()),
    ).text();
    assert.equal(
      out,
      "<ann> hi\n* rooms (1): lobby 2\nplain line\n" +
        '{"type":"unknown"}\n* ann: in no room, not logged in\n' +
        "a prompt without newline",
      `in pieces of ${size}`,
    );
  }
});

Deno.test("the interactive client on a terminal shows a JSON chat as text", async () => {
  await using server = serveEcho({
    port: 0,
    mode: "chat",
    chatProtocol: "json",
  });
  await server.ready;
  const terminal = onTerminal(
    ...clientCommand(["--port", String(server.addr.port)]),
  );
  const result = await run(
    terminal.command,
    terminal.args,
    encoder.encode("/who\n\x04"),
    undefined,
    terminal.env,
  );
  assert.equal(result.code, 0, result.stderr);
  const shown = new TextDecoder().decode(result.stdout);
  assert.match(
    shown,
    /\* welcome, you are user1; \/help lists the commands\r\n/,
  );
  assert.match(shown, /\* in lobby \(1\): user1\r\n/);
  assert.doesNotMatch(shown, /"type"/);
});

Deno.test("the relay's own error (a cluster that cannot take a line) reaches a JSON client as an error object", async () => {
  // A bus that takes joins but no line, as Redis away past redisHold.
  const bus: Bus = {
    publish(event) {
      if (event.t === "line") return false;
      bus.deliver?.(event);
      return true;
    },
    deliver: undefined,
  };
  const relay = chatRelay(bus, false, { protocol: "json" });
  const m = member("127.0.0.1:1");
  relay.join(m);
  await relay.submit(m, [encoder.encode("hello\n")]);
  await relay.idle();
  const error = JSON.parse(m.lines.find((l) => l.includes('"error"'))!);
  assert.equal(error.text, "cluster unavailable, line not sent");
  check(schema(), JSON.stringify(error));
  await relay.close();
});
