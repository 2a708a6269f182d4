// Private: what the native engine's two load loops share: the round trips
// of a loadTest({ engine: "native" }), each connection sending the message,
// reading the whole echo and comparing every byte, and repeating; the
// rate's schedule, in which each connection has its slot and a late round
// trip is measured from when it was due; the timeouts; the counts and the
// latency histogram. How the sockets are driven is the subclasses' part:
// readiness with epoll (lib/native/load_epoll.ts) or completions with
// io_uring (lib/native/load_uring.ts). A loop runs in a Worker
// (lib/native/load_worker.ts) and blocks there; the calling thread stops it
// through shared memory and an eventfd (lib/native/native_load.ts). Not
// exported from mod.ts.

import {
  encodeHistogram,
  type Latency,
  latencySummary,
} from "../client/latency.ts";
import { CpuWindow } from "../client/cpu.ts";
import {
  LoadSchedule,
  type SchedulePlan,
  type Slot,
} from "../client/schedule.ts";
import { failure, type FailureKind, Failures } from "../client/failures.ts";
import {
  AF_UNIX,
  ECONNRESET,
  EPIPE,
  errnoText,
  fromSockaddr,
  IPPROTO_TCP,
  MSG_NOSIGNAL,
  type Native,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_STREAM,
  sockaddr,
  SOCKADDR_MAX,
  TCP_NODELAY,
  unixSockaddr,
} from "./ffi.ts";
import type { ProxyPlan } from "../client/dial.ts";
import { clientHeader } from "../proxy/header.ts";

/** `control[0]`: 0 while running, 1 once the calling thread says stop. */
export const STOP_LOAD = 1;
/** Where the calling thread reads progress: round trips done, errors. */
export const PROGRESS_DONE = 0;
export const PROGRESS_ERRORS = 1;

/** Echo chunks up to this size are compared in JavaScript. */
const SHORT_COMPARE = 128;

/** How a native load loop drives its sockets. */
export type NativeIo = "io_uring" | "epoll";

/**
 * The test, as loadTest checked it: its schedule (whose duration is kept
 * on this loop's own clock: a stop from the calling thread would come late
 * by a message's delay), where and what to send, and how.
 */
export interface LoadPlan extends SchedulePlan {
  hostname: string;
  port: number;
  /** A Unix socket to connect to instead of `hostname:port`. */
  path: string | undefined;
  /** The PROXY header to send first on each connection, if any. */
  proxy: ProxyPlan | undefined;
  /**
   * UDP: each connection is a socket of its own sending the message as
   * datagram after datagram (stamped, from 8 bytes on, with its index and
   * a sequence number, so that a reply that comes after its datagram was
   * counted lost is skipped); one unanswered within `timeout` is lost.
   */
  udp: boolean;
  message: Uint8Array;
  io: NativeIo;
}

/** What the load loop needs: the test, and the calling thread's handles. */
export interface LoadConfig extends LoadPlan {
  wakeFd: number;
  control: Int32Array;
  progress: Float64Array;
}

/** What it measured (latency in µs), for the calling thread's report. */
export interface LoadResult {
  connected: number;
  roundTrips: number;
  durationMs: number;
  /** The latencies, as {@linkcode encodeHistogram} encodes them. */
  latencyHistogram: string;
  latencyUs: Latency;
  /** Datagrams unanswered: none over TCP. */
  lost: number;
  connectErrors: number;
  closedBeforeEcho: number;
  mismatches: number;
  otherErrors: number;
  errorMessages: string[];
  /** CPU time of this process in the measured part (see CpuWindow). */
  cpuMs: number;
}

/** One connection and its round trip in flight. */
export class Conn implements Slot {
  /** Until closed. */
  open = true;
  connected = false;
  /** Bytes of the message sent, and of its echo read and checked. */
  sent = 0;
  received = 0;
  /** When the round trip in flight started (or was due); 0: none. */
  since = 0;
  /** When the next round trip is due, with a rate (see Slot). */
  due = 0;
  /** Round trips this connection has begun. */
  mine = 0;
  /** The epoll events it is registered for (the epoll loop's). */
  events = 0;
  /** A recv is in flight (the io_uring loop's). */
  reading = false;
  /** UDP: this socket's own copy of the message, stamped per datagram. */
  datagram: Uint8Array | undefined;
  constructor(readonly fd: number, readonly index: number) {}
}

