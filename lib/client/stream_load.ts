// Private: loadTest's default engine, over Deno's sockets: one Channel a
// connection (a TCP, TLS or Unix stream, or a UDP socket of its own), each
// running its round trips on the test's schedule (./schedule.ts). The
// native engine's counterpart is lib/native/load_loop.ts. Not exported
// from mod.ts.

import { setTimeout as sleep } from "node:timers/promises";
import { writeAll } from "../_helpers.ts";
import { CpuWindow } from "./cpu.ts";
import { type DatagramTarget, ReplyWaiter } from "./datagram.ts";
import {
  ClosedEarly,
  type Ending,
  endingOf,
  failure,
  type FailureKind,
  Failures,
  isReset,
  Refusal,
} from "./failures.ts";
import { LoadSchedule, type SchedulePlan, type Slot } from "./schedule.ts";

export interface StreamLoadOptions extends SchedulePlan {
  /**
   * Opens connection number `index` (a socket of its own, for UDP), and
   * calls `connected` once its socket is connected (before TLS).
   */
  open(
    index: number,
    signal: AbortSignal | undefined,
    connected: () => void,
  ): Promise<Channel>;
  /** Whether `open` makes a TLS handshake after the connect. */
  tls: boolean;
  /** Endings that are outcomes, not failures: the slot reconnects. */
  expect: readonly Ending[];
}

/** One load test's connections over Deno's sockets, on its schedule. */
export class StreamLoad {
  readonly schedule: LoadSchedule;
  readonly cpu = new CpuWindow();
  connected = 0;
  readonly failures: Failures;
  lost = 0;
  #options: StreamLoadOptions;
  /** Open connections, and when their round trip in flight started. */
  #conns = new Map<Channel, number>();
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #warmedUp: ReturnType<typeof setTimeout> | undefined;
  #drained: ReturnType<typeof setTimeout> | undefined;
  /** Aborted at the stop: ends waits for a slot in the rate's schedule. */
  #stopping = new AbortController();
  /** Connections the watchdog ended, and whether that was expected. */
  #timedOut = new WeakMap<Channel, boolean>();

