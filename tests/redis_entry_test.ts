// The Redis stream entry's codec (lib/relay/redis_entry.ts): any events
// come back as they went, and bytes that are not whole events are refused
// rather than read as something else.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "./_fast_check.ts";
import {
  decodeEvents,
  encodeEvents,
  Kind,
  type WireEvent,
} from "../lib/relay/redis_entry.ts";

const event: fc.Arbitrary<WireEvent> = fc.record({
  kind: fc.constantFrom(...Object.values(Kind)),
  member: fc.nat({ max: 0xffffffff }),
  bytes: fc.uint8Array({ maxLength: 200 }),
});

Deno.test("entry events round-trip, also out of a node:buffer view", () => {
  fc.assert(
    fc.property(fc.array(event, { maxLength: 40 }), (events) => {
      const bytes = encodeEvents(events);
      // node-redis hands back a Buffer, often a view into a larger reply.
      const reply = Buffer.concat([Buffer.from("xx"), bytes, Buffer.from("y")]);
      const view = reply.subarray(2, 2 + bytes.length);
      const decoded = decodeEvents(view);
      assert.deepEqual(
        decoded.map((e) => ({ ...e, bytes: [...e.bytes] })),
        events.map((e) => ({ ...e, bytes: [...e.bytes] })),
      );
      for (const e of decoded) {
        assert.equal(Object.getPrototypeOf(e.bytes), Uint8Array.prototype);
      }
    }),
  );
});

Deno.test("a truncated entry is refused", () => {
  fc.assert(
    fc.property(
      fc.array(event, { minLength: 1, maxLength: 5 }),
      fc.nat(),
      (events, cut) => {
        const bytes = encodeEvents(events);
        const length = cut % bytes.length; // Strictly shorter.
        // Cut at an event's end, it is fewer whole events; anywhere else, an error.
        let ends = 0;
        const boundaries = new Set([0]);
        for (const e of events) boundaries.add(ends += 9 + e.bytes.length);
        if (boundaries.has(length)) {
          assert.ok(
            decodeEvents(bytes.subarray(0, length)).length < events.length,
          );
        } else {
          assert.throws(
            () => decodeEvents(bytes.subarray(0, length)),
            RangeError,
          );
        }
      },
    ),
  );
});
