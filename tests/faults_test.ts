// Faults as data, free of I/O (lib/faults/): the spec's one check and the
// command line's form, and what each stream fault does to one direction of
// a connection, told the time: bytes kept whole and in order, cuts exact
// to the byte, delays and rates as asked. Properties with fast-check.

import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import {
  checkFault,
  checkFaults,
  parseFault,
  type StreamFault,
} from "../lib/faults/spec.ts";
import { FaultPipe, FaultSet, type Out } from "../lib/faults/pipe.ts";
import { seeded } from "./_random.ts";

/** The stream fault `fields` make, checked. */
function fault(fields: Record<string, unknown>): StreamFault {
  return checkFault(fields) as StreamFault;
}

/** The bytes of `out`, joined, and its endings. */
function split(out: Out[]): { bytes: number[]; endings: Out[] } {
  const bytes: number[] = [];
  const endings: Out[] = [];
  for (const item of out) {
    if ("bytes" in item) { for (const b of item.bytes) bytes.push(b); }
    else endings.push(item);
  }
  return { bytes, endings };
}

/** Chunks of bytes arriving at increasing times (ms). */
const arrivals = fc.array(
  fc.record({
    gap: fc.integer({ min: 0, max: 50 }),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }),
  }),
  { minLength: 1, maxLength: 30 },
);

/** Faults that neither cut nor end the stream. */
const passing = fc.oneof(
  fc.record({
    kind: fc.constant("latency"),
    ms: fc.integer({ min: 0, max: 500 }),
    jitter: fc.integer({ min: 0, max: 100 }),
    distribution: fc.constantFrom("uniform", "normal"),
  }),
  fc.record({
    kind: fc.constant("bandwidth"),
    bytesPerSecond: fc.integer({ min: 1, max: 1_000_000 }),
  }),
  fc.record({
    kind: fc.constant("slicer"),
    size: fc.integer({ min: 1, max: 64 }),
    sizeJitter: fc.integer({ min: 0, max: 16 }),
    delayMs: fc.integer({ min: 0, max: 20 }),
  }),
  fc.record({
    kind: fc.constant("slow_close"),
    ms: fc.integer({ min: 0, max: 1000 }),
  }),
);

/** `chain` (named apart) through a pipe: everything each push gave. */
function run(
  chain: Record<string, unknown>[],
  chunks: { gap: number; bytes: Uint8Array }[],
  seed = 1,
) {
  const faults = chain.map((f, i) => fault({ ...f, name: `f${i}` }));
  const pipe = new FaultPipe(faults, seeded(seed));
  const out: Out[] = [...pipe.open(0)];
  const sent: number[] = [];
  let now = 0;
  const inTimes: number[] = [];
  for (const { gap, bytes } of chunks) {
    now += gap;
    for (const b of bytes) sent.push(b);
    inTimes.push(now);
    out.push(...pipe.push(bytes, now));
  }
  return { pipe, out, sent, now, inTimes };
}

Deno.test("faults that cut nothing pass every byte once, in order, never earlier than it came, at non-decreasing times", () => {
  fc.assert(
    fc.property(
      fc.array(passing, { maxLength: 4 }),
      arrivals,
      fc.integer(),
      (chain, chunks, seed) => {
        const { pipe, out, sent, now } = run(chain, chunks, seed);
        const { bytes, endings } = split(out);
        assert.deepEqual(bytes, sent);
        assert.deepEqual(endings, []);
        for (let i = 1; i < out.length; i++) {
          assert.ok(out[i].at >= out[i - 1].at, `out of order at ${i}`);
        }
        assert.ok(out.every((item) => item.at >= 0));
        // The end comes after every byte.
        const end = pipe.end(now);
        assert.ok(end >= now && end >= (out.at(-1)?.at ?? 0));
        assert.equal(pipe.endsAt, Infinity);
      },
    ),
  );
});

