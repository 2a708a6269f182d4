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
  type PhaseFigures,
  type SchedulePlan,
  type Slot,
} from "../client/schedule.ts";
import {
  type Ending,
  failure,
  type FailureKind,
  Failures,
} from "../client/failures.ts";
import {
  AF_UNIX,
  ECONNRESET,
  EPIPE,
  errnoText,
  fromSockaddr,
  IP_BIND_ADDRESS_NO_PORT,
  IPPROTO_IP,
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
import type { ClientTlsOptions } from "../tls/context.ts";
import { clientHeader } from "../proxy/header.ts";
import { TlsContext } from "../tls/context.ts";
import { type OpenSsl, openSsl } from "../tls/openssl.ts";
import { CLOSED, freeSaved, TlsSession } from "../tls/session.ts";

/** `control[0]`: 0 while running, 1 once the calling thread says stop. */
export const STOP_LOAD = 1;
/** `control[0]`: the calling thread asks for the latency histogram so far. */
export const SNAPSHOT_LOAD = 2;
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
  /** TLS through OpenSSL (on epoll), if asked. */
  tls: LoadTlsPlan | undefined;
  /** Endings that are outcomes, not failures: the slot reconnects. */
  expect: Ending[];
  io: NativeIo;
  /** Local addresses the connections come from, in turn; any without. */
  sources?: string[];
}

/** Where the loop sends the histogram so far, when asked (SNAPSHOT_LOAD). */
export type Snapshots = (latencyHistogram: string) => void;

/** What a TLS load test checks and presents. */
export interface LoadTlsPlan extends ClientTlsOptions {
  /** The name asked for (SNI) and whose certificate is accepted. */
  serverName: string;
}

/** What the load loop needs: the test, and the calling thread's handles. */
export interface LoadConfig extends LoadPlan {
  wakeFd: number;
  control: Int32Array;
  progress: Float64Array;
  snapshots?: Snapshots;
}

/** What it measured (latency in µs), for the calling thread's report. */
export interface LoadResult extends PhaseFigures {
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
  /** Connections that ended early, by how (expected or not). */
  resets: number;
  closes: number;
  timeouts: number;
  errorMessages: string[];
  /** CPU time of this process in the measured part (see CpuWindow). */
  cpuMs: number;
  /** TLS: handshakes counted that resumed a session. */
  resumedHandshakes?: number;
  /** Connects started from each source address, with `sources`. */
  sourceConnects?: Record<string, number>;
}

/**
 * One connection slot: its socket and its round trip in flight, and its
 * place in the schedule, which outlives a socket replaced by a reconnect.
 */
export class Conn implements Slot {
  /** Until closed. */
  open = true;
  /** Connected, its handshake done: round trips may go. */
  connected = false;
  /** Its TLS handshake is under way (after the connect). */
  handshaking = false;
  /** Bytes of the message sent, and of its echo read and checked. */
  sent = 0;
  received = 0;
  /** When the round trip in flight started (or was due); 0: none. */
  since = 0;
  /** When the next round trip is due, with a rate (see Slot). */
  due = 0;
  /** Round trips this slot has begun, and on this socket. */
  mine = 0;
  onSocket = 0;
  /** The epoll events it is registered for (the epoll loop's). */
  events = 0;
  /** A recv is in flight (the io_uring loop's). */
  reading = false;
  /** UDP: this socket's own copy of the message, stamped per datagram. */
  datagram: Uint8Array | undefined;
  /** TLS: its session, and ciphertext the socket has not taken yet. */
  tls: TlsSession | undefined;
  unsent: Uint8Array | undefined;
  /** TLS: the last session, to resume on the next connection (a ticket). */
  saved: Deno.PointerValue = null;
  constructor(public fd: number, readonly index: number) {}

  /** Back to a fresh socket `fd` (a reconnect); the slot's place stays. */
  reset(fd: number): void {
    this.fd = fd;
    this.open = true;
    this.connected = this.handshaking = this.reading = false;
    this.sent =
      this.received =
      this.since =
      this.onSocket =
        0;
    this.events = 0;
    this.tls = this.unsent = undefined;
  }
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
  #failures: Failures;
  /** Slots whose connection closed for a reconnect: opened after a wait. */
  #reopen: Conn[] = [];
  /** TLS: OpenSSL, the test's context, and where plaintext is read to. */
  #ssl: OpenSsl | undefined;
  protected readonly tls: TlsContext | undefined;
  #plain: Uint8Array | undefined;
  #resumed = 0;
  /** The source addresses, as `sockaddr`s, and the connects from each. */
  #sources: Uint8Array[];
  #sourceConnects: number[];

