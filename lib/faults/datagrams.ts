// Private: what datagram faults do to the replies of a UDP echo, free of I/O
// and told the time, as netem does to packets: each fault, in order, draws
// for each datagram with its probability: `drop` sends nothing, `duplicate`
// sends it twice, `corrupt` flips one bit of it, `reorder` holds it back
// until `window` later datagrams to the same client have gone (or a second
// has passed). A fault's `rate` picks the clients it hits, by a draw fixed
// per client address, and its `clients` by CIDR. The drivers send what it
// says. Not exported from mod.ts.

import type { Random } from "./pipe.ts";
import {
  clientTest,
  type DatagramFault,
  type Fault,
  isDatagram,
} from "./spec.ts";

/** How long `reorder` holds a datagram when no later one comes. */
export const REORDER_HOLD_MS = 1000;

/** What the faults did, as counters (for metrics). */
export interface DatagramFaultCounts {
  dropped: number;
  duplicated: number;
  corrupted: number;
  reordered: number;
}

/** A datagram held back by `reorder`, for its client. */
interface Held {
  bytes: Uint8Array;
  /** How many more datagrams to its client go before it. */
  left: number;
  /** When it goes all the same. */
  until: number;
}

/** A server's datagram faults. */
export class DatagramFaults {
  readonly counts: DatagramFaultCounts = {
    dropped: 0,
    duplicated: 0,
    corrupted: 0,
    reordered: 0,
  };
  #faults: DatagramFault[];
  #clients: ((client: string) => boolean)[];
  #random: Random;
  #held = new Map<string, Held[]>();

  /**
   * The datagram faults among `faults`; `random` draws; `counts` goes on
   * from an earlier set's.
   */
  constructor(
    faults: readonly Fault[],
    random: Random = Math.random,
    counts?: DatagramFaultCounts,
  ) {
    if (counts !== undefined) Object.assign(this.counts, counts);
    this.#faults = faults.filter(isDatagram);
    this.#clients = this.#faults.map(clientTest);
    this.#random = random;
  }

  /** Whether there are any. */
  get any(): boolean {
    return this.#faults.length > 0;
  }

  /**
   * The reply `bytes` to `client` (an IP address; `peer` names its socket,
   * `address:port`, when several may share it) is due at `now`: the
   * datagrams to send now, in order (none, it, it twice, a copy with one
   * bit flipped, and held ones whose turn came).
   */
  reply(
    client: string,
    bytes: Uint8Array,
    now: number,
    peer: string = client,
  ): Uint8Array[] {
    let out: Uint8Array[] = [bytes];
    for (const [i, fault] of this.#faults.entries()) {
      if (!this.#hits(i, fault, client)) continue;
      const next: Uint8Array[] = [];
      for (const datagram of out) {
        if (this.#random() >= fault.probability) {
          next.push(datagram);
          continue;
        }
        switch (fault.kind) {
          case "drop":
            this.counts.dropped++;
            break;
          case "duplicate":
            this.counts.duplicated++;
            next.push(datagram, datagram);
            break;
          case "corrupt":
            this.counts.corrupted++;
            next.push(this.#flipOneBit(datagram));
            break;
          case "reorder":
            this.counts.reordered++;
            this.#hold(peer, datagram, fault.window, now);
            break;
        }
      }
      out = next;
    }
    // The held ones whose turn came go after this one.
    return [...out, ...this.#release(peer, out.length, now)];
  }

  /**
   * Held datagrams whose second is over at `now`, by peer, to send; and
   * when to ask again (Infinity when none is held).
   */
  due(now: number): { out: [string, Uint8Array][]; next: number } {
    const out: [string, Uint8Array][] = [];
    let next = Infinity;
    for (const [client, held] of this.#held) {
      const keep = held.filter((h) => {
        if (h.until > now) {
          next = Math.min(next, h.until);
          return true;
        }
        out.push([client, h.bytes]);
        return false;
      });
      if (keep.length === 0) this.#held.delete(client);
      else this.#held.set(client, keep);
    }
    return { out, next };
  }

  /** Whether replies to `peer` are held. */
  holds(peer: string): boolean {
    return this.#held.has(peer);
  }

  /** Whether fault `i` hits `client`: its CIDRs, and its rate's fixed draw. */
  #hits(i: number, fault: DatagramFault, client: string): boolean {
    if (!this.#clients[i](client)) return false;
    return fault.rate >= 1 || draw(`${fault.name}\0${client}`) < fault.rate;
  }

  #hold(client: string, bytes: Uint8Array, window: number, now: number) {
    let held = this.#held.get(client);
    if (held === undefined) this.#held.set(client, held = []);
    // `bytes` may be the caller's buffer, used again for the next reply.
    held.push({
      bytes: bytes.slice(),
      left: window,
      until: now + REORDER_HOLD_MS,
    });
  }

  /** `sent` datagrams went to `client`: the held ones now due, in order. */
  #release(client: string, sent: number, now: number): Uint8Array[] {
    const held = this.#held.get(client);
    if (held === undefined || sent === 0) return [];
    const out: Uint8Array[] = [];
    const keep: Held[] = [];
    for (const h of held) {
      h.left -= sent;
      if (h.left <= 0 || h.until <= now) out.push(h.bytes);
      else keep.push(h);
    }
    if (keep.length === 0) this.#held.delete(client);
    else this.#held.set(client, keep);
    return out;
  }

  /** A copy of `bytes` with one bit, drawn, flipped (none if empty). */
  #flipOneBit(bytes: Uint8Array): Uint8Array {
    const copy = bytes.slice();
    if (copy.length === 0) return copy;
    const bit = Math.floor(this.#random() * copy.length * 8);
    copy[bit >> 3] ^= 1 << (bit & 7);
    return copy;
  }
}

/** A number in [0, 1) fixed by `key` (FNV-1a): a client's draw for a rate. */
function draw(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) / 4294967296;
}
