// Private: the native echo loop's connections (lib/native/loop.ts), kept
// as columns of typed arrays indexed by file descriptor, as a C server keeps
// an array of structs: an idle connection costs a few dozen bytes and no
// JavaScript object, and the hot path reads numbers, not properties. What
// only some connections have (unsent bytes, a polite end under way, a name
// for logs) lives in maps beside them. Not exported from mod.ts.

import type { Session } from "../modes/session.ts";
import type { TokenBucket } from "../rules/bucket.ts";
import type { Ending } from "../core/endings.ts";

const INITIAL_CAPACITY = 1024;

/** Why a connection is held (see ConnTable.held): its read rate. */
export const HOLD_RATE = 1;
/** Why a connection is held: the relay has its lines, not delivered yet. */
export const HOLD_RELAY = 2;
/** Held while a fault delays a megabyte of its bytes (or hangs it). */
export const HOLD_FAULT = 4;
/** Held for good: the client's end came, and faults pass it on later. */
export const HOLD_EOF = 8;
/** Held while its upstream (proxy mode) is not ready for more. */
export const HOLD_UPSTREAM = 16;

/** The connections of one loop, by file descriptor. */
export class ConnTable {
  /** 1 for a descriptor that is one of our connections. */
  open = new Uint8Array(INITIAL_CAPACITY);
  /** 1 while bytes read wait to be written (see `pending`). */
  owing = new Uint8Array(INITIAL_CAPACITY);
  openedAt = new Float64Array(INITIAL_CAPACITY);
  lastActive = new Float64Array(INITIAL_CAPACITY);
  bytesIn = new Float64Array(INITIAL_CAPACITY);
  bytesOut = new Float64Array(INITIAL_CAPACITY);
  /**
   * What the socket did not take yet, in order: bytes read and not yet
   * echoed, lines queued; how much of the first chunk went, and the bytes
   * in all.
   */
  pending = new Map<
    number,
    { chunks: Uint8Array[]; at: number; bytes: number }
  >();
  /** Why the server is ending a connection politely, and by when it closes. */
  finishing = new Map<number, { reason: Ending; until: number }>();
  /** Each connection's session, in the line modes (lib/modes/session.ts). */
  sessions = new Map<number, Session>();
  /** The address whose place under the per-address limits each holds. */
  limited = new Map<number, string>();
  /** Each connection's read rate, with `maxBytesPerSecond`. */
  buckets = new Map<number, TokenBucket>();
  /** Connections not read until their bucket refills, and when. */
  paused = new Map<number, number>();
  /**
   * Why a connection is not read for now (HOLD_* bits): its read rate, or
   * a relay that has not delivered its lines yet. Writes go on.
   */
  held = new Map<number, number>();
  /** Held connections taken out of the epoll set after a hang-up. */
  detached = new Set<number>();
  /** How logs name each client (only when they are wanted). */
  peers = new Map<number, string>();
  size = 0;
  /** One above the highest descriptor ever added: how far a scan goes. */
  #high = 0;

  add(fd: number, peer: string, now: number): void {
    if (fd >= this.open.length) this.#grow(fd);
    this.open[fd] = 1;
    this.owing[fd] = 0;
    this.openedAt[fd] = now;
    this.lastActive[fd] = now;
    this.bytesIn[fd] = 0;
    this.bytesOut[fd] = 0;
    if (peer !== "") this.peers.set(fd, peer);
    if (fd >= this.#high) this.#high = fd + 1;
    this.size++;
  }

  /** Whether `fd` is one of ours; `false` once removed. */
  has(fd: number): boolean {
    return fd < this.open.length && this.open[fd] === 1;
  }

  remove(fd: number): void {
    this.open[fd] = 0;
    this.owing[fd] = 0;
    this.pending.delete(fd);
    this.finishing.delete(fd);
    this.peers.delete(fd);
    this.sessions.delete(fd);
    this.limited.delete(fd);
    this.buckets.delete(fd);
    this.paused.delete(fd);
    this.held.delete(fd);
    this.detached.delete(fd);
    this.size--;
  }

  /** Every connection's descriptor, as a list (safe to remove while going). */
  all(): number[] {
    const fds: number[] = [];
    for (let fd = 0; fd < this.#high; fd++) {
      if (this.open[fd] === 1) fds.push(fd);
    }
    return fds;
  }

  #grow(fd: number): void {
    let capacity = this.open.length;
    while (capacity <= fd) capacity *= 2;
    const grown = <T extends Uint8Array | Float64Array>(old: T): T => {
      const next = new (old.constructor as new (n: number) => T)(capacity);
      next.set(old);
      return next;
    };
    this.open = grown(this.open);
    this.owing = grown(this.owing);
    this.openedAt = grown(this.openedAt);
    this.lastActive = grown(this.lastActive);
    this.bytesIn = grown(this.bytesIn);
    this.bytesOut = grown(this.bytesOut);
  }
}