Deno.test("limit, reset and hang pass exactly their bytes, then end once; nothing passes after", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("limit", "reset", "hang"),
      fc.integer({ min: 0, max: 2000 }),
      fc.array(passing, { maxLength: 2 }),
      arrivals,
      (kind, n, before, chunks) => {
        const chain = [...before, { kind, bytes: n, forMs: 300 }].map((f) =>
          f.kind === "limit" || f.kind === "reset"
            ? { kind: f.kind, bytes: n }
            : f
        );
        const { pipe, out, sent } = run(chain, chunks);
        const { bytes, endings } = split(out);
        if (sent.length < n) {
          // Fewer bytes than the cut: all pass, no end yet.
          assert.deepEqual(bytes, sent);
          assert.deepEqual(endings, []);
          return;
        }
        assert.deepEqual(bytes, sent.slice(0, n));
        assert.equal(endings.length, 1);
        const ending = endings[0] as { end: string; forMs?: number };
        assert.equal(ending.end, kind === "limit" ? "fin" : kind);
        if (kind === "hang") assert.equal(ending.forMs, 300);
        assert.ok("end" in out.at(-1)!, "the ending comes last");
        assert.ok(pipe.endsAt < Infinity);
        assert.deepEqual(pipe.push(new Uint8Array([1, 2, 3]), 1e6), []);
      },
    ),
  );
});

Deno.test("a cut of 0 bytes, and reset's afterMs, end the connection from its start", () => {
  const pipe = new FaultPipe([fault({ kind: "limit", bytes: 0 })]);
  assert.deepEqual(pipe.open(100), [{ end: "fin", at: 100, fault: "limit" }]);
  assert.equal(pipe.endsAt, 100);
  assert.deepEqual(pipe.push(new Uint8Array(1), 100), []);
  const timed = new FaultPipe([
    fault({ kind: "reset", afterMs: 2500 }),
    fault({ kind: "latency", ms: 10, name: "later" }),
  ]);
  // The reset waits for the latency's bytes before it, as a close does.
  assert.deepEqual(timed.open(1000), [{
    end: "reset",
    at: 3510,
    fault: "reset",
  }]);
  // Until then, bytes pass; from then, none.
  const open = new FaultPipe([fault({ kind: "reset", afterMs: 50 })]);
  open.open(0);
  assert.equal(open.endsAt, 50);
  assert.equal(split(open.push(new Uint8Array(10), 5)).bytes.length, 10);
  assert.deepEqual(open.push(new Uint8Array(10), 50), []);
  // Bytes a latency would pass on after the reset do not pass.
  const late = new FaultPipe([
    fault({ kind: "latency", ms: 100 }),
    fault({ kind: "reset", afterMs: 50 }),
  ]);
  late.open(0);
  assert.deepEqual(late.push(new Uint8Array(10), 1), []);
});

Deno.test("latency: a fixed delay exactly; a jitter within its bounds (uniform) or around it (normal), order kept", () => {
  const fixed = run([{ kind: "latency", ms: 100 }], [
    { gap: 0, bytes: new Uint8Array(5) },
    { gap: 30, bytes: new Uint8Array(5) },
  ]);
  assert.deepEqual(fixed.out.map((o) => o.at), [100, 130]);
  assert.equal(fixed.pipe.end(40), 140);
  const chunks = Array.from({ length: 10_000 }, () => ({
    gap: 1000,
    bytes: new Uint8Array(1),
  }));
  const uniform = run(
    [{ kind: "latency", ms: 100, jitter: 20 }],
    chunks,
    7,
  );
  const delays = uniform.out.map((o, i) => o.at - uniform.inTimes[i]);
  assert.ok(delays.every((d) => d >= 80 && d <= 120));
  const mean = delays.reduce((a, b) => a + b) / delays.length;
  assert.ok(Math.abs(mean - 100) < 1, `mean ${mean}`);
  const normal = run(
    [{ kind: "latency", ms: 100, jitter: 20, distribution: "normal" }],
    chunks,
    7,
  );
  const nd = normal.out.map((o, i) => o.at - normal.inTimes[i]);
  const nMean = nd.reduce((a, b) => a + b) / nd.length;
  const sd = Math.sqrt(
    nd.reduce((a, d) => a + (d - nMean) ** 2, 0) / nd.length,
  );
  assert.ok(Math.abs(nMean - 100) < 1, `mean ${nMean}`);
  assert.ok(Math.abs(sd - 20) < 1, `standard deviation ${sd}`);
});

