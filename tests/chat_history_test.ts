// Chat history that survives restarts (historyFile): read back at start,
// every room's, with /history N; a torn last line and a line that is not an
// entry skipped and logged; the file rewritten smaller as it grows.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { HistoryFile, parseHistory } from "../lib/relay/chat_history.ts";
import { captureLogs, chatClient, LineClient } from "./_helpers.ts";

const encoder = new TextEncoder();

const TS = "2026-12-07T00:00:00.000Z";
const said = (room: string, from: string, text: string) =>
  ({ type: "message", room, from, text, ts: TS }) as const;
const entry = (room: string, from: string, text: string) =>
  `${JSON.stringify(said(room, from, text))}\n`;

Deno.test("parseHistory keeps each room's last lines, and names what it skips: a line that is not JSON, one that is no entry, a torn tail", () => {
  const text = entry("lobby", "a", "1") + "garbage\n" + entry("den", "b", "x") +
    '{"room":1}\n' + entry("lobby", "a", "2") + entry("lobby", "a", "3") +
    '{"room":"lobby","li';
  const parsed = parseHistory(encoder.encode(text), 2);
  assert.deepEqual(Object.fromEntries(parsed.rooms), {
    lobby: [said("lobby", "a", "2"), said("lobby", "a", "3")],
    den: [said("den", "b", "x")],
  });
  assert.deepEqual(parsed.skipped, [
    { line: 2, reason: "not JSON" },
    { line: 4, reason: "not a history entry" },
    { line: 7, reason: "torn (19 bytes without a newline)" },
  ]);
  assert.equal(parsed.whole, text.length - 19);
  assert.equal(parsed.entries, 4);
});

Deno.test("a restart keeps every room's history: a newcomer gets the lobby's last lines, /join den gets den's, /history N more", async () => {
  const dir = await Deno.makeTempDir();
  const historyFile = `${dir}/history.jsonl`;
  try {
    {
      await using server = serveEcho({
        port: 0,
        mode: "chat",
        history: 2,
        historyFile,
        historySync: "always",
      });
      await server.ready;
      await using alice = await chatClient(server.addr.port, "alice");
      await alice.send("one\ntwo\nthree\n/join den\nin the den\n");
      await alice.line(/^<alice> in the den$/);
      await server.shutdown();
    }
    await using server = serveEcho({
      port: 0,
      mode: "chat",
      history: 2,
      historyFile,
    });
    await server.ready;
    await using bob = await LineClient.connect(server.addr.port);
    await bob.line(/^\* user1 joined lobby$/);
    assert.deepEqual(bob.lines.slice(1, 3), ["<alice> two", "<alice> three"]);
    await bob.send("/history 10\n/join den\n/history 0\n");
    await bob.line(/^\* the last 3 lines of lobby:$/);
    await bob.line(/^\* user1 joined den$/);
    await bob.line(/^ERR usage: \/history N \(1 to 50\)$/);
    const i = bob.lines.indexOf("* the last 3 lines of lobby:");
    assert.deepEqual(bob.lines.slice(i + 1, i + 4), [
      "<alice> one",
      "<alice> two",
      "<alice> three",
    ]);
    assert.ok(bob.lines.includes("<alice> in the den"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a torn history file: the torn line is skipped and logged, never a crash; the file is cut to whole lines and goes on", async () => {
  const logs = await captureLogs();
  const dir = await Deno.makeTempDir();
  const historyFile = `${dir}/history.jsonl`;
  try {
    await Deno.writeTextFile(
      historyFile,
      entry("lobby", "a", "kept") + 'not json\n{"room":"lobby","line":"<a> to',
    );
    {
      await using server = serveEcho({ port: 0, mode: "chat", historyFile });
      await server.ready;
      await using c = await LineClient.connect(server.addr.port);
      await c.line(/^\* user1 joined lobby$/);
      assert.equal(c.lines[1], "<a> kept");
      await c.send("after\n");
      await c.line(/^<user1> after$/);
    }
    const warnings = logs.records.filter((r) => r.level === "warning")
      .map((r) => r.properties.message);
    assert.deepEqual(warnings, [
      `${historyFile}: skipped line 2, not JSON`,
      `${historyFile}: skipped line 3, torn (30 bytes without a newline)`,
    ]);
    const lines = (await Deno.readTextFile(historyFile)).split("\n");
    assert.equal(lines.pop(), "");
    assert.equal(lines.length, 3);
    const last = JSON.parse(lines[2]);
    assert.deepEqual(
      { ...last, ts: "" },
      { type: "message", room: "lobby", from: "user1", text: "after", ts: "" },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the history file is rewritten with only what is kept once it grows 10,000 lines past it", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/history.jsonl`;
  try {
    const file = HistoryFile.open({
      path,
      sync: "never",
      keep: 5,
      warn: (message) => assert.fail(message),
    });
    for (let i = 0; i < 10_010; i++) file.append(said("lobby", "a", `${i}`));
    file.close();
    const text = await Deno.readTextFile(path);
    const count = text.split("\n").length - 1;
    assert.ok(count < 100, `${count} lines`);
    const parsed = parseHistory(encoder.encode(text), 5);
    assert.deepEqual(
      parsed.rooms.get("lobby"),
      [10005, 10006, 10007, 10008, 10009].map((i) =>
        said("lobby", "a", `${i}`)
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("historyFile and historySync are checked: chat mode only, a usable file, a known policy", () => {
  assert.throws(
    () => serveEcho({ port: 0, mode: "echo", historyFile: "/tmp/x" }),
    /historyFile: keeps chat history only/,
  );
  assert.throws(
    () =>
      serveEcho({
        port: 0,
        mode: "chat",
        historyFile: "/tmp/x",
        historySync: "sometimes" as "never",
      }),
    /historySync/,
  );
  assert.throws(
    () =>
      serveEcho({
        port: 0,
        mode: "chat",
        historyFile: "/nonexistent-dir/history",
      }),
    /historyFile: cannot use \/nonexistent-dir\/history/,
  );
});
