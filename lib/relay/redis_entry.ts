// Private: what one entry of the Redis stream carries (lib/relay/redis_bus.ts):
// the events an instance published in one turn of its event loop, so that a
// burst of lines costs one XADD, one entry and one parse per instance rather
// than one each. Not exported from mod.ts.
//
// Each event is a 9-byte header and its bytes:
//
//   kind: u8 | member: u32 (big-endian) | length: u32 | bytes[length]

/** What an event is; its `bytes` mean what the comment says. */
export const Kind = {
  /**
   * A member came: its peer, as UTF-8, then, if its certificate names it,
   * a NUL and that name.
   */
  Join: 1,
  /** A member went: no bytes. */
  Leave: 2,
  /** A member's line, with its ending if it had one. */
  Line: 3,
  /** The operator's line, as UTF-8. */
  Announce: 4,
  /** An instance is gone: its id, as UTF-8 (member 0). */
  Gone: 5,
} as const;
/** One of {@linkcode Kind}'s values. */
export type Kind = typeof Kind[keyof typeof Kind];

/** One event in an entry. */
export interface WireEvent {
  kind: Kind;
  /** The member's number on its instance (0 when none). */
  member: number;
  bytes: Uint8Array;
}

const HEADER = 9;

/** The events, in order, as one field's bytes. */
export function encodeEvents(events: readonly WireEvent[]): Uint8Array {
  let length = 0;
  for (const e of events) length += HEADER + e.bytes.length;
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const e of events) {
    view.setUint8(at, e.kind);
    view.setUint32(at + 1, e.member);
    view.setUint32(at + 5, e.bytes.length);
    out.set(e.bytes, at + HEADER);
    at += HEADER + e.bytes.length;
  }
  return out;
}

/**
 * The events in `field`, in order, each with a view of its bytes (copy what
 * is kept). Throws on bytes that are not whole events.
 */
export function decodeEvents(data: Uint8Array): WireEvent[] {
  // A plain view, whatever `data` is (node:buffer's slice() is a view).
  const field = new Uint8Array(data.buffer, data.byteOffset, data.length);
  const view = new DataView(field.buffer, field.byteOffset, field.length);
  const events: WireEvent[] = [];
  for (let at = 0; at < field.length;) {
    if (at + HEADER > field.length) throw new RangeError("truncated event");
    const length = view.getUint32(at + 5);
    const end = at + HEADER + length;
    if (end > field.length) throw new RangeError("truncated event");
    events.push({
      kind: view.getUint8(at) as Kind,
      member: view.getUint32(at + 1),
      bytes: field.subarray(at + HEADER, end),
    });
    at = end;
  }
  return events;
}