Deno.test("bandwidth: a 5 MB chunk takes 5 s at 1 MB/s, in pieces of a tenth of a second; slicer: pieces of its size, its delay apart", () => {
  const { out } = run([{ kind: "bandwidth", bytesPerSecond: 1_000_000 }], [
    { gap: 0, bytes: new Uint8Array(5_000_000) },
  ]);
  assert.equal(out.length, 50);
  assert.ok(out.every((o) => "bytes" in o && o.bytes.length === 100_000));
  assert.ok(Math.abs(out.at(-1)!.at - 5000) < 1e-6);
  const sliced = run(
    [{ kind: "slicer", size: 10, delayMs: 5 }],
    [{ gap: 0, bytes: new Uint8Array(35) }],
  );
  assert.deepEqual(
    sliced.out.map((o) => ["bytes" in o ? o.bytes.length : 0, o.at]),
    [[10, 0], [10, 5], [10, 10], [5, 15]],
  );
});

Deno.test("slow_close holds the end back", () => {
  const pipe = new FaultPipe([fault({ kind: "slow_close", ms: 750 })]);
  assert.deepEqual(pipe.push(new Uint8Array(3), 10).map((o) => o.at), [10]);
  assert.equal(pipe.end(20), 770);
});

Deno.test("a server's faults hit the clients they name, at their rate, in the directions they name", () => {
  const set = new FaultSet(checkFaults([
    { kind: "latency", ms: 10, direction: "send" },
    { kind: "limit", bytes: 5, clients: ["10.0.0.0/8"], direction: "receive" },
    { kind: "reset", bytes: 1, rate: 0.5 },
    { kind: "drop", probability: 0.1 },
    { kind: "down" },
  ]));
  const names = (chosen: Record<string, StreamFault[]>) =>
    Object.fromEntries(
      Object.entries(chosen).map(([d, fs]) => [d, fs.map((f) => f.name)]),
    );
  // The draw 0.7 misses the reset's rate of 0.5; 0.2 hits it.
  assert.deepEqual(names(set.forClient("10.1.2.3", () => 0.7)), {
    receive: ["limit"],
    send: ["latency"],
  });
  assert.deepEqual(names(set.forClient("192.0.2.1", () => 0.2)), {
    receive: ["reset"],
    send: ["latency", "reset"],
  });
  // A Unix socket's client has no address: CIDRs do not hold it.
  assert.deepEqual(names(set.forClient(undefined, () => 0.7)), {
    receive: [],
    send: ["latency"],
  });
});

Deno.test("a fault spec is checked whole: defaults filled, each mistake named by fault and field", () => {
  assert.deepEqual(checkFaults([{ kind: "latency", ms: 100 }]), [{
    kind: "latency",
    ms: 100,
    jitter: 0,
    distribution: "uniform",
    name: "latency",
    directions: ["receive", "send"],
    rate: 1,
    clients: [],
  }]);
  const cases: [unknown, string][] = [
    [{}, "must be a list of faults"],
    [[7], "faults[0]: must be an object"],
    [[{ kind: "lag" }], "faults[0].kind: must be one of latency, bandwidth"],
    [[{ kind: "latency" }], "faults[0].ms: is required"],
    [[{ kind: "latency", ms: -1 }], "faults[0].ms: must be whole milliseconds"],
    [[{ kind: "latency", ms: "5" }], 'faults[0].ms: must be a number, got "5"'],
    [
      [{ kind: "latency", ms: 1, bytes: 5 }],
      "faults[0].bytes: latency has no such parameter",
    ],
    [[{ kind: "reset" }], "faults[0].bytes: reset needs bytes or afterMs"],
    [
      [{ kind: "limit", bytes: 1, rate: 2 }],
      "faults[0].rate: must be from 0 to 1",
    ],
    [
      [{ kind: "limit", bytes: 1, direction: "up" }],
      "faults[0].direction: must be receive, send or both",
    ],
    [
      [{ kind: "limit", bytes: 1, clients: ["10.0.0.0/33"] }],
      "faults[0].clients:",
    ],
    [
      [{ kind: "drop", probability: 1.5 }],
      "faults[0].probability: must be from 0 to 1",
    ],
    [
      [{ kind: "down", how: "later" }],
      "faults[0].how: must be one of close, refuse",
    ],
    [
      [{ kind: "limit", bytes: 1 }, { kind: "limit", bytes: 2 }],
      "faults[1].name: limit is taken by an earlier fault",
    ],
  ];
  for (const [spec, message] of cases) {
    assert.throws(
      () => checkFaults(spec),
      (error: Error & { option?: string }) =>
        error instanceof TypeError && error.option === "faults" &&
        error.message.includes(message),
      message,
    );
  }
});

