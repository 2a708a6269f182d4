// Private: per-address limits, shared by every thread of a server: how many
import { assertInteger, assertLimit } from "../_helpers.ts";
import type { ServeEchoOptions } from "../types.ts";
// connections one address may hold open at once, and how fast it may open
// new ones (a token bucket with a burst of the rate). The table is a
// count-min sketch in a SharedArrayBuffer: two rows of slots, each address
// hashed into one slot of each row with a random seed. Its size is fixed
// (so an attack from many addresses, which PROXY headers make cheap, cannot
// grow it), nothing needs expiring (counts come back down when connections
// close; buckets refill by time), and two addresses that share a slot in
// one row almost never share one in the other. A shared slot can only make
// a limit stricter, never looser. Not exported from mod.ts.

/** Slots in each row. */
const SLOTS = 16_384;
const ROWS = 2;
/** Bytes per slot: a lock and a count (Int32), tokens and a time (Float64). */
const SLOT_BYTES = 4 + 4 + 8 + 8;

/** The table's size in memory, for docs/proxies-and-rules.md. */
export const LIMITS_TABLE_BYTES = ROWS * SLOTS * SLOT_BYTES;

/** The limits, as plain data a worker can receive. */
export interface LimitsConfig {
  /** Most connections open at once from one address; Infinity: no limit. */
  perAddress: number;
  /** Most new connections a second from one address; Infinity: no limit. */
  connectRate: number;
  /** The shared table (see {@linkcode newLimitsTable}). */
  table: SharedArrayBuffer;
  /** The hash seeds of the two rows. */
  seeds: [number, number];
}

/** A fresh table and its seeds. */
export function newLimitsTable(): Pick<LimitsConfig, "table" | "seeds"> {
  const seeds = crypto.getRandomValues(new Uint32Array(2));
  return {
    table: new SharedArrayBuffer(LIMITS_TABLE_BYTES),
    seeds: [seeds[0], seeds[1]],
  };
}

/** What {@linkcode Limiter.admit} refuses, and the limit. */
export type LimitRefusal =
  | { reason: "perAddress"; limit: number }
  | { reason: "connectRate"; limit: number };

/** The limits of one thread, on the shared table. */
export class Limiter {
  #perAddress: number;
  #rate: number;
  #seeds: [number, number];
  #locks: Int32Array;
  #counts: Int32Array;
  #tokens: Float64Array;
  #stamps: Float64Array;

  constructor(config: LimitsConfig) {
    this.#perAddress = config.perAddress;
    this.#rate = config.connectRate;
    this.#seeds = config.seeds;
    const n = ROWS * SLOTS;
    const floats = 0;
    this.#tokens = new Float64Array(config.table, floats, n);
    this.#stamps = new Float64Array(config.table, floats + 8 * n, n);
    this.#locks = new Int32Array(config.table, 16 * n, n);
    this.#counts = new Int32Array(config.table, 20 * n, n);
  }

  /**
   * Takes a place for a new connection from `address`, or says why not.
   * Every admitted connection must be {@linkcode release}d once closed.
   */
  admit(address: string): LimitRefusal | undefined {
    const slots = this.#slots(address);
    if (this.#rate !== Infinity && !this.#takeToken(slots)) {
      return { reason: "connectRate", limit: this.#rate };
    }
    if (this.#perAddress !== Infinity) {
      const before = slots.map((i) => Atomics.add(this.#counts, i, 1));
      if (Math.min(...before) >= this.#perAddress) {
        for (const i of slots) Atomics.sub(this.#counts, i, 1);
        return { reason: "perAddress", limit: this.#perAddress };
      }
    }
    return undefined;
  }

  /** Gives back the place of a connection from `address` that closed. */
  release(address: string): void {
    if (this.#perAddress === Infinity) return;
    for (const i of this.#slots(address)) Atomics.sub(this.#counts, i, 1);
  }

  /** The address's slot in each row. */
  #slots(address: string): number[] {
    return this.#seeds.map((seed, row) =>
      row * SLOTS + hash(address, seed) % SLOTS
    );
  }

  /**
   * A token from the address's bucket: allowed when either row has one
   * (the least shared row is the truest), taken from every row that has.
   */
  #takeToken(slots: number[]): boolean {
    const now = Date.now();
    let allowed = false;
    for (const i of slots) {
      // A short spin: the critical section is a few arithmetic operations.
      while (Atomics.compareExchange(this.#locks, i, 0, 1) !== 0) {
        // Another thread holds this slot.
      }
      const elapsed = this.#stamps[i] === 0 ? Infinity : now - this.#stamps[i];
      const tokens = Math.min(
        this.#rate,
        this.#tokens[i] + elapsed * this.#rate / 1000,
      );
      this.#stamps[i] = now;
      if (tokens >= 1) {
        this.#tokens[i] = tokens - 1;
        allowed = true;
      } else {
        this.#tokens[i] = tokens;
      }
      Atomics.store(this.#locks, i, 0);
    }
    return allowed;
  }
}

/**
 * FNV-1a of `text`, seeded, then MurmurHash3's finalizer: a 32-bit unsigned
 * integer. FNV-1a alone spreads its low bits poorly (a multiplication only
 * carries upwards), and a slot is the low bits: neighbouring addresses such
 * as 10.1.0.1 and 10.2.0.1 shared a slot in one row 100 times as often as
 * chance, and in both rows one time in 5,000, so one was refused for the
 * other's connections. The finalizer mixes every bit into the low ones.
 */
function hash(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The per-address limits, checked; `undefined` when there are none. */
export function limitsConfig(
  options: Pick<ServeEchoOptions, "maxConnectionsPerIp" | "connectRate">,
): LimitsConfig | undefined {
  const { maxConnectionsPerIp = Infinity, connectRate = Infinity } = options;
  assertLimit("maxConnectionsPerIp", maxConnectionsPerIp);
  if (connectRate !== Infinity) {
    assertInteger("connectRate", connectRate, 1, 2 ** 31 - 1);
  }
  if (maxConnectionsPerIp === Infinity && connectRate === Infinity) {
    return undefined;
  }
  return {
    perAddress: maxConnectionsPerIp,
    connectRate,
    ...newLimitsTable(),
  };
}