/** The load loop of one thread; subclasses drive the sockets. */
export abstract class LoadLoop {
  protected readonly native: Native;
  protected readonly config: LoadConfig;
  /** The server's address: a `sockaddr_in` or `sockaddr_in6`. */
  protected readonly address: Uint8Array;
  /** Its family (the first two bytes, little-endian on both architectures). */
  #family: number;
  #one = new Int32Array([1]);
  /**
   * Connections by index, open or closed; none where socket() failed, so
   * that there may be holes.
   */
  protected readonly conns: (Conn | undefined)[] = [];
  #live = 0;
  /** Connections waiting for their slot in the rate's schedule. */
  #waiting = new Set<Conn>();
  #schedule: LoadSchedule;
  #nextWatch = Infinity;
  #cpu = new CpuWindow();
  #connected = 0;
  #lost = 0;
  #failures = new Failures();

  constructor(native: Native, config: LoadConfig) {
    this.native = native;
    this.config = config;
    this.address = config.path === undefined
      ? sockaddr(native, config.hostname, config.port)
      : unixSockaddr(config.path);
    this.#family = this.address[0] | this.address[1] << 8;
    this.#schedule = new LoadSchedule(config, native.now());
    if (config.timeout > 0) {
      this.#nextWatch = this.#schedule.startedAt + this.#schedule.watchMs;
    }
    if (config.warmup === 0) this.#cpu.begin();
  }

