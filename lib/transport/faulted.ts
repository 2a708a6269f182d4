// Private: faults on the default engine's connections (issue 23): a
// connection whose bytes each way go through the stream faults that hit its
// client (lib/faults/pipe.ts says what passes and when), timed here with
// one timer per direction, in order. What the mode reads comes through the
// receive faults; what it writes goes out through the send faults, with
// room for a megabyte in flight before a write waits (so a latency does not
// cut a stream's rate). Installed only when faults are configured. Not
// exported from mod.ts.

import {
  bytesOf,
  type Draw,
  drawsOnce,
  type Ending,
  type FaultBox,
  FaultPipe,
  type FaultSet,
  type LiveConn,
  type Out,
} from "../faults/pipe.ts";
import type { StreamFault } from "../faults/spec.ts";
import { WrappedConn, WrappedListener } from "./wrapped.ts";
import type { TransportEvents } from "./transport.ts";
import type { FaultAction } from "../types.ts";
import { formatAddr, writeAll } from "../_helpers.ts";

/** Bytes taken in or let out that may wait on a delay, each way. */
const IN_FLIGHT = 1024 * 1024;
/** What one read from the socket asks for. */
const READ_SIZE = 64 * 1024;

/** Actions due at a time, done in order, with one timer for the first. */
class Timeline {
  #items: { at: number; run: () => void; bytes: number }[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Runs `run` at `at` (ms, performance.now()), after all added before;
   * `bytes` says how many bytes it moves, for {@linkcode Timeline.clear}.
   */
  add(at: number, run: () => void, bytes = 0): void {
    this.#items.push({ at, run, bytes });
    if (this.#items.length === 1) this.#arm();
  }

  /** Whether nothing is still to come. */
  get empty(): boolean {
    return this.#items.length === 0;
  }

  /** Drops what is still to come; returns the bytes it would have moved. */
  clear(): number {
    let bytes = 0;
    for (const item of this.#items) bytes += item.bytes;
    this.#items = [];
    clearTimeout(this.#timer);
    this.#timer = undefined;
    return bytes;
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const first = this.#items[0];
    if (first === undefined) return;
    const wait = first.at - performance.now();
    if (wait > 0) {
      this.#timer = setTimeout(() => this.#due(), wait);
    } else {
      // Due now: in a microtask, so that add() never runs an action inline.
      queueMicrotask(() => this.#due());
    }
  }

  #due(): void {
    this.#timer = undefined;
    const now = performance.now();
    while (this.#items.length > 0 && this.#items[0].at <= now) {
      this.#items.shift()!.run();
    }
    this.#arm();
  }
}

/**
 * `listener`, each connection's bytes through the stream faults of `box`'s
 * current set that hit its client (none: the connection as it is, unless
 * the box is live, when every connection follows its changes).
 */
export function faultedListener(
  listener: Deno.Listener,
  box: FaultBox,
  events: Pick<TransportEvents, "faulted" | "delayed">,
): Deno.Listener {
  return new class extends WrappedListener {
    override async accept(): Promise<Deno.Conn> {
      const conn = await this.inner.accept();
      const set = box.current;
      if (set === undefined) return conn;
      const client = conn.remoteAddr.transport === "unix"
        ? undefined
        : (conn.remoteAddr as Deno.NetAddr).hostname;
      const draw = drawsOnce();
      if (set.downFor(client, draw)) {
        // The server is "down" for this client: closed as soon as accepted.
        conn.close();
        events.faulted(formatAddr(conn.remoteAddr), "down");
        return this.accept();
      }
      const chosen = set.forClient(client, draw);
      const hit = chosen.receive.length > 0 || chosen.send.length > 0;
      if (!hit && !box.live) return conn;
      const peer = formatAddr(conn.remoteAddr);
      if (hit) events.faulted(peer, "connection", namesOf(chosen));
      const acted = (action: FaultAction) => events.faulted(peer, action);
      return new FaultedConn(conn, chosen, acted, {
        box,
        client,
        draw,
        delayed: events.delayed,
      });
    }
  }(listener);
}

/** The names of the faults in `chosen`, for the log. */
function namesOf(chosen: { receive: StreamFault[]; send: StreamFault[] }) {
  return [...new Set([...chosen.receive, ...chosen.send])]
    .map((f) => f.name).join(", ");
}

/** `conn`, its bytes through `faults` each way. */
export function faulted(
  conn: Deno.Conn,
  faults: { receive: StreamFault[]; send: StreamFault[] },
  acted: (action: FaultAction) => void = () => {},
): FaultedConn {
  return new FaultedConn(conn, faults, acted);
}

/** How a connection follows a live box's changes. */
interface Following {
  box: FaultBox;
  /** Its client's address (undefined for a Unix socket's). */
  client: string | undefined;
  /** Its draws against the faults' rates. */
  draw: Draw;
  /** Faults held bytes back. */
  delayed?: (bytes: number) => void;
}

/** A connection whose bytes go through faults (see the top of this file). */
export class FaultedConn extends WrappedConn implements LiveConn {
  /** Resolves once the socket itself is closed (a slow close is over). */
  readonly closed: Promise<void>;
  #socketClosed: () => void;
  #in: FaultPipe;
  #out: FaultPipe;
  #inTimes = new Timeline();
  #outTimes = new Timeline();
  /** Bytes through the receive faults that the mode has not read. */
  #ready: Uint8Array[] = [];
  /** Bytes read from the socket the mode has not read yet, due or not. */
  #inFlight = 0;
  /** The mode's end of stream is due (the client's, or a fault's). */
  #eof = false;
  #readError: unknown;
  #reading = false;
  /** Wakes a read waiting for bytes, or the reader waiting for room. */
  #wakeRead: (() => void) | undefined;
  #wakeReader: (() => void) | undefined;
  /** Bytes the mode wrote that have not gone out yet. */
  #outFlight = 0;
  #writing: Promise<void> = Promise.resolve();
  #writeError: unknown;
  #wakeWriter: (() => void) | undefined;
  /** Nothing more goes out: a fault ended the sending side. */
  #sendStopped = false;
  /** Nothing more comes in or goes out (hang); closed after `forMs`. */
  #hung = false;
  /** The hang fault that stopped it, while hung. */
  #hungBy: string | undefined;
  #closed = false;
  /** Why a fault closed it (down), for the mode's reads and writes. */
  #aborted: Error | undefined;
  /** A fault ended it (a limit, a hang's time, a down). */
  #endedByFault = false;
  /** The last read of the socket made straight for the mode. */
  #directRead: Promise<unknown> | undefined;
  #acted: (action: FaultAction) => void;
  #following: Following | undefined;

  constructor(
    conn: Deno.Conn,
    faults: { receive: StreamFault[]; send: StreamFault[] },
    acted: (action: FaultAction) => void,
    following?: Following,
  ) {
    super(conn);
    this.#acted = acted;
    this.#following = following;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.closed = promise;
    this.#socketClosed = resolve;
    following?.box.join(this, this.closed);
    this.#in = new FaultPipe(faults.receive);
    this.#out = new FaultPipe(faults.send);
    const now = performance.now();
    this.#schedule(this.#inTimes, this.#in.open(now), "receive");
    this.#schedule(this.#outTimes, this.#out.open(now), "send");
  }

  /**
   * The running server's faults changed to `set` (the box is live): a
   * `down` that hits this client closes it; the pacing faults and hang
   * that hit it act from its next bytes on; a hang whose fault is gone is
   * lifted.
   */
  refresh(set: FaultSet): void {
    const following = this.#following;
    if (this.#closed || following === undefined) return;
    const { client, draw } = following;
    if (set.downFor(client, draw)) {
      this.#acted("down");
      return this.#abort(
        new Deno.errors.ConnectionAborted("closed by a down fault"),
      );
    }
    const chosen = set.forClient(client, draw);
    const now = performance.now();
    const receive = this.#in.replace(chosen.receive, now);
    const send = this.#out.replace(chosen.send, now);
    const hungBy = this.#hungBy;
    if (
      hungBy !== undefined &&
      ![...chosen.receive, ...chosen.send].some((f) =>
        f.kind === "hang" && f.name === hungBy
      )
    ) {
      // Lifted: bytes pass again (those that came meanwhile are gone).
      this.#hung = false;
      this.#hungBy = undefined;
      this.#inTimes.clear();
    }
    this.#schedule(this.#inTimes, receive, "receive");
    this.#schedule(this.#outTimes, send, "send");
  }

  override endedBy(): string | undefined {
    return this.#endedByFault ? "ended by a fault" : undefined;
  }

  /** Closes the socket now because of a fault; the mode sees `error`. */
  #abort(error: Error): void {
    this.#endedByFault = true;
    this.#aborted = error;
    this.#readError ??= error;
    this.#writeError ??= error;
    this.close();
    this.#outTimes.clear();
    try {
      this.inner.close();
    } catch {
      // Closed already.
    }
    this.#socketClosed();
  }

  /** Whether nothing acts on what comes in: the mode may read the socket. */
  #readsDirect(): boolean {
    return this.#in.empty && this.#ready.length === 0 && !this.#reading &&
      !this.#eof && !this.#hung && this.#readError === undefined &&
      this.#inTimes.empty;
  }

  /** Whether nothing acts on what goes out: the mode may write the socket. */
  #writesDirect(): boolean {
    return this.#out.empty && this.#outFlight === 0 && !this.#sendStopped &&
      !this.#hung && this.#writeError === undefined && this.#outTimes.empty;
  }

