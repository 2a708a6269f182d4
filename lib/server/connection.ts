// Private: one client connection of a listener: its counters, its writer,
// its polite end, and in echo mode its read/write loop. The line modes
// (lib/modes/) read through readChunk() and end through closeGently(). Not
// exported from mod.ts.

import { describeError, type IdleTimer } from "../_helpers.ts";
import { Outbox } from "../_outbox.ts";
import type { Member, RelayPort } from "../relay/relay.ts";
import type { ServerConfig } from "../core/config.ts";
import { BYTES_IN, BYTES_OUT } from "../core/counters.ts";
import { LINGER_MS } from "../core/lifecycle.ts";
import type { Ending } from "../core/endings.ts";

/** First read buffer of a connection: small, so idle connections cost little. */
export const INITIAL_BUFFER_SIZE = 512;
/** A connection's read buffer doubles each time a read fills it, up to this. */
const MAX_BUFFER_SIZE = 256 * 1024;

/** What every connection of one listener shares: one object per listener. */
export interface Listener {
  readonly config: ServerConfig;
  readonly counters: Float64Array;
  readonly relay: RelayPort | undefined;
  /** How logs name the client of `conn` (the transport knows). */
  peerOf(conn: Deno.Conn): string;
  /** A connection is being dropped because its send queue is full. */
  dropped(c: Connection): void;
  /** A connection has ended (called once), and why. */
  ended(c: Connection, reason: string): void;
}

/**
 * One client connection: its counters, its writer, and in echo mode its
 * read/write loop. The loop runs on callbacks rather than an async function,
 * so that an idle connection holds only this object, its buffer and one
 * pending read.
 */
export class Connection {
  readonly conn: Deno.Conn;
  readonly openedAt: number = Date.now();
  readonly counters: Float64Array;
  bytesIn = 0;
  bytesOut = 0;
  idle: IdleTimer | undefined;
  /** Why the server closed it, when the server did. */
  closedBecause: string | undefined;
  /** Its membership of the relay, in broadcast and chat mode. */
  member: Member | undefined;
  /** Why the server is ending it politely (see {@linkcode finish}). */
  finishing: Ending | undefined;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #listener: Listener;
  /** Made on first use: most echo connections never need one. */
  #out: Outbox | undefined;
  /** The echo loop is writing to the socket itself. */
  #writing = false;
  #ended = false;
  #buffer: Uint8Array<ArrayBuffer> | undefined;
  /** Bytes in `#buffer` to echo, and how many of them are written. */
  #length = 0;
  #offset = 0;
  #peer: string | undefined;

  constructor(conn: Deno.Conn, listener: Listener) {
    this.conn = conn;
    this.#listener = listener;
    this.counters = listener.counters;
  }

  /** The client's name in logs, made on first use. */
  get peer(): string {
    return this.#peer ??= this.#listener.peerOf(this.conn);
  }

