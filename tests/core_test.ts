// The parts free of I/O that both drivers share, with no socket: the line
// modes (lib/modes/), fed bytes and an end of stream as a driver feeds them,
// the read rate's token bucket, and the load test's schedule.

import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import { contentLength } from "../lib/_lines.ts";
import { InfoSession } from "../lib/modes/info.ts";
import { LineSession } from "../lib/modes/line.ts";
import type { Session, SessionFacts } from "../lib/modes/session.ts";
import { TokenBucket } from "../lib/rules/bucket.ts";
import { RelayMembers } from "../lib/native/relay_members.ts";
import { ENDINGS } from "../lib/core/endings.ts";
import { type Feature, FEATURES, unserved } from "../lib/core/features.ts";
import type { ServerConfig } from "../lib/core/config.ts";
import {
  countClosed,
  COUNTERS,
  handshakeFailureKind,
  sumStats,
} from "../lib/core/counters.ts";
import {
  drainMs,
  LoadSchedule,
  type SchedulePlan,
} from "../lib/client/schedule.ts";
import { concat, linesOf } from "./_helpers.ts";

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

const plan = (over: Partial<SchedulePlan> = {}): SchedulePlan => ({
  connections: 2,
  count: Infinity,
  countPerConnection: Infinity,
  rate: undefined,
  timeout: 10_000,
  warmup: 0,
  duration: undefined,
  reconnectEvery: Infinity,
  ...over,
});

Deno.test("LoadSchedule with a rate: each connection has its slot, a late round trip counts from when it was due, one after a wait from when it began", () => {
  // 2 connections at 100 a second: each every 20 ms, 10 ms apart.
  const s = new LoadSchedule(plan({ rate: 100 }), 1000);
  const a = s.slot(0);
  const b = s.slot(1);
  assert.deepEqual([a.due, b.due], [1000, 1010]);
  assert.deepEqual(s.next(a, 1000), { t: "begin", since: 1000 });
  s.begin(a);
  assert.deepEqual(s.next(b, 1000), { t: "wait", until: 1010 });
  // Woken a millisecond late: counted from when it began.
  assert.deepEqual(s.next(b, 1011, true), { t: "begin", since: 1011 });
  s.begin(b);
  // a's round trip took 45 ms: it is behind, counted from its slot.
  assert.equal(a.due, 1020);
  assert.deepEqual(s.next(a, 1045), { t: "begin", since: 1020 });
  s.begin(a);
  assert.deepEqual(s.next(a, 1046), { t: "begin", since: 1040 });
  assert.equal(s.started, 3);
});

Deno.test("LoadSchedule: the count, the count per connection, the warm-up, the deadline and the stop", () => {
  const counted = new LoadSchedule(
    plan({ count: 3, countPerConnection: 2 }),
    0,
  );
  const a = counted.slot(0);
  const b = counted.slot(1);
  for (const slot of [a, a]) {
    assert.equal(counted.next(slot, 0).t, "begin");
    counted.begin(slot);
  }
  assert.deepEqual(counted.next(a, 0), { t: "done" }); // its 2 are begun
  assert.equal(counted.next(b, 0).t, "begin");
  counted.begin(b);
  assert.deepEqual(counted.next(b, 0), { t: "done" }); // 3 in all
  const timed = new LoadSchedule(plan({ warmup: 100, duration: 1000 }), 0);
  assert.deepEqual([timed.measuredFrom, timed.deadline], [100, 1100]);
  // Warming up: checked, not counted.
  assert.equal(timed.finished(10, 90), false);
  assert.equal(timed.finished(100, 150.5), true);
  assert.equal(timed.completed, 1);
  assert.equal(timed.histogram.maxValue, 50_500); // µs
  assert.equal(timed.durationMs, 50.5);
  assert.equal(timed.stop(600), true);
  assert.equal(timed.stop(700), false);
  assert.equal(timed.drainUntil, 1600);
  // After the stop: none begins, none counts.
  assert.deepEqual(timed.next(timed.slot(0), 601), { t: "done" });
  assert.equal(timed.finished(590, 610), false);
  assert.equal(timed.durationMs, 500);
  // The drain is at most the round-trip timeout, and a second without one.
  assert.equal(new LoadSchedule(plan({ timeout: 200 }), 0).stop(0), true);
  assert.equal(drainMs(200), 200);
  assert.equal(drainMs(0), 1000);
});

Deno.test("LoadSchedule: reconnectEvery replaces a connection after its round trips; connects and handshakes are timed in the measured part only", () => {
  const s = new LoadSchedule(
    plan({
      reconnectEvery: 2,
      countPerConnection: 5,
      warmup: 10,
      duration: 100,
    }),
    0,
  );
  const a = s.slot(0);
  const kinds: string[] = [];
  for (let i = 0; i < 9; i++) {
    const next = s.next(a, 0);
    kinds.push(next.t);
    if (next.t === "begin") s.begin(a);
    else if (next.t === "reconnect") a.onSocket = 0;
    else break;
  }
  // Two on each connection, and the fifth on a third one.
  assert.deepEqual(kinds, [
    "begin",
    "begin",
    "reconnect",
    "begin",
    "begin",
    "reconnect",
    "begin",
    "done",
  ]);
  // Without it, never.
  const never = new LoadSchedule(plan({ countPerConnection: 3 }), 0);
  const b = never.slot(0);
  for (let i = 0; i < 3; i++) {
    assert.equal(never.next(b, 0).t, "begin");
    never.begin(b);
  }
  assert.equal(never.next(b, 0).t, "done");
  // Warming up: not counted; then counted, in µs; after the stop: not.
  s.connected(1, 5);
  s.handshaken(5, 9);
  assert.deepEqual([s.connects, s.handshakes], [0, 0]);
  s.connected(20, 20.25);
  s.handshaken(20.25, 21.5);
  assert.deepEqual([s.connects, s.handshakes], [1, 1]);
  assert.equal(s.connectHistogram.maxValue, 250);
  assert.equal(s.handshakeHistogram.maxValue, 1250);
  s.stop(50);
  s.connected(50, 51);
  assert.equal(s.connects, 1);
});