Deno.test("--fault's form: KIND:PARAM=VALUE,…, numbers as numbers, clients joined by +", () => {
  assert.deepEqual(
    parseFault("latency:ms=100,jitter=20,distribution=normal,direction=send"),
    {
      kind: "latency",
      ms: 100,
      jitter: 20,
      distribution: "normal",
      name: "latency",
      directions: ["send"],
      rate: 1,
      clients: [],
    },
  );
  assert.deepEqual(
    parseFault(
      "reset:bytes=1024,rate=0.5,clients=10.0.0.0/8+192.0.2.0/24,name=r1",
    ),
    {
      kind: "reset",
      bytes: 1024,
      afterMs: undefined,
      name: "r1",
      directions: ["receive", "send"],
      rate: 0.5,
      clients: ["10.0.0.0/8", "192.0.2.0/24"],
    },
  );
  assert.equal(parseFault("down").kind, "down");
  assert.throws(
    () => parseFault("latency:100"),
    /latency: expected PARAM=VALUE, got "100"/,
  );
  assert.throws(
    () => parseFault("latency:ms=fast"),
    /latency\.ms: must be a number, got "fast"/,
  );
});

Deno.test("replace(): new pacing faults and hang act from the next bytes; cuts stay; a lifted hang lets bytes pass", () => {
  const limit = fault({ kind: "limit", bytes: 25 });
  const pipe = new FaultPipe([limit, fault({ kind: "latency", ms: 100 })]);
  pipe.open(0);
  assert.deepEqual(pipe.push(new Uint8Array(5), 0).map((o) => o.at), [100]);
  // The latency goes, a bandwidth comes; a new limit does not (cuts count
  // from the start): the old one still cuts at 25 bytes.
  const thin = fault({ kind: "bandwidth", bytesPerSecond: 1000 });
  pipe.replace([thin, fault({ kind: "limit", bytes: 1, name: "new" })], 10);
  assert.deepEqual(pipe.push(new Uint8Array(10), 10).map((o) => o.at), [20]);
  assert.equal(pipe.empty, false);
  // The same fault keeps its state: the link is busy until 20 ms.
  pipe.replace([thin], 10);
  assert.deepEqual(pipe.push(new Uint8Array(5), 10).map((o) => o.at), [25]);
  const cut = split(pipe.push(new Uint8Array(10), 30));
  assert.equal(cut.bytes.length, 5);
  assert.deepEqual(cut.endings, [{ end: "fin", at: 35, fault: "limit" }]);

  // A hang added live with no bytes hangs at once; lifted, bytes pass.
  const open = new FaultPipe([]);
  assert.equal(open.empty, true);
  const hang = fault({ kind: "hang" });
  assert.deepEqual(open.replace([hang], 50), [
    { end: "hang", at: 50, forMs: undefined, fault: "hang" },
  ]);
  assert.deepEqual(open.push(new Uint8Array(3), 60), []);
  assert.deepEqual(open.replace([], 70), []);
  assert.equal(open.empty, true);
  assert.equal(split(open.push(new Uint8Array(3), 80)).bytes.length, 3);
});
