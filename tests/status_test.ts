// The server's --status: a line redrawn in place on a terminal (script(1)
// gives the server a pty), a log record every --status-interval off one.

import assert from "node:assert/strict";
import { echoOnce } from "../mod.ts";
import {
  assertUsageErrors,
  LOCK,
  onTerminal,
  SERVER,
  ServerProcess,
} from "./_process.ts";

Deno.test("server --status-interval off a terminal logs a status record each interval, with rates", async () => {
  await using server = await ServerProcess.start([
    ...["--status-interval", "0.2", "--log-format", "json"],
  ]);
  assert.equal(await echoOnce("hello", { port: server.port }), "hello");
  // The record whose interval saw the 5 bytes come and go.
  const line = await server.stderr.waitFor(
    /"logger":"tcp-echo.status".*"bytesInPerSecond":[1-9]/,
  );
  const record = JSON.parse(line);
  const p = record.properties;
  // Rendered as the text logs are, with the same values as its properties.
  assert.equal(
    record.message,
    `Status: 0 open, 1 accepted, ${p.bytesInPerSecond} B/s in, ${p.bytesOutPerSecond} B/s out, 0 refused, 0 dropped`,
  );
  assert.equal(p.accepted, 1);
  assert.equal(p.active, 0);
  assert.equal(p.refused, 0);
  assert.equal(p.dropped, 0);
  // 5 bytes in an interval of about 0.2 s.
  assert.ok(p.bytesInPerSecond >= 5 && p.bytesInPerSecond <= 50, line);
  assert.equal(p.bytesOutPerSecond, p.bytesInPerSecond);
});

Deno.test("server --status on a terminal redraws one line in place, and log records go above it (script(1) pty)", async () => {
  const terminal = onTerminal(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", SERVER, "--port", "0"],
    ...["--status", "--status-interval", "0.2"],
  ]);
  const child = new Deno.Command(terminal.command, {
    args: terminal.args,
    env: terminal.env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Everything the terminal showed, and waits on it.
  let shown = "";
  let waiter: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void };
  const waits: (typeof waiter)[] = [];
  const reading = (async () => {
    for await (
      const text of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      shown += text;
      for (const w of waits.splice(0)) {
        const match = shown.match(w.pattern);
        if (match) w.resolve(match);
        else waits.push(w);
      }
    }
  })();
  const until = (pattern: RegExp) =>
    new Promise<RegExpMatchArray>((resolve) => {
      const match = shown.match(pattern);
      if (match) resolve(match);
      else waits.push({ pattern, resolve });
    });
  const port = Number((await until(/Listening on 127\.0\.0\.1:(\d+)/))[1]);
  assert.equal(await echoOnce("hello", { port }), "hello");
  await until(
    new RegExp(
      `\\r127\\.0\\.0\\.1:${port}: 0 open, 1 accepted, in \\d+ B/s, out \\d+ B/s, 0 refused, 0 dropped\\x1b\\[K`,
    ),
  );
  // Ctrl+C through the terminal: SIGINT, a graceful stop.
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("\x03"));
  await writer.close();
  const { code } = await child.status;
  await reading;
  await child.stderr.cancel();
  assert.equal(code, 0, shown);
  // Without the log records' colours; "\x1b[K" (erase the line) stays.
  // deno-lint-ignore no-control-regex -- terminal output is the subject
  const plain = shown.replace(/\x1b\[[\d;]*m/g, "");
  // The "Opened" record cleared the status line first and redrew it after.
  assert.match(
    plain,
    // deno-lint-ignore no-control-regex -- terminal output is the subject
    /\r\x1b\[K[^\r\n]*Opened 127\.0\.0\.1:\d+ \(1 open\)\r\n\r127\.0\.0\.1:\d+: /,
  );
  // Redrawn in place: the status text never starts a line of its own.
  assert.ok(!/\n127\.0\.0\.1:\d+: \d+ open/.test(plain), JSON.stringify(plain));
  // Cleared at the end, before the last record, and not drawn again.
  assert.match(
    plain,
    // deno-lint-ignore no-control-regex -- terminal output is the subject
    /\r\x1b\[K[^\r\n]*Stopped: 1 connection served[^\r]*\r\n$/,
  );
});

Deno.test("server --status-interval must be a positive number of seconds", async () => {
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", SERVER, "--port", "0"],
    [
      [
        ["--status-interval", "0"],
        "Invalid --status-interval: expected a positive number, got '0'",
      ],
      [
        ["--status-interval", "soon"],
        "Invalid --status-interval: expected a positive number, got 'soon'",
      ],
    ],
  );
});
