import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import { contentLength, LineSplitter } from "../lib/_lines.ts";
import { concat, linesOf } from "./_helpers.ts";

/** Feeds `bytes` to a splitter cut at `cuts`; returns lines and whether it overflowed. */
function split(bytes: Uint8Array, cuts: number[], maxLineBytes: number) {
  const splitter = new LineSplitter(maxLineBytes);
  const lines: Uint8Array[] = [];
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))]
    .sort((a, b) => a - b);
  let start = 0;
  for (const point of [...points, bytes.length]) {
    // Each chunk is a fresh copy, so views into old chunks must stay right.
    for (const line of splitter.push(bytes.slice(start, point))) {
      lines.push(line.slice());
    }
    start = point;
  }
  const last = splitter.end();
  if (last !== undefined) lines.push(last);
  return { lines, tooLong: splitter.tooLong };
}

/** Bytes rich in `\n` and `\r`, so line endings of every kind occur. */
const lineBytes = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) },
    { weight: 1, arbitrary: fc.constant(10) },
    { weight: 1, arbitrary: fc.constant(13) },
  ),
  { maxLength: 3000 },
).map((bytes) => new Uint8Array(bytes));

Deno.test("LineSplitter: any chunking yields the same lines as the whole stream", () => {
  fc.assert(
    fc.property(
      lineBytes,
      fc.array(fc.nat(), { maxLength: 60 }),
      (bytes, cuts) => {
        const { lines, tooLong } = split(bytes, cuts, 1 << 20);
        assert.equal(tooLong, false);
        assert.deepEqual(lines, linesOf(bytes));
        assert.deepEqual(concat(lines), bytes);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("LineSplitter: the limit cuts at the first long line, whatever the chunking", () => {
  fc.assert(
    fc.property(
      lineBytes,
      fc.array(fc.nat(), { maxLength: 60 }),
      fc.integer({ min: 1, max: 40 }),
      (bytes, cuts, max) => {
        const expected = linesOf(bytes);
        const firstLong = expected.findIndex((l) => contentLength(l) > max);
        const { lines, tooLong } = split(bytes, cuts, max);
        assert.equal(tooLong, firstLong !== -1);
        assert.deepEqual(
          lines,
          firstLong === -1 ? expected : expected.slice(0, firstLong),
        );
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("LineSplitter: a line exactly at the limit passes, one byte more does not", () => {
  const encoder = new TextEncoder();
  for (const ending of ["\n", "\r\n", ""]) {
    const at = encoder.encode("x".repeat(8) + ending);
    assert.equal(
      split(at, [3, 8, 9], 8).tooLong,
      false,
      JSON.stringify(ending),
    );
    const over = encoder.encode("x".repeat(9) + ending);
    assert.equal(
      split(over, [3, 8, 9], 8).tooLong,
      true,
      JSON.stringify(ending),
    );
  }
  // A `\r` not followed by `\n` is content.
  assert.equal(
    split(encoder.encode("x".repeat(8) + "\r"), [], 8).tooLong,
    true,
  );
});

Deno.test("LineSplitter holds at most maxLineBytes + 1 bytes of an unfinished line", () => {
  const splitter = new LineSplitter(100);
  for (let i = 0; i < 101; i++) splitter.push(new Uint8Array([65]));
  assert.equal(splitter.pending, 101);
  assert.equal(splitter.tooLong, false);
  splitter.push(new Uint8Array([65]));
  assert.equal(splitter.tooLong, true);
  assert.equal(splitter.pending, 0);
});