  constructor(options: StreamLoadOptions) {
    this.#options = options;
    this.failures = new Failures(options.expect);
    this.schedule = new LoadSchedule(options, performance.now());
    if (options.warmup === 0) this.cpu.begin();
    else this.#warmedUp = setTimeout(() => this.cpu.begin(), options.warmup);
    // One timer for every connection's round-trip timeout, instead of one
    // per round trip: the generator's own cost stays low.
    if (options.timeout > 0) {
      this.#watchdog = setInterval(
        this.#checkTimeouts,
        this.schedule.watchMs,
      );
    }
  }

  /** Every connection is done: the timers go. */
  finish(): void {
    this.cpu.end();
    clearInterval(this.#watchdog);
    clearTimeout(this.#warmedUp);
    clearTimeout(this.#drained);
  }

  get errors(): number {
    return this.failures.total;
  }

  /**
   * Ends the test (see LoadSchedule.stop): round trips in flight may
   * finish, so that each connection closes with nothing owed and nothing
   * unread, and the server sees a client close, not a reset. Idle
   * connections, and UDP's, close at once.
   */
  stop = (): void => {
    if (!this.schedule.stop(performance.now())) return;
    this.cpu.end();
    this.#stopping.abort();
    // A datagram has no close to keep clean: its wait ends now.
    for (const conn of this.#conns.keys()) {
      if (conn.stream) continue;
      this.#conns.delete(conn);
      conn.close();
    }
    this.#drained = setTimeout(() => {
      // Still owed an echo: abandoned.
      for (const conn of this.#conns.keys()) conn.close();
      this.#conns.clear();
    }, this.schedule.drainUntil - performance.now());
  };

  #checkTimeouts = (): void => {
    const { timeout } = this.#options;
    const now = performance.now();
    for (const [conn, since] of this.#conns) {
      // A datagram's own wait ends it as lost; a stream's is ended here.
      if (conn.stream && this.schedule.timedOut(since, now)) {
        this.#timedOut.set(
          conn,
          this.#fail("other", failure.roundTripTimeout(timeout), "timeout"),
        );
        this.#conns.delete(conn);
        conn.close();
      }
    }
  };

  /**
   * Runs connection number `index` until the test is over, opening another
   * in its place every `reconnectEvery` round trips.
   */
  async connection(index: number): Promise<void> {
    const slot = this.schedule.slot(index);
    while (true) {
      const conn = await this.#open(index);
      if (conn === undefined) return;
      let next: "reconnect" | "done" = "done";
      try {
        next = await this.#roundTrips(conn, slot);
      } catch (error) {
        // An ending the test expects is an outcome: another connection
        // takes this one's place. One the watchdog closed is counted.
        if (this.#timedOut.has(conn)) {
          if (this.#timedOut.get(conn)) next = "reconnect";
        } else if (!this.schedule.stopped && this.#conns.has(conn)) {
          const kind = error instanceof Refusal ? "refused" : "other";
          if (this.#fail(kind, error, endingOf(error))) next = "reconnect";
        }
      } finally {
        if (this.#conns.delete(conn)) conn.close();
      }
      if (next === "done") return;
      slot.onSocket = 0;
    }
  }

  /**
   * Opens connection `index`, timing its connect and its handshake;
   * undefined when it failed (counted) or the test is over.
   */
  async #open(index: number): Promise<Channel | undefined> {
    const { open, timeout } = this.#options;
    const since = performance.now();
    let connectedAt = 0;
    let conn: Channel;
    try {
      conn = await open(
        index,
        timeout > 0 ? AbortSignal.timeout(timeout) : undefined,
        () => connectedAt = performance.now(),
      );
    } catch (error) {
      if (!this.schedule.stopped) this.#fail("connect", error);
      return undefined;
    }
    const now = performance.now();
    if (this.schedule.stopped) {
      conn.close();
      return undefined;
    }
    if (connectedAt === 0) connectedAt = now;
    this.schedule.connected(since, connectedAt);
    if (this.#options.tls) this.schedule.handshaken(connectedAt, now);
    this.connected++;
    this.#conns.set(conn, 0);
    return conn;
  }

  /** `conn`'s round trips, until it must be replaced or the test is over. */
  async #roundTrips(
    conn: Channel,
    slot: Slot,
  ): Promise<"reconnect" | "done"> {
    const schedule = this.schedule;
    let next = schedule.next(slot, performance.now());
    while (next.t !== "done") {
      if (next.t === "reconnect") return "reconnect";
      if (next.t === "wait") {
        // Ends early at the stop (which rejects it).
        await sleep(next.until - performance.now(), undefined, {
          signal: this.#stopping.signal,
        }).catch(() => {});
        next = schedule.next(slot, performance.now(), true);
        continue;
      }
      schedule.begin(slot);
      const { since } = next;
      this.#mark(conn, since);
      const result = await conn.exchange();
      this.#mark(conn, 0);
      if (result === "lost") {
        this.lost++;
      } else if (result !== "ok") {
        this.#fail("mismatch", new Error(result.mismatch));
        // A stream is out of step now: its connection stops.
        if (conn.stream) return "done";
      } else {
        schedule.finished(since, performance.now());
      }
      next = schedule.next(slot, performance.now());
    }
    return "done";
  }

  /**
   * Records when `conn`'s round trip in flight started (0: none), unless
   * `stop()` or the watchdog has closed it meanwhile.
   */
  #mark(conn: Channel, since: number): void {
    if (this.#conns.has(conn)) this.#conns.set(conn, since);
  }

  /** Counts a failure; true when its `ending` was expected. */
  #fail(kind: FailureKind, error: unknown, ending?: Ending): boolean {
    return this.failures.add(
      kind,
      error instanceof Error ? error.message : String(error),
      ending,
    );
  }
}