  /** The one writer of this connection; see {@linkcode Outbox}. */
  get out(): Outbox {
    if (this.#out !== undefined) return this.#out;
    const { config, counters, relay } = this.#listener;
    const out = new Outbox(
      this.conn,
      config.channelCapacity,
      config.channelBytes,
      {
        written: (n) => {
          this.bytesOut += n;
          counters[BYTES_OUT] += n;
          this.idle?.touch();
          relay?.writerProgress();
        },
        failed: (error) => this.close(describeError(error)),
        busy: relay && ((busy) => relay.writerBusy(out, busy)),
      },
    );
    // Made while the echo loop writes: it holds the socket until done.
    if (this.#writing) out.claim();
    this.#out = out;
    return out;
  }

  /** Closes the socket now; pending reads and writes reject. */
  close(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    this.idle?.clear();
    clearTimeout(this.#linger);
    this.#out?.close();
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * Ends the connection politely: what the client still sends is read and
   * discarded, what is in flight or queued is sent, then the server
   * half-closes, and the connection closes once the client closes too or
   * after {@linkcode LINGER_MS}. The client sees a clean end of stream after
   * everything sent before it. Whoever reads the connection must check
   * `finishing` after each read.
   */
  finish(reason: Ending): void {
    if (this.closedBecause !== undefined || this.finishing !== undefined) {
      return;
    }
    this.finishing = reason;
    this.#linger = setTimeout(() => this.close(reason), LINGER_MS);
    // The echo loop's own write in flight half-closes when done.
    if (!this.#writing) this.#halfClose();
  }

  #halfClose(): void {
    (this.#out?.end() ?? Promise.resolve()).then(() => {
      if (this.closedBecause === undefined) return this.conn.closeWrite();
    }).catch(() => {
      // The socket failed: its reader ends the connection.
    });
  }

  dropQueueFull(): void {
    if (this.closedBecause !== undefined) return;
    this.#listener.dropped(this);
    this.close("send queue full");
  }

  /** Ends the connection's life in the listener, once. */
  end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#listener.ended(this, reason);
  }

  /**
   * Echo mode: echoes until the client half-closes, then ends (the
   * listener's close sends our FIN after everything echoed). Reads into a
   * buffer that starts small and doubles whenever a read fills it.
   */
  echo(): void {
    this.#buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
    this.#read();
  }

  #read(): void {
    this.conn.read(this.#buffer!).then(this.#onRead, this.#onError);
  }

  #onRead = (n: number | null): void => {
    try {
      if (this.finishing !== undefined) {
        // Ending: what the client still sends is not echoed.
        if (n === null) return this.end(this.finishing);
        this.bytesIn += n;
        this.counters[BYTES_IN] += n;
        return this.#read();
      }
      if (n === null) {
        if (this.#out === undefined) return this.end("closed by client");
        this.#out.idle().then(() => this.end("closed by client"));
        return;
      }
      this.bytesIn += n;
      this.counters[BYTES_IN] += n;
      this.idle?.touch();
      this.#length = n;
      this.#offset = 0;
      const out = this.#out;
      if (out === undefined || out.free) {
        // The hot path: write straight to the socket.
        this.#writing = true;
        out?.claim();
        this.#write();
      } else {
        // An operator line is queued or being sent: go after it.
        out.send(this.#buffer!.subarray(0, n)).then(
          () => this.#next(),
          this.#onError,
        );
      }
    } catch (error) {
      this.#onError(error);
    }
  };

  #write(): void {
    this.conn.write(this.#buffer!.subarray(this.#offset, this.#length))
      .then(this.#onWritten, this.#onError);
  }

  #onWritten = (w: number): void => {
    try {
      this.#offset += w;
      this.bytesOut += w;
      this.counters[BYTES_OUT] += w;
      this.idle?.touch();
      if (this.#offset < this.#length) return this.#write();
      this.#writing = false;
      this.#out?.release();
      if (this.finishing !== undefined) this.#halfClose();
      this.#next();
    } catch (error) {
      this.#onError(error);
    }
  };

  /** Reads on, into a buffer twice as big if the last read filled this one. */
  #next(): void {
    this.#buffer = grown(this.#buffer!, this.#length);
    this.#read();
  }

  #onError = (error: unknown): void => {
    if (this.#writing) {
      this.#writing = false;
      this.#out?.release();
    }
    this.end(this.closedBecause ?? describeError(error));
  };
}

/**
 * Reads the next chunk into `buffer`, counting it. Returns the bytes read
 * (a view of `buffer`), or `null` at end of stream.
 */
export async function readChunk(
  c: Connection,
  buffer: Uint8Array,
): Promise<Uint8Array | null> {
  const n = await c.conn.read(buffer);
  if (n === null) return null;
  c.bytesIn += n;
  c.counters[BYTES_IN] += n;
  c.idle?.touch();
  return buffer.subarray(0, n);
}

/** A read buffer twice as big when a read filled this one, up to the limit. */
export function grown(
  buffer: Uint8Array<ArrayBuffer>,
  filled: number,
): Uint8Array<ArrayBuffer> {
  return filled === buffer.length && filled < MAX_BUFFER_SIZE
    ? new Uint8Array(filled * 2)
    : buffer;
}

/** Ends `c` politely (see `Connection.finish`); returns why it ended. */
export function closeGently(
  c: Connection,
  reason: Ending,
): Promise<string> {
  c.finish(reason);
  return discardRest(c);
}

/**
 * Reads and discards what a finishing connection still receives, until the
 * client closes or the linger closes it; returns why it ended.
 */
export async function discardRest(c: Connection): Promise<string> {
  const buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  try {
    while (await readChunk(c, buffer) !== null) {
      // Discard.
    }
  } catch (error) {
    if (c.closedBecause === undefined) throw error;
  }
  return c.finishing!;
}