  /**
   * Opens every connection and runs until the test is over, and the round
   * trips in flight at its end have finished.
   */
  run(): LoadResult {
    try {
      for (let i = 0; i < this.config.connections; i++) this.open(i);
      while (this.#live > 0) {
        this.wait(this.#timeout());
        this.#timers();
      }
      this.#cpu.end();
    } finally {
      // A connection whose socket() failed has no entry.
      for (const conn of this.conns) if (conn !== undefined) this.close(conn);
      this.end();
    }
    return this.#result();
  }

  /**
   * A TCP socket of the server's family, with `flags` (SOCK_NONBLOCK, say)
   * and TCP_NODELAY; -1, the failure counted, when the system refuses one.
   */
  protected socket(flags: number): number {
    const { libc } = this.native;
    const type = this.config.udp ? SOCK_DGRAM : SOCK_STREAM;
    const fd = libc.socket(this.#family, type | SOCK_CLOEXEC | flags, 0);
    if (fd < 0) {
      this.fail("connect", `socket: ${errnoText(this.native.errno())}`);
      return -1;
    }
    if (this.#family !== AF_UNIX && !this.config.udp) {
      libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, this.#one, 4);
    }
    return fd;
  }

  /** Creates connection `index`'s socket and starts its connect. */
  protected abstract open(index: number): void;
  /** Waits up to `timeoutMs` (-1: no limit) and handles what happened. */
  protected abstract wait(timeoutMs: number): void;
  /** Sends the message on `conn` (a round trip has begun). */
  protected abstract send(conn: Conn): void;
  /** Lets go of `conn`'s socket. */
  protected abstract release(conn: Conn): void;
  /** Lets go of the loop's own resources, once. */
  protected abstract end(): void;

  /** The bytes `conn` sends for a round trip: the message, or its datagram. */
  protected messageOf(conn: Conn): Uint8Array {
    return conn.datagram ?? this.config.message;
  }

  /** `conn`'s connect is under way. */
  protected added(conn: Conn): void {
    if (this.config.udp && this.config.message.length >= 8) {
      conn.datagram = this.config.message.slice();
    }
    conn.since = this.native.now(); // The connect's own timeout.
    this.conns[conn.index] = conn;
    this.#live++;
  }

  /** `conn`'s connect finished: `errno` 0, or why it failed. */
  protected connectDone(conn: Conn, errno: number): void {
    if (errno !== 0) {
      this.fail("connect", errnoText(errno));
      return this.close(conn);
    }
    if (this.config.proxy !== undefined && !this.#sendHeader(conn)) return;
    conn.connected = true;
    conn.since = 0;
    this.#connected++;
    conn.due = this.#schedule.slot(conn.index).due;
    this.#next(conn, this.native.now());
  }

  /**
   * Sends `conn`'s PROXY header, first thing on the connection (a few dozen
   * bytes, which a socket just connected takes whole); false, the
   * connection closed and the failure counted, when it does not go.
   */
  #sendHeader(conn: Conn): boolean {
    const { libc } = this.native;
    const { version, source } = this.config.proxy!;
    let header: Uint8Array;
    if (this.#family === AF_UNIX) {
      header = clientHeader(version, source, undefined, undefined);
    } else {
      const local = new Uint8Array(SOCKADDR_MAX);
      const length = new Uint32Array([local.length]);
      libc.getsockname(conn.fd, local, length);
      header = clientHeader(
        version,
        source,
        fromSockaddr(this.native, local),
        { hostname: this.config.hostname, port: this.config.port },
      );
    }
    const w = libc.send(conn.fd, header, header.length, MSG_NOSIGNAL);
    if (w === header.length) return true;
    this.fail(
      "connect",
      w < 0
        ? `PROXY header: ${errnoText(this.native.errno())}`
        : "PROXY header: the socket took part of it",
    );
    this.close(conn);
    return false;
  }

  /** The calling thread wrote the eventfd: stop, maybe. */
  protected woken(): void {
    if (Atomics.load(this.config.control, 0) !== STOP_LOAD) return;
    this.#stop(this.native.now());
  }

  /**
   * Ends the test: no new round trips, and none counted from now. Those in
   * flight may finish, for up to {@linkcode drainMs}, so that each socket
   * closes with nothing owed and nothing unread: the server sees a client
   * close, not a reset. Idle connections close at once.
   */
  #stop(now: number): void {
    if (!this.#schedule.stop(now)) return;
    this.#cpu.end();
    for (const conn of this.conns) {
      if (conn?.open && !(conn.connected && conn.since > 0)) this.close(conn);
    }
  }

  /**
   * `length` bytes of `conn`'s echo arrived in `bytes` (from its start);
   * `now` is the time. Checks them, and ends or goes on with the round trip.
   */
  protected echoed(
    conn: Conn,
    bytes: Uint8Array,
    length: number,
    now: number,
  ): void {
    const { message } = this.config;
    if (length === 0) {
      const { received } = conn;
      if (this.#refused(conn)) this.fail("refused", failure.refused(false));
      else this.fail("other", failure.closedEarly(received, message.length));
      return this.close(conn);
    }
    const at = conn.received;
    if (at + length > conn.sent) {
      this.fail("mismatch", failure.tooLong(message.length));
      return this.close(conn);
    }
    const k = this.#differs(bytes, at, length);
    if (k !== -1) {
      this.fail("mismatch", failure.differs(at + k));
      return this.close(conn);
    }
    conn.received += length;
    if (conn.received < message.length) return;
    if (this.#schedule.finished(conn.since, now)) {
      this.config.progress[PROGRESS_DONE] = this.#schedule.completed;
    }
    conn.since = 0;
    this.#next(conn, now);
  }

  /**
   * A datagram of `length` bytes in `bytes` came back to `conn` at `now`:
   * its reply (the round trip ends, counted or mismatched), or a late one
   * (skipped; the round trip waits on).
   */
  protected datagramEchoed(
    conn: Conn,
    bytes: Uint8Array,
    length: number,
    now: number,
  ): void {
    if (conn.since === 0) return; // Nothing in flight: a late reply.
    const sent = this.messageOf(conn);
    if (conn.datagram !== undefined && length === sent.length) {
      const late = uint32(bytes, 0) === conn.index &&
        uint32(bytes, 4) < conn.mine;
      if (late) return;
    }
    let at = -1;
    for (let k = 0; k < Math.min(length, sent.length); k++) {
      if (bytes[k] !== sent[k]) {
        at = k;
        break;
      }
    }
    if (at !== -1 || length !== sent.length) {
      this.fail(
        "mismatch",
        at !== -1
          ? `Reply differs from what was sent at byte ${at}`
          : `Reply is ${length} bytes, ${sent.length} were sent`,
      );
    } else if (this.#schedule.finished(conn.since, now)) {
      this.config.progress[PROGRESS_DONE] = this.#schedule.completed;
    }
    conn.since = 0;
    this.#next(conn, now);
  }

  /** Bytes of the echo `conn` still waits for, and one more. */
  protected owed(conn: Conn): number {
    return conn.sent - conn.received + 1;
  }

  /** An I/O error on `conn`: it is closed. */
  protected ioFailed(conn: Conn, errno: number): void {
    const reset = errno === ECONNRESET || errno === EPIPE;
    if (reset && this.#refused(conn)) {
      this.fail("refused", failure.refused(true));
    } else this.fail("other", errnoText(errno));
    this.close(conn);
  }

  /** Whether `conn` ends before any byte came back: a refusal, likely. */
  #refused(conn: Conn): boolean {
    return conn.mine === 1 && conn.received === 0;
  }

  protected close(conn: Conn): void {
    if (!conn.open) return;
    conn.open = false;
    this.#live--;
    this.#waiting.delete(conn);
    this.release(conn);
  }

  protected fail(kind: FailureKind, message: string): void {
    this.#failures.add(kind, message);
    this.config.progress[PROGRESS_ERRORS]++;
  }

  #timeout(): number {
    const schedule = this.#schedule;
    let at = schedule.stopped
      ? schedule.drainUntil
      : Math.min(this.#nextWatch, schedule.deadline);
    if (!this.#cpu.begun) at = Math.min(at, schedule.measuredFrom);
    if (this.#waiting.size > 0) {
      for (const conn of this.#waiting) at = Math.min(at, conn.due);
    }
    if (at === Infinity) return -1;
    return Math.max(0, at - this.native.now());
  }

  /** Starts `conn`'s next round trip, now or at its slot; or ends it. */
  #next(conn: Conn, now: number, waited = false): void {
    const next = this.#schedule.next(conn, now, waited);
    if (next.t === "done") return this.close(conn);
    if (next.t === "wait") {
      this.#waiting.add(conn);
      return;
    }
    this.#begin(conn, next.since);
  }

  #begin(conn: Conn, since: number): void {
    this.#schedule.begin(conn);
    if (conn.datagram !== undefined) {
      setUint32(conn.datagram, 0, conn.index);
      setUint32(conn.datagram, 4, conn.mine);
    }
    conn.since = since;
    conn.sent = 0;
    conn.received = 0;
    this.send(conn);
  }

  /**
   * Where the `length` bytes in `bytes` differ from the message's bytes
   * from `at`, or -1: in JavaScript for a few bytes, with memcmp() above
   * that (a foreign call costs what comparing about 150 bytes here does).
   */
  #differs(bytes: Uint8Array, at: number, length: number): number {
    const { message } = this.config;
    if (length > SHORT_COMPARE) {
      const got = length === bytes.length ? bytes : bytes.subarray(0, length);
      const expected = message.subarray(at, at + length);
      if (this.native.libc.memcmp(got, expected, expected.length) === 0) {
        return -1;
      }
    }
    for (let k = 0; k < length; k++) {
      if (bytes[k] !== message[at + k]) return k;
    }
    return -1;
  }

  #timers(): void {
    const schedule = this.#schedule;
    if (
      this.#waiting.size === 0 && this.#nextWatch === Infinity &&
      schedule.deadline === Infinity && this.#cpu.begun && !schedule.stopped
    ) {
      return;
    }
    const now = this.native.now();
    if (schedule.stopped) {
      if (now < schedule.drainUntil) return;
      // Still owed an echo: abandoned.
      for (const conn of this.conns) if (conn?.open) this.close(conn);
      return;
    }
    if (now >= schedule.measuredFrom) this.#cpu.begin();
    if (now >= schedule.deadline) return this.#stop(now);
    for (const conn of [...this.#waiting]) {
      if (conn.due > now) continue;
      this.#waiting.delete(conn);
      this.#next(conn, now, true);
    }
    if (now < this.#nextWatch) return;
    this.#nextWatch = now + schedule.watchMs;
    const { timeout } = this.config;
    for (const conn of this.conns) {
      if (
        this.config.udp && conn?.open && conn.connected &&
        schedule.timedOut(conn.since, now)
      ) {
        // Lost: the next datagram goes.
        this.#lost++;
        conn.since = 0;
        this.#next(conn, now);
        continue;
      }
      if (conn?.open && schedule.timedOut(conn.since, now)) {
        if (conn.connected) {
          this.fail("other", failure.roundTripTimeout(timeout));
        } else {
          this.fail("connect", `Connect timed out after ${timeout} ms`);
        }
        this.close(conn);
      }
    }
  }

  #result(): LoadResult {
    return {
      connected: this.#connected,
      roundTrips: this.#schedule.completed,
      durationMs: this.#schedule.durationMs,
      latencyHistogram: encodeHistogram(this.#schedule.histogram),
      latencyUs: latencySummary(this.#schedule.histogram),
      lost: this.#lost,
      ...this.#failures.report(),
      cpuMs: this.#cpu.ms,
    };
  }
}

/** The big-endian 32-bit number at `at` in `bytes` (no view to allocate). */
function uint32(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 24 | bytes[at + 1] << 16 | bytes[at + 2] << 8 |
    bytes[at + 3]) >>> 0;
}

/** Writes `value` big-endian at `at` in `bytes`. */
function setUint32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
}