  constructor(native: Native, config: LoadConfig) {
    this.native = native;
    this.config = config;
    this.address = config.path === undefined
      ? sockaddr(native, config.hostname, config.port)
      : unixSockaddr(config.path);
    this.#family = this.address[0] | this.address[1] << 8;
    this.#sources = (config.sources ?? []).map((a) => sockaddr(native, a, 0));
    this.#sourceConnects = this.#sources.map(() => 0);
    this.#schedule = new LoadSchedule(config, native.now());
    this.#failures = new Failures(config.expect);
    if (config.timeout > 0) {
      this.#nextWatch = this.#schedule.startedAt + this.#schedule.watchMs;
    }
    if (config.warmup === 0) this.#cpu.begin();
    if (config.tls !== undefined) {
      this.#ssl = openSsl();
      try {
        this.tls = TlsContext.client(this.#ssl, config.tls);
      } catch (error) {
        this.#ssl.close();
        throw error;
      }
      this.#plain = new Uint8Array(64 * 1024);
    }
  }

  /**
   * Opens every connection and runs until the test is over, and the round
   * trips in flight at its end have finished.
   */
  run(): LoadResult {
    try {
      for (let i = 0; i < this.config.connections; i++) this.open(i);
      while (this.#live > 0 || this.#reopen.length > 0) {
        this.wait(this.#reopen.length > 0 ? 0 : this.#timeout());
        // After the batch: none of its events is for a new socket.
        for (const conn of this.#reopen.splice(0)) {
          this.open(conn.index, conn);
        }
        this.#timers();
      }
      this.#cpu.end();
    } finally {
      // A connection whose socket() failed has no entry.
      for (const conn of this.conns) if (conn !== undefined) this.close(conn);
      this.end();
      for (const conn of this.conns) freeSaved(this.#ssl!, conn?.saved ?? null);
      this.tls?.free();
      this.#ssl?.close();
    }
    return this.#result();
  }

  /**
   * A TCP socket of the server's family, with `flags` (SOCK_NONBLOCK, say)
   * and TCP_NODELAY; -1, the failure counted, when the system refuses one.
   */
  protected socket(flags: number, index: number): number {
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
    if (this.#sources.length > 0) {
      // Connection `index` from source `index mod n`; its port is picked
      // at connect(), per destination, so a source is not limited to one
      // connection a port.
      const at = index % this.#sources.length;
      const source = this.#sources[at];
      libc.setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, this.#one, 4);
      if (libc.bind(fd, source, source.length) < 0) {
        const errno = this.native.errno();
        libc.close(fd);
        this.fail(
          "connect",
          `bind ${this.config.sources![at]}: ${errnoText(errno)}`,
        );
        return -1;
      }
      this.#sourceConnects[at]++;
    }
    return fd;
  }

  /**
   * Creates connection `index`'s socket and starts its connect; `reuse` is
   * the slot's connection when it reconnects (reset to the new socket).
   */
  protected abstract open(index: number, reuse?: Conn): void;
  /** Waits up to `timeoutMs` (-1: no limit) and handles what happened. */
  protected abstract wait(timeoutMs: number): void;
  /** Sends the message on `conn` (a round trip has begun). */
  protected abstract send(conn: Conn): void;
  /** Lets go of `conn`'s socket. */
  protected abstract release(conn: Conn): void;
  /** Lets go of the loop's own resources, once. */
  protected abstract end(): void;
  /**
   * TLS: sends `conn`'s ciphertext (its session's output, after what the
   * socket did not take before), watching for room if need be; false when
   * the connection failed and is closed.
   */
  protected abstract flush(conn: Conn): boolean;

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
    const now = this.native.now();
    this.#schedule.connected(conn.since, now);
    this.#connected++;
    if (this.tls === undefined) return this.#ready(conn, now);
    const session = new TlsSession(this.tls, false);
    session.expect(this.config.tls!.serverName);
    session.resume(conn.saved);
    conn.tls = session;
    conn.handshaking = true;
    conn.since = now; // The handshake's own timeout.
    this.#handshake(conn);
  }

  /** `conn` is connected (and its handshake done): round trips go. */
  #ready(conn: Conn, now: number): void {
    conn.connected = true;
    conn.since = 0;
    if (conn.mine === 0) conn.due = this.#schedule.slot(conn.index).due;
    this.#next(conn, now);
  }

  /** Goes on with `conn`'s TLS handshake, and sends what it wrote. */
  #handshake(conn: Conn): void {
    const session = conn.tls!;
    const done = session.handshake();
    if (!this.flush(conn)) return;
    if (done) {
      const now = this.native.now();
      conn.handshaking = false;
      if (this.#schedule.handshaken(conn.since, now) && session.resumed) {
        this.#resumed++;
      }
      return this.#ready(conn, now);
    }
    if (session.error !== undefined) {
      this.fail("connect", `TLS handshake: ${session.error}`);
      this.close(conn);
    }
  }

