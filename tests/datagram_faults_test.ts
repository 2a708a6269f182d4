// Datagram faults, free of I/O (lib/faults/datagrams.ts): over 10,000
// replies with a seeded source, each fault's count within the 99.9 %
// binomial bounds of its probability, every datagram accounted for, a
// corrupted one different by exactly one bit, a reordered one late by its
// window; rates and CIDRs choosing clients.

import assert from "node:assert/strict";
import { DatagramFaults, REORDER_HOLD_MS } from "../lib/faults/datagrams.ts";
import { checkFaults } from "../lib/faults/spec.ts";
import { seeded } from "./_random.ts";

const N = 10_000;

/** Whether `k` hits of `n` draws fit probability `p` (99.9 %, two-sided). */
function withinBinomial(k: number, n: number, p: number): boolean {
  const sd = Math.sqrt(n * p * (1 - p));
  return Math.abs(k - n * p) <= 3.29 * sd;
}

/** Datagram `i`: 8 bytes carrying its number. */
function datagram(i: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, i);
  return bytes;
}

const numberOf = (d: Uint8Array) =>
  new DataView(d.buffer, d.byteOffset).getUint32(0);

Deno.test("drop and duplicate: counts within their binomial bounds, every reply accounted for", () => {
  for (const kind of ["drop", "duplicate"] as const) {
    const faults = new DatagramFaults(
      checkFaults([{ kind, probability: 0.1 }]),
      seeded(11),
    );
    let sent = 0;
    for (let i = 0; i < N; i++) {
      const out = faults.reply("127.0.0.1", datagram(i), i);
      for (const d of out) assert.equal(numberOf(d), i);
      sent += out.length;
    }
    const hits = kind === "drop"
      ? faults.counts.dropped
      : faults.counts.duplicated;
    assert.ok(withinBinomial(hits, N, 0.1), `${kind}: ${hits}`);
    assert.equal(sent, kind === "drop" ? N - hits : N + hits);
  }
});

Deno.test("corrupt: exactly the datagrams it counts differ, each by one bit", () => {
  const faults = new DatagramFaults(
    checkFaults([{ kind: "corrupt", probability: 0.1 }]),
    seeded(12),
  );
  let differing = 0;
  for (let i = 0; i < N; i++) {
    const original = Uint8Array.from({ length: 32 }, (_, k) => (i + k) % 256);
    const [out, ...rest] = faults.reply("127.0.0.1", original, i);
    assert.deepEqual(rest, []);
    let bits = 0;
    for (let k = 0; k < out.length; k++) {
      let x = out[k] ^ original[k];
      while (x) {
        bits += x & 1;
        x >>= 1;
      }
    }
    assert.ok(bits === 0 || bits === 1, `datagram ${i}: ${bits} bits`);
    differing += bits;
  }
  assert.equal(differing, faults.counts.corrupted);
  assert.ok(withinBinomial(differing, N, 0.1), `${differing}`);
});

Deno.test("reorder: held datagrams come after their window of later ones, or after the hold; each exactly once", () => {
  const faults = new DatagramFaults(
    checkFaults([{ kind: "reorder", probability: 0.1, window: 3 }]),
    seeded(13),
  );
  const order: number[] = [];
  for (let i = 0; i < N; i++) {
    for (const d of faults.reply("127.0.0.1", datagram(i), i)) {
      order.push(numberOf(d));
    }
  }
  // The last ones held go once their hold is over.
  const replied = order.length;
  const { out, next } = faults.due(N + REORDER_HOLD_MS);
  assert.equal(next, Infinity);
  for (const [client, d] of out) {
    assert.equal(client, "127.0.0.1");
    order.push(numberOf(d));
  }
  assert.deepEqual([...order].sort((a, b) => a - b), [...Array(N).keys()]);
  assert.ok(withinBinomial(faults.counts.reordered, N, 0.1));
  // A datagram that later ones passed (before the end's release) was passed
  // by at least its window of them.
  let passedBy = 0;
  for (let place = 0; place < replied; place++) {
    const n = order[place];
    const later = order.slice(0, place).filter((m) => m > n).length;
    if (later > 0) {
      passedBy++;
      assert.ok(later >= 3, `datagram ${n} passed by ${later}`);
    }
  }
  assert.ok(passedBy > 0);
});

Deno.test("a datagram fault's rate picks clients by a draw fixed per address, and its CIDRs name them", () => {
  const faults = new DatagramFaults(
    checkFaults([
      { kind: "drop", probability: 1, rate: 0.5, name: "half" },
      { kind: "duplicate", probability: 1, clients: ["10.0.0.0/8"] },
    ]),
    seeded(14),
  );
  let hit = 0;
  for (let i = 0; i < 1000; i++) {
    const client = `192.0.${i >> 8}.${i & 255}`;
    const first = faults.reply(client, datagram(i), 0).length;
    const again = faults.reply(client, datagram(i), 0).length;
    assert.equal(first, again, "the same client, the same draw");
    if (first === 0) hit++;
  }
  assert.ok(withinBinomial(hit, 1000, 0.5), `${hit}`);
  // 10.1.2.3 is in the CIDR: duplicated (when the rate's draw spares it).
  const tenNet = faults.reply("10.1.2.3", datagram(1), 0).length;
  assert.ok(tenNet === 0 || tenNet === 2);
  assert.notEqual(faults.reply("10.9.9.9", datagram(1), 0).length, 1);
});
