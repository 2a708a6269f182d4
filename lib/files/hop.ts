// Private: how a transfer's bytes go from the sender's connection to the
// receiver's, once the desk (lib/files/desk.ts) has let both in: within
// this process (LocalHop, here: the two connections meet and one is read
// only as fast as the other takes, so TCP holds both ends back), or
// between the instances of a cluster through Redis (lib/files/redis_hop.ts).
// Not exported from mod.ts.

import { writeAll } from "../_helpers.ts";
import type { Transfer } from "./ticket.ts";

/** The answer a transfer connection gets before its bytes flow. */
export const OK = new TextEncoder().encode("OK\n");
/** What the sender's connection gets once the receiver's has every byte. */
export const DONE = new TextEncoder().encode("DONE\n");
/** Most bytes read at once from a sender. */
export const CHUNK = 64 * 1024;

/** How one side of a transfer ended. */
export interface Outcome {
  /** Bytes moved (from the ticket's offset on). */
  moved: number;
  /** Why it stopped short; undefined when every byte went. */
  error?: string;
  /** The other side never came (counted by this side alone). */
  alone?: boolean;
}

/** A connection let in by the desk, with the bytes read past its ticket. */
export interface Admitted {
  transfer: Transfer;
  conn: Deno.Conn;
  /** Bytes the sender sent after its first line, read with it. */
  leftover: Uint8Array;
}

/** Where the desk hands each side of a transfer. */
export interface Hop {
  /** Serves `side` until its transfer is over. */
  serve(side: Admitted): Promise<Outcome>;
  /** Ends every transfer under way. */
  close(): void;
}

/** Milliseconds a refused connection is read (and dropped) before it closes. */
const LINGER_MS = 1000;

/**
 * Tells `conn` why, best effort, and closes it: after its own end, what
 * the client still sends is read and dropped for a while, so that the
 * answer is not lost to a reset (a sender writes on until it reads it).
 */
export async function refuse(conn: Deno.Conn, reason: string): Promise<void> {
  try {
    await writeAll(conn, new TextEncoder().encode(`ERR ${reason}\n`));
    await conn.closeWrite();
    const buffer = new Uint8Array(CHUNK);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), LINGER_MS);
    });
    try {
      while (true) {
        const reading = conn.read(buffer);
        reading.catch(() => {}); // Ended by the close below, if late.
        if (await Promise.race([reading, late]) === null) break;
      }
    } finally {
      clearTimeout(timer);
    }
  } catch {
    // Gone already.
  }
  close(conn);
}

/** Closes `conn` if it is still open. */
export function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** The key that the two sides of one attempt share. */
export function pairKey(t: Transfer): string {
  return `${t.id} ${t.attempt} ${t.offset} ${t.size}`;
}

interface Waiting extends Admitted {
  timer: ReturnType<typeof setTimeout>;
  done(outcome: Outcome): void;
}

/**
 * Both sides of a transfer in this process: the first to come waits (up
 * to `waitMs`) for the other; then the sender is read only as fast as the
 * receiver's socket takes the bytes.
 */
export class LocalHop implements Hop {
  #waiting = new Map<string, Waiting>();
  #open = new Set<Deno.Conn>();
  #waitMs: number;

  constructor(waitMs: number) {
    this.#waitMs = waitMs;
  }

  serve(side: Admitted): Promise<Outcome> {
    const key = pairKey(side.transfer);
    const other = this.#waiting.get(key);
    if (other !== undefined && other.transfer.side === side.transfer.side) {
      // A client's newer connection for the same side wins.
      this.#waiting.delete(key);
      clearTimeout(other.timer);
      refuse(other.conn, "replaced by a newer connection");
      other.done({ moved: 0, error: "replaced", alone: true });
    }
    return new Promise((resolve) => {
      const mate = this.#waiting.get(key);
      if (mate === undefined) {
        const timer = setTimeout(() => {
          this.#waiting.delete(key);
          refuse(
            side.conn,
            `the other side did not come within ${this.#waitMs / 1000} s`,
          );
          resolve({
            moved: 0,
            error: "the other side did not come",
            alone: true,
          });
        }, this.#waitMs);
        this.#waiting.set(key, { ...side, timer, done: resolve });
        return;
      }
      this.#waiting.delete(key);
      clearTimeout(mate.timer);
      const [put, get] = side.transfer.side === "put"
        ? [side, mate]
        : [mate, side];
      this.#pipe(put, get).then((outcome) => {
        // The receiver's side counts the transfer.
        (side === get ? resolve : mate.done)(outcome);
        (side === get ? mate.done : resolve)({ ...outcome, alone: false });
      });
    });
  }

  async #pipe(put: Admitted, get: Admitted): Promise<Outcome> {
    this.#open.add(put.conn).add(get.conn);
    const length = put.transfer.size - put.transfer.offset;
    let moved = 0;
    let error: string | undefined;
    try {
      try {
        await writeAll(get.conn, OK);
        await writeAll(put.conn, OK);
      } catch {
        error = "a side went away before the first byte";
        return { moved, error };
      }
      const buffer = new Uint8Array(CHUNK);
      let chunk = put.leftover.subarray(0, length);
      while (true) {
        if (chunk.length > 0) {
          try {
            await writeAll(get.conn, chunk);
          } catch {
            error = `the receiver went away after ${moved} bytes`;
            await refuse(put.conn, error);
            return { moved, error };
          }
          moved += chunk.length;
        }
        if (moved === length) break;
        let n: number | null;
        try {
          n = await put.conn.read(
            buffer.subarray(0, Math.min(CHUNK, length - moved)),
          );
        } catch {
          n = null;
        }
        if (n === null) {
          error = `the sender went away after ${moved} bytes`;
          return { moved, error };
        }
        chunk = buffer.subarray(0, n);
      }
      // The last bytes are in the receiver's socket: the sender may go.
      close(get.conn);
      await writeAll(put.conn, DONE).catch(() => {});
      return { moved };
    } finally {
      this.#open.delete(put.conn);
      this.#open.delete(get.conn);
      close(get.conn);
      close(put.conn);
    }
  }

  close(): void {
    for (const [key, waiting] of this.#waiting) {
      this.#waiting.delete(key);
      clearTimeout(waiting.timer);
      close(waiting.conn);
      waiting.done({ moved: 0, error: "the server closed", alone: true });
    }
    for (const conn of this.#open) close(conn);
  }
}
