// The parts free of I/O that both drivers share, with no socket: the line
// modes (lib/modes/), fed bytes and an end of stream as a driver feeds them,
// and the read rate's token bucket.

import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import { contentLength } from "../lib/_lines.ts";
import { InfoSession } from "../lib/modes/info.ts";
import { LineSession } from "../lib/modes/line.ts";
import type { Session, SessionFacts } from "../lib/modes/session.ts";
import { TokenBucket } from "../lib/rules/bucket.ts";
import { concat } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Feeds `bytes` to `session` cut at `cuts`, through one buffer that is
 * overwritten after each call, as a driver reuses its read buffer; then the
 * end of stream unless the session closed first. Returns what it sent (each
 * send copied at once) and why it closed.
 */
function drive(session: Session, bytes: Uint8Array, cuts: number[]) {
  const sent: Uint8Array[] = [];
  const buffer = new Uint8Array(bytes.length + 1);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))]
    .sort((a, b) => a - b);
  let start = 0;
  for (const point of [...points, bytes.length]) {
    if (point === start) continue;
    buffer.set(bytes.subarray(start, point));
    const step = session.receive(buffer.subarray(0, point - start));
    if (step.send !== undefined) sent.push(step.send.slice());
    buffer.fill(0xee);
    start = point;
    if (step.close !== undefined) {
      return { sent: concat(sent), close: step.close };
    }
  }
  const step = session.end();
  if (step.send !== undefined) sent.push(step.send.slice());
  return { sent: concat(sent), close: step.close };
}

/** The lines of `bytes`: cut after every `\n`, the last one as it is. */
function linesOf(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 10) {
      lines.push(bytes.slice(start, i + 1));
      start = i + 1;
    }
  }
  if (start < bytes.length) lines.push(bytes.slice(start));
  return lines;
}

const text = (line: Uint8Array) =>
  decoder.decode(line.subarray(0, contentLength(line)));

/** Bytes made of short words, `exit` and `quit` among them, and line ends. */
const lineStream = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom("a", "bc", "exit", "quit", "é") },
    { weight: 2, arbitrary: fc.constantFrom("\n", "\r\n", "\r") },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  ),
  { maxLength: 80 },
).map((parts) => encoder.encode(parts.join("")));

Deno.test("LineSession: whatever the chunking, lines come back up to exit, a long line or the end", () => {
  fc.assert(
    fc.property(
      lineStream,
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.integer({ min: 1, max: 24 }),
      (bytes, cuts, max) => {
        const expected: Uint8Array[] = [];
        let close = "closed by client";
        for (const line of linesOf(bytes)) {
          if (contentLength(line) > max) {
            expected.push(
              encoder.encode(`ERR line too long (max ${max} bytes)\n`),
            );
            close = "line too long";
            break;
          }
          if (text(line) === "exit" || text(line) === "quit") {
            close = "exit command";
            break;
          }
          expected.push(line);
        }
        const got = drive(new LineSession(max), bytes, cuts);
        assert.deepEqual(got.sent, concat(expected));
        assert.equal(got.close, close);
      },
    ),
    { numRuns: 500 },
  );
});

const facts: SessionFacts = {
  host: "box",
  id: "box:7",
  transport: "tcp",
  client: { transport: "tcp", hostname: "::ffff:10.0.0.9", port: 5000 },
  server: { transport: "tcp", hostname: "10.0.0.1", port: 7 },
};

Deno.test("InfoSession answers every command line, whatever the chunking, up to exit", () => {
  const input = encoder.encode(
    "hostname\nid\r\nclientip\nclientport\nserverip\nserverport\n" +
      "transport\necho a\tb\x1bc\nnope\nexit now\nquit\nhostname\n",
  );
  const answers = "box\nbox:7\n10.0.0.9\n5000\n10.0.0.1\n7\ntcp\n" +
    "a\tb\ufffdc\nERR unknown command: nope\nERR unknown command: exit now\n";
  fc.assert(
    fc.property(fc.array(fc.nat(), { maxLength: 10 }), (cuts) => {
      const got = drive(new InfoSession(facts, 64), input, cuts);
      assert.equal(decoder.decode(got.sent), answers);
      assert.equal(got.close, "exit command");
    }),
  );
});

Deno.test("InfoSession: a last line without its newline is answered; a long line ends it", () => {
  const last = drive(new InfoSession(facts, 64), encoder.encode("id"), []);
  assert.deepEqual(
    [decoder.decode(last.sent), last.close],
    ["box:7\n", "closed by client"],
  );
  const long = drive(
    new InfoSession(facts, 8),
    encoder.encode("id\nhostname-is-long\nid\n"),
    [4],
  );
  assert.deepEqual(
    [decoder.decode(long.sent), long.close],
    ["box:7\nERR line too long (max 8 bytes)\n", "line too long"],
  );
});

Deno.test("InfoSession on a Unix socket has no IP address or port to give", () => {
  const unix: SessionFacts = {
    ...facts,
    transport: "unix",
    client: { transport: "unix", path: "" },
    server: { transport: "unix", path: "/tmp/s" },
  };
  const got = drive(
    new InfoSession(unix, 64),
    encoder.encode("clientip\nserverport\ntransport\n"),
    [],
  );
  assert.equal(
    decoder.decode(got.sent),
    "ERR no IP address on a Unix socket\nERR no port on a Unix socket\nunix\n",
  );
});

Deno.test("TokenBucket: starts full, refills at its rate up to one second's worth, says how long to wait", () => {
  const bucket = new TokenBucket(1000, 0);
  assert.equal(bucket.available(0), 1000);
  bucket.take(1000);
  assert.equal(bucket.available(0), 0);
  assert.equal(bucket.waitMs(0), 1);
  assert.equal(bucket.available(250), 250);
  bucket.take(250);
  assert.equal(bucket.waitMs(250.5), 0.5);
  // A long pause refills one second's worth, no more.
  assert.equal(bucket.available(60_000), 1000);
  // A clock that goes back takes nothing away.
  assert.equal(bucket.available(59_000), 1000);
});