Deno.test("LoadSchedule: the watchdog's period and what has timed out", () => {
  const s = new LoadSchedule(plan({ timeout: 400 }), 0);
  assert.equal(s.watchMs, 100);
  assert.equal(s.timedOut(0, 10_000), false); // nothing in flight
  assert.equal(s.timedOut(100, 500), false);
  assert.equal(s.timedOut(100, 501), true);
  assert.equal(
    new LoadSchedule(plan({ timeout: 0 }), 0).timedOut(1, 1e9),
    false,
  );
  assert.equal(new LoadSchedule(plan({ timeout: 60_000 }), 0).watchMs, 1000);
});

Deno.test("every ending is counted under its label, and any other reason as an error", () => {
  for (const [ending, label] of Object.entries(ENDINGS)) {
    const counters = new Float64Array(COUNTERS);
    countClosed(counters, ending, 5);
    const { closed } = sumStats(counters);
    assert.equal(closed[label], 1, ending);
    assert.equal(Object.values(closed).reduce((a, b) => a + b, 0), 1);
  }
  const counters = new Float64Array(COUNTERS);
  countClosed(counters, "ECONNABORTED: connection aborted (os error 103)", 1);
  assert.equal(sumStats(counters).closed.error, 1);
});

Deno.test("RelayMembers: lines held until acknowledged; an ack for a closed connection does not reach the next one on its descriptor", () => {
  const posted: unknown[] = [];
  const calls: string[] = [];
  const members = new RelayMembers({
    post: (message) => posted.push(message),
    queue: (fd, lines) => calls.push(`queue ${fd} ${lines.length}`),
    hold: (fd) => calls.push(`hold ${fd}`),
    unhold: (fd) => calls.push(`unhold ${fd}`),
    finish: (fd, reason) => calls.push(`finish ${fd} ${reason}`),
    serving: () => true,
    owing: () => false,
  }, 64);
  members.join(5, "a");
  members.receive(5, encoder.encode("one\ntwo\n"));
  assert.deepEqual(calls, ["hold 5"]);
  assert.deepEqual(posted.at(-1), {
    t: "submit",
    id: 1,
    token: 1,
    lines: [encoder.encode("one\n"), encoder.encode("two\n")],
  });
  // Dropped while its lines were on their way; descriptor 5 is reused.
  members.left(5);
  members.join(5, "b");
  members.deliver([], [[1, true]], 0);
  assert.deepEqual(calls, ["hold 5"]);
  // The new connection's own lines and end are its own.
  members.end(5);
  assert.deepEqual(calls, ["hold 5", "finish 5 closed by client"]);
  assert.deepEqual(posted.map((m) => (m as { t: string }).t), [
    "join",
    "submit",
    "leave",
    "join",
    "leave",
  ]);
});

Deno.test("a driver's declared features decide what it refuses, in FEATURES' order", () => {
  const config = {
    listen: {
      transport: "tls",
      hostname: "127.0.0.1",
      port: 0,
      cert: "",
      key: "",
      handshakeTimeout: 0,
    },
    mode: "info",
    proxy: { timeout: 1000, trusted: undefined },
    access: { allow: [], deny: [] },
    limits: undefined,
    maxBytesPerSecond: Infinity,
    faults: [],
    liveFaults: false,
    upstream: undefined,
  } as unknown as ServerConfig;
  const all = new Set(Object.keys(FEATURES) as Feature[]);
  assert.deepEqual(unserved(config, true, all), []);
  const some = new Set(
    [...all].filter((f) => !["tls", "udp", "infoMode"].includes(f)),
  );
  assert.deepEqual(unserved(config, true, some), ["mode info", "TLS", "UDP"]);
  assert.deepEqual(unserved(config, false, some), ["mode info", "TLS"]);
});

Deno.test("a TLS handshake failure's reason falls in one kind, in either TLS stack's words", () => {
  const cases: [string, string][] = [
    ["handshake timed out", "timeout"],
    ["not TLS (http request)", "notTls"],
    ["not TLS (received corrupt message of type InvalidContentType)", "notTls"],
    ["peer did not return a certificate", "certificate"],
    ["certificate verify failed: certificate has expired", "certificate"],
    ["tlsv1 alert unknown ca", "certificate"],
    ["received fatal alert: UnknownCA", "certificate"],
    ["received fatal alert: BadCertificate", "certificate"],
    ["no application protocol", "protocol"],
    ["client closed before the handshake ended", "protocol"],
    ["excessive message size", "protocol"],
  ];
  for (const [reason, kind] of cases) {
    assert.equal(handshakeFailureKind(reason), kind, reason);
  }
});