  /**
   * TLS: `length` bytes of ciphertext from `conn`'s server arrived in
   * `bytes` (0: it closed) at `now`: the handshake goes on, or what they
   * decrypt to is checked as the echo.
   */
  protected tlsArrived(
    conn: Conn,
    bytes: Uint8Array,
    length: number,
    now: number,
  ): void {
    const session = conn.tls!;
    if (length === 0) {
      if (!conn.handshaking) return this.echoed(conn, bytes, 0, now);
      this.fail("connect", "TLS handshake: the server closed the connection");
      return this.close(conn);
    }
    session.put(bytes, length);
    if (conn.handshaking) {
      this.#handshake(conn);
      if (!conn.open || conn.handshaking) return;
    }
    const plain = this.#plain!;
    // An echo may end a round trip and begin the next, or a reconnect.
    while (conn.open && conn.tls === session) {
      const n = session.read(plain);
      if (n > 0) {
        this.echoed(conn, plain, n, now);
      } else if (n === 0) {
        // A TLS 1.3 ticket or key update may have something to answer.
        this.flush(conn);
        return;
      } else if (n === CLOSED) {
        return this.echoed(conn, plain, 0, now);
      } else {
        this.fail("other", `TLS: ${session.error}`);
        return this.close(conn);
      }
    }
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
    const { control } = this.config;
    if (
      Atomics.compareExchange(control, 0, SNAPSHOT_LOAD, 0) === SNAPSHOT_LOAD
    ) {
      this.config.snapshots?.(encodeHistogram(this.#schedule.histogram));
      return;
    }
    if (Atomics.load(control, 0) !== STOP_LOAD) return;
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
    // A handshake under way may finish too (and then close politely).
    for (const conn of this.conns) {
      const busy = conn !== undefined && conn.since > 0 &&
        (conn.connected || conn.handshaking);
      if (conn?.open && !busy) this.close(conn);
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
      const expected = this.#refused(conn)
        ? this.fail("refused", failure.refused(false), "close")
        : this.fail(
          "other",
          failure.closedEarly(received, message.length),
          "close",
        );
      return this.#ended(conn, expected);
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
    let expected;
    if (reset && this.#refused(conn)) {
      expected = this.fail("refused", failure.refused(true), "reset");
    } else {
      expected = this.fail(
        "other",
        errnoText(errno),
        reset ? "reset" : undefined,
      );
    }
    this.#ended(conn, expected);
  }

  /**
   * `conn` ended early: closed, and, when the test expected that ending,
   * another connection opened in its place.
   */
  #ended(conn: Conn, expected: boolean): void {
    this.close(conn);
    if (expected && !this.config.udp) this.#reopen.push(conn);
  }

  /** Whether `conn` ends before any byte came back: a refusal, likely. */
  #refused(conn: Conn): boolean {
    return conn.onSocket === 1 && conn.received === 0;
  }

  protected close(conn: Conn): void {
    if (!conn.open) return;
    conn.open = false;
    this.#live--;
    this.#waiting.delete(conn);
    const session = conn.tls;
    if (session !== undefined && conn.connected) {
      // Kept to resume on the next connection; our close_notify goes last.
      freeSaved(this.#ssl!, conn.saved);
      conn.saved = session.saved();
      session.closeNotify();
    }
    this.release(conn);
    session?.free();
    conn.tls = undefined;
  }

  /**
   * Counts a failure (`ending`: how its connection ended, if it did);
   * true when the test expected that ending: an outcome, not an error.
   */
  protected fail(
    kind: FailureKind,
    message: string,
    ending?: Ending,
  ): boolean {
    if (this.#failures.add(kind, message, ending)) return true;
    this.config.progress[PROGRESS_ERRORS]++;
    return false;
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
    if (next.t === "reconnect") {
      this.close(conn);
      this.#reopen.push(conn);
      return;
    }
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
    const session = conn.tls;
    if (session === undefined) return this.send(conn);
    const { message } = this.config;
    if (!session.write(message, message.length)) {
      this.fail("other", `TLS: ${session.error}`);
      return this.close(conn);
    }
    conn.sent = message.length;
    this.flush(conn);
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
          const message = failure.roundTripTimeout(timeout);
          this.#ended(conn, this.fail("other", message, "timeout"));
          continue;
        } else if (conn.handshaking) {
          this.fail("connect", `TLS handshake timed out after ${timeout} ms`);
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
      ...this.#schedule.phases(this.tls !== undefined),
      ...(this.tls === undefined ? {} : { resumedHandshakes: this.#resumed }),
      lost: this.#lost,
      ...this.#failures.report(),
      cpuMs: this.#cpu.ms,
      ...(this.#sources.length === 0 ? {} : {
        sourceConnects: Object.fromEntries(
          this.config.sources!.map((a, i) => [a, this.#sourceConnects[i]]),
        ),
      }),
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