  override async read(p: Uint8Array): Promise<number | null> {
    while (true) {
      if (this.#aborted) throw this.#aborted;
      if (this.#closed) throw new Deno.errors.BadResource("Connection closed");
      if (this.#readsDirect()) {
        // No fault acts on this side now (a live box may add one later).
        const read = this.inner.read(p);
        this.#directRead = read.catch(() => {});
        return read;
      }
      const head = this.#ready[0];
      if (head !== undefined) {
        const n = Math.min(p.length, head.length);
        p.set(head.subarray(0, n));
        if (n === head.length) this.#ready.shift();
        else this.#ready[0] = head.subarray(n);
        this.#inFlight -= n;
        this.#wakeReader?.();
        return n;
      }
      if (this.#readError !== undefined) throw this.#readError;
      if (this.#eof) return null;
      this.#startReading();
      await new Promise<void>((resolve) => this.#wakeRead = resolve);
      this.#wakeRead = undefined;
    }
  }

  override async write(p: Uint8Array): Promise<number> {
    if (this.#writeError !== undefined) throw this.#writeError;
    if (this.#closed) throw new Deno.errors.BadResource("Connection closed");
    if (this.#writesDirect()) {
      const written = this.inner.write(p);
      this.#writing = written.then(() => {}, () => {});
      return written;
    }
    if (this.#sendStopped || this.#hung) return p.length;
    while (this.#outFlight >= IN_FLIGHT) {
      await new Promise<void>((resolve) => this.#wakeWriter = resolve);
      this.#wakeWriter = undefined;
      if (this.#writeError !== undefined) throw this.#writeError;
    }
    // The caller may use its buffer again once this resolves.
    const out = this.#out.push(p.slice(), performance.now());
    this.#schedule(this.#outTimes, out, "send");
    return p.length;
  }

  override closeWrite(): Promise<void> {
    if (this.#sendStopped || this.#hung || this.#closed) {
      return Promise.resolve();
    }
    this.#sendStopped = true;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#outTimes.add(this.#out.end(performance.now()), () => {
      this.#writing = this.#writing.then(() => this.inner.closeWrite())
        .then(resolve, reject);
    });
    return promise;
  }

  override close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#following?.box.leave(this);
    this.#inTimes.clear();
    this.#wakeRead?.();
    this.#wakeReader?.();
    this.#wakeWriter?.();
    // A slow close holds the socket back; what was written goes first.
    const at = this.#out.end(performance.now());
    this.#outTimes.add(at, () => {
      this.#writing.finally(() => {
        this.#outTimes.clear();
        try {
          this.inner.close();
        } catch {
          // Closed already.
        }
        this.#socketClosed();
      });
    });
  }

  /**
   * Reads from the socket into the receive faults, while there is room;
   * once hung, reads and drops (as toxiproxy's timeout does), so that the
   * peer giving up ends the connection.
   */
  async #startReading(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      // A read the mode made straight from the socket finishes first.
      await this.#directRead;
      while (!this.#closed && !this.#eof) {
        if (
          this.#in.empty && this.#inTimes.empty && this.#ready.length === 0 &&
          !this.#hung
        ) {
          // No fault acts here any more: the mode reads the socket itself.
          break;
        }
        if (this.#inFlight >= IN_FLIGHT) {
          await new Promise<void>((resolve) => this.#wakeReader = resolve);
          this.#wakeReader = undefined;
          continue;
        }
        const buffer = new Uint8Array(READ_SIZE);
        const n = await this.inner.read(buffer);
        if (this.#closed) break;
        if (this.#hung) {
          if (n === null) {
            this.#eof = true;
            this.#wakeRead?.();
          }
          continue;
        }
        if (n === null) {
          this.#inTimes.add(this.#in.end(performance.now()), () => {
            this.#eof = true;
            this.#wakeRead?.();
          });
          break;
        }
        this.#inFlight += n;
        const out = this.#in.push(buffer.subarray(0, n), performance.now());
        // What the faults did not pass on is not waited for.
        this.#inFlight -= n - bytesOf(out);
        this.#schedule(this.#inTimes, out, "receive");
      }
    } catch (error) {
      if (!this.#closed) {
        this.#readError ??= error;
        this.#wakeRead?.();
      }
    } finally {
      this.#reading = false;
      this.#wakeRead?.();
    }
  }

  /** Does `out` at its times: bytes to the mode or the socket, endings. */
  #schedule(
    timeline: Timeline,
    out: Out[],
    direction: "receive" | "send",
  ): void {
    const delayed = this.#following?.delayed;
    if (delayed !== undefined) {
      const held = bytesOf(out, performance.now());
      if (held > 0) delayed(held);
    }
    for (const item of out) {
      if ("end" in item) {
        timeline.add(item.at, () => this.#end(item, direction));
      } else if (direction === "receive") {
        timeline.add(item.at, () => {
          this.#ready.push(item.bytes);
          this.#wakeRead?.();
        });
      } else {
        this.#outFlight += item.bytes.length;
        timeline.add(
          item.at,
          () => this.#send(item.bytes),
          item.bytes.length,
        );
      }
    }
  }

  #send(bytes: Uint8Array): void {
    this.#writing = this.#writing.then(async () => {
      try {
        // Bytes due before a hang still go: it stops what comes after.
        if (this.#writeError === undefined) await writeAll(this.inner, bytes);
      } catch (error) {
        this.#writeError = error;
      } finally {
        this.#outFlight -= bytes.length;
        this.#wakeWriter?.();
      }
    });
  }

  /** A fault ends the connection as `ending` says. */
  #end(ending: Ending, direction: "receive" | "send"): void {
    this.#acted(ending.end === "fin" ? "limit" : ending.end);
    this.#endedByFault = true;
    if (ending.end === "hang") {
      // Nothing more either way; the mode's reads wait, its writes vanish.
      this.#hung = true;
      this.#hungBy = ending.fault;
      this.#outFlight -= this.#outTimes.clear();
      this.#wakeWriter?.();
      // Bytes due before it still reach the mode; none after.
      this.#inTimes.clear();
      this.#inFlight = this.#ready.reduce((n, b) => n + b.length, 0);
      this.#wakeReader?.();
      this.#startReading();
      if (ending.forMs !== undefined) {
        this.#inTimes.add(performance.now() + ending.forMs, () => {
          this.#eof = true;
          this.#wakeRead?.();
        });
      }
      return;
    }
    // A clean close (a reset is refused on this engine before it comes to
    // this): on the receive side, the mode sees the end of stream; on the
    // send side, the client does, after what went before.
    if (direction === "receive") {
      this.#eof = true;
      this.#wakeRead?.();
    } else {
      this.#sendStopped = true;
      this.#writing = this.#writing.then(() => this.inner.closeWrite())
        .catch(() => {});
    }
  }
}