/**
 * One connection of a load test, as the round-trip loop drives it: a TCP,
 * TLS or Unix stream, or a UDP socket of its own.
 */
export interface Channel {
  /** A stream: a mismatch puts it out of step, and the watchdog times it. */
  readonly stream: boolean;
  /**
   * Sends the message once and waits for its echo: `"ok"`, `"lost"` (a
   * datagram whose reply did not come in time), or what differed.
   */
  exchange(): Promise<"ok" | "lost" | { mismatch: string }>;
  close(): void;
}

export function streamChannel(
  conn: Pick<Deno.Conn, "read" | "write" | "close">,
  message: Uint8Array,
): Channel {
  // One byte more than the message: every read then asks for more than the
  // echo owed, so it comes back short, which tells Deno the socket is
  // drained; a read that exactly fills its view makes the next read try
  // the socket at once and usually find it empty, a wasted system call.
  // The extra byte also catches an echo longer than the message.
  const echo = new Uint8Array(message.length + 1);
  /** Whether any byte came back yet: until then, a close is a refusal. */
  let echoed = false;
  return {
    stream: true,
    async exchange() {
      let received;
      try {
        await writeAll(conn, message);
        received = await readEcho(conn, echo, message.length);
      } catch (error) {
        if (!echoed && isReset(error)) throw new Refusal(true);
        throw error;
      }
      if (received === 0) {
        if (!echoed) throw new Refusal(false);
        throw new ClosedEarly(0, message.length);
      }
      echoed = true;
      const at = firstDifference(echo, message);
      if (at !== -1) {
        return { mismatch: failure.differs(at) };
      }
      if (received > message.length) {
        return { mismatch: failure.tooLong(message.length) };
      }
      return "ok";
    },
    close: () => conn.close(),
  };
}

/**
 * A UDP socket sending the message as datagram after datagram. From 8
 * bytes on, the first 8 carry the connection's index and a sequence
 * number, so that a reply that comes after its datagram was counted lost
 * is recognised, and skipped, rather than taken for the next one's.
 */
export function datagramChannel(
  target: DatagramTarget,
  message: Uint8Array,
  timeout: number,
  index: number,
): Channel {
  const socket = target.open();
  const sent = message.slice();
  const stamped = sent.length >= 8;
  const stamp = new DataView(sent.buffer);
  const waiter = new ReplyWaiter(socket, new Uint8Array(65_536));
  let sequence = 0;
  return {
    stream: false,
    async exchange() {
      sequence++;
      if (stamped) {
        stamp.setUint32(0, index);
        stamp.setUint32(4, sequence);
      }
      await socket.send(sent, target.to);
      while (true) {
        const reply = await waiter.next(target.to, timeout);
        if (reply === null) return "lost";
        if (stamped && reply.length === sent.length) {
          const view = new DataView(reply.buffer, reply.byteOffset, 8);
          const late = view.getUint32(0) === index &&
            view.getUint32(4) < sequence;
          if (late) continue;
        }
        const at = firstDifference(reply, sent);
        if (at === -1 && reply.length === sent.length) return "ok";
        return {
          mismatch: at !== -1 && at < reply.length
            ? `Reply differs from what was sent at byte ${at}`
            : `Reply is ${reply.length} bytes, ${sent.length} were sent`,
        };
      }
    },
    close: () => socket.close(),
  };
}

/**
 * Reads into `into` until at least `expected` bytes are there; returns how
 * many (more than `expected` when the server sent more), or 0 when the
 * server closed before sending any.
 */
async function readEcho(
  conn: Pick<Deno.Conn, "read">,
  into: Uint8Array,
  expected: number,
): Promise<number> {
  let filled = 0;
  while (filled < expected) {
    const n = await conn.read(filled === 0 ? into : into.subarray(filled));
    if (n === null) {
      if (filled === 0) return 0;
      throw new ClosedEarly(filled, expected);
    }
    filled += n;
  }
  return filled;
}

/** The first index below `b.length` where `a` and `b` differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
