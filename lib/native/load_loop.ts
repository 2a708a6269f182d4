// Private: the native engine's load generator: one epoll loop that drives
// every connection of a loadTest({ engine: "native" }) through libc
// (lib/native/ffi.ts). It runs in a Worker (lib/native/load_worker.ts) and
// blocks in epoll_wait(); the calling thread stops it through shared memory
// and an eventfd (lib/native/native_load.ts). Not exported from mod.ts.
//
// The same round trips as lib/load_test.ts: each connection sends the
// message, reads the whole echo and compares every byte (memcmp), and
// repeats; with a rate, each connection has its slot in a fixed schedule
// and a late round trip is measured from when it was due.

import {
  type Latency,
  latencyHistogram,
  latencySummary,
} from "../client/latency.ts";
import {
  EAGAIN,
  EINPROGRESS,
  EINTR,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_MOD,
  EPOLL_EVENT_SIZE,
  EPOLLERR,
  epollEvents,
  epollFd,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  errnoText,
  IPPROTO_TCP,
  MSG_NOSIGNAL,
  type Native,
  setEpollEvent,
  SO_ERROR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  sockaddr,
  SOL_SOCKET,
  TCP_NODELAY,
} from "./ffi.ts";

/** `control[0]`: 0 while running, 1 once the calling thread says stop. */
export const STOP_LOAD = 1;
/** Where the calling thread reads progress: round trips done, errors. */
export const PROGRESS_DONE = 0;
export const PROGRESS_ERRORS = 1;

const MAX_EVENTS = 256;
/** Echo chunks up to this size are compared in JavaScript. */
const SHORT_COMPARE = 128;
const MAX_ERROR_MESSAGES = 5;

/** The test, as loadTest checked it. */
export interface LoadPlan {
  hostname: string;
  port: number;
  message: Uint8Array;
  connections: number;
  count: number;
  countPerConnection: number;
  rate: number | undefined;
  timeout: number;
  /** Milliseconds at the start whose round trips are not counted. */
  warmup: number;
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
  latencyUs: Latency;
  /** Datagrams unanswered: none over TCP. */
  lost: number;
  connectErrors: number;
  mismatches: number;
  otherErrors: number;
  errorMessages: string[];
}

/** One connection and its round trip in flight. */
class Conn {
  connected = false;
  /** Bytes of the message written, and of its echo read and checked. */
  sent = 0;
  received = 0;
  /** When the round trip in flight started (or was due); 0: none. */
  since = 0;
  /** When the next round trip is due, with a rate. */
  due = 0;
  /** Round trips this connection has started. */
  mine = 0;
  /** The epoll events it is registered for. */
  events = EPOLLOUT;
  constructor(readonly fd: number, readonly index: number) {}
}

/** The load loop of one thread. */
export class LoadLoop {
  #native: Native;
  #config: LoadConfig;
  #epoll: number;
  #events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  #eventsView = new DataView(this.#events.buffer);
  #one = new Uint8Array(EPOLL_EVENT_SIZE);
  #oneView = new DataView(this.#one.buffer);
  /** One byte more than the message: an echo longer than it shows. */
  #buffer: Uint8Array;
  #int = new Int32Array(1);
  #intLength = new Uint32Array(1);
  #wakeBuffer = new Uint8Array(8);
  #conns = new Map<number, Conn>();
  /** Connections waiting for their slot in the rate's schedule. */
  #waiting = new Set<Conn>();
  #histogram = latencyHistogram();
  #interval: number;
  #startedAt: number;
  #endedAt: number;
  /** When round trips start to count (after the warm-up). */
  #measuredFrom: number;
  #nextWatch = Infinity;
  #stopped = false;
  #started = 0;
  #completed = 0;
  #connected = 0;
  #connectErrors = 0;
  #mismatches = 0;
  #otherErrors = 0;
  #errorMessages: string[] = [];

  constructor(native: Native, config: LoadConfig) {
    this.#native = native;
    this.#config = config;
    this.#startedAt = this.#endedAt = native.now();
    this.#measuredFrom = this.#startedAt + config.warmup;
    this.#buffer = new Uint8Array(
      Math.max(64 * 1024, config.message.length + 1),
    );
    this.#interval = config.rate === undefined
      ? 0
      : 1000 * config.connections / config.rate;
    const epoll = native.libc.epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) throw new Error(`epoll_create1: ${this.#errno()}`);
    this.#epoll = epoll;
    this.#ctl(EPOLL_CTL_ADD, config.wakeFd, EPOLLIN);
    if (config.timeout > 0) {
      this.#nextWatch = this.#startedAt + this.#watchMs();
    }
  }

  /** Opens every connection and runs until the test is over. */
  run(): LoadResult {
    const { libc } = this.#native;
    try {
      for (let i = 0; i < this.#config.connections; i++) this.#open(i);
      while (this.#conns.size > 0 && !this.#stopped) {
        const n = libc.epoll_wait(
          this.#epoll,
          this.#events,
          MAX_EVENTS,
          this.#timeout(),
        );
        if (n < 0) {
          const errno = this.#native.errno();
          if (errno === EINTR) continue;
          throw new Error(`epoll_wait: ${errnoText(errno)}`);
        }
        for (let i = 0; i < n; i++) {
          const fd = epollFd(this.#eventsView, i);
          if (fd === this.#config.wakeFd) {
            this.#woken();
            if (this.#stopped) break;
            continue;
          }
          const conn = this.#conns.get(fd);
          if (conn !== undefined) {
            this.#ready(conn, epollEvents(this.#eventsView, i));
          }
        }
        this.#timers();
      }
    } finally {
      for (const conn of [...this.#conns.values()]) this.#close(conn);
      libc.close(this.#epoll);
    }
    return this.#result();
  }

  #errno(): string {
    return errnoText(this.#native.errno());
  }

  #ctl(op: number, fd: number, events: number): void {
    setEpollEvent(this.#oneView, 0, events, fd);
    this.#native.libc.epoll_ctl(this.#epoll, op, fd, this.#one);
  }

  #watchMs(): number {
    return Math.min(this.#config.timeout / 4, 1000);
  }

  #timeout(): number {
    let at = this.#nextWatch;
    if (this.#waiting.size > 0) {
      for (const conn of this.#waiting) at = Math.min(at, conn.due);
    }
    if (at === Infinity) return -1;
    return Math.max(0, Math.ceil(at - this.#native.now()));
  }

  #woken(): void {
    this.#native.libc.read(
      this.#config.wakeFd,
      this.#wakeBuffer,
      this.#wakeBuffer.length,
    );
    if (Atomics.load(this.#config.control, 0) !== STOP_LOAD) return;
    // Ends the test: no new round trips; ones in flight are abandoned.
    this.#stopped = true;
    this.#endedAt = this.#native.now();
  }

  #open(index: number): void {
    const { libc } = this.#native;
    const { hostname, port } = this.#config;
    const address = sockaddr(this.#native, hostname, port);
    const family = new DataView(address.buffer).getUint16(0, true);
    const fd = libc.socket(
      family,
      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
      0,
    );
    if (fd < 0) return this.#fail("connect", `socket: ${this.#errno()}`);
    this.#int[0] = 1;
    libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, this.#int, 4);
    const conn = new Conn(fd, index);
    conn.since = this.#native.now(); // The connect's own timeout.
    if (libc.connect(fd, address, address.length) < 0) {
      const errno = this.#native.errno();
      if (errno !== EINPROGRESS) {
        libc.close(fd);
        return this.#fail("connect", errnoText(errno));
      }
    }
    this.#conns.set(fd, conn);
    this.#ctl(EPOLL_CTL_ADD, fd, EPOLLOUT);
  }

  #ready(conn: Conn, events: number): void {
    if (!conn.connected) return this.#connectDone(conn);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) this.#readable(conn);
    else if (events & EPOLLOUT) this.#write(conn);
  }

  /** The connect finished, one way or the other. */
  #connectDone(conn: Conn): void {
    this.#intLength[0] = 4;
    this.#native.libc.getsockopt(
      conn.fd,
      SOL_SOCKET,
      SO_ERROR,
      this.#int,
      this.#intLength,
    );
    if (this.#int[0] !== 0) {
      this.#fail("connect", errnoText(this.#int[0]));
      return this.#close(conn);
    }
    conn.connected = true;
    conn.since = 0;
    this.#connected++;
    conn.due = this.#startedAt +
      this.#interval * conn.index / this.#config.connections;
    this.#next(conn);
  }

  /**
   * Starts `conn`'s next round trip, now or at its slot; or ends it. `now`
   * is the time, if the caller just read the clock.
   */
  #next(conn: Conn, now: number = this.#native.now()): void {
    const { count, countPerConnection } = this.#config;
    if (
      this.#stopped || this.#started >= count ||
      conn.mine >= countPerConnection
    ) {
      return this.#close(conn);
    }
    if (this.#interval > 0 && conn.due > now) {
      // On schedule: wait for the slot (our own lateness is not the
      // server's).
      this.#waiting.add(conn);
      this.#watch(conn, 0);
      return;
    }
    this.#begin(conn, this.#interval > 0 ? conn.due : now);
  }

  #begin(conn: Conn, since: number): void {
    this.#started++;
    conn.mine++;
    conn.due += this.#interval;
    conn.since = since;
    conn.sent = 0;
    conn.received = 0;
    this.#write(conn);
  }

  /** Writes what is left of the message; waits for EPOLLOUT if need be. */
  #write(conn: Conn): void {
    const { message } = this.#config;
    while (conn.sent < message.length) {
      const rest = conn.sent === 0 ? message : message.subarray(conn.sent);
      const w = this.#native.libc.send(
        conn.fd,
        rest,
        rest.length,
        MSG_NOSIGNAL,
      );
      if (w < 0) {
        const errno = this.#native.errno();
        if (errno === EINTR) continue;
        if (errno === EAGAIN) return this.#watch(conn, EPOLLIN | EPOLLOUT);
        this.#fail("other", errnoText(errno));
        return this.#close(conn);
      }
      conn.sent += w;
    }
    this.#watch(conn, EPOLLIN);
  }

  /** Registers `conn` for `events`, unless it is already (a system call). */
  #watch(conn: Conn, events: number): void {
    if (conn.events === events) return;
    conn.events = events;
    this.#ctl(EPOLL_CTL_MOD, conn.fd, events);
  }

  #readable(conn: Conn): void {
    const { libc } = this.#native;
    const { message } = this.#config;
    const buffer = this.#buffer;
    while (true) {
      // What is owed and one byte more (an echo longer than the message
      // shows): a read sized to the echo costs the kernel less than 64 KiB,
      // and recv() skips read()'s file layer (faster in 3 of 3 pairs here).
      const want = Math.min(buffer.length, conn.sent - conn.received + 1);
      const r = libc.recv(conn.fd, buffer, want, 0);
      if (r < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        this.#fail("other", errnoText(errno));
        return this.#close(conn);
      }
      if (r === 0) {
        this.#fail(
          "other",
          `Server closed after ${conn.received} of ${message.length} echoed bytes`,
        );
        return this.#close(conn);
      }
      const at = conn.received;
      if (at + r > conn.sent) {
        this.#fail(
          "mismatch",
          `Echo is longer than what was sent (${message.length} bytes)`,
        );
        return this.#close(conn);
      }
      const k = this.#differs(at, r);
      if (k !== -1) {
        this.#fail(
          "mismatch",
          `Echo differs from what was sent at byte ${at + k}`,
        );
        return this.#close(conn);
      }
      conn.received += r;
      // A partial echo: the rest comes with the next readiness event (a
      // read now would most likely find nothing).
      if (conn.received < message.length) return;
      const now = this.#native.now();
      if (now >= this.#measuredFrom) {
        this.#histogram.recordValue(
          Math.max(1, Math.round((now - conn.since) * 1000)),
        );
        this.#completed++;
        this.#config.progress[PROGRESS_DONE] = this.#completed;
        this.#endedAt = now;
      }
      conn.since = 0;
      return this.#next(conn, now);
    }
  }

  /**
   * Where the `length` bytes read differ from the message's bytes from
   * `at`, or -1: in JavaScript for a few bytes, with memcmp() above that
   * (a foreign call costs what comparing about 150 bytes here does).
   */
  #differs(at: number, length: number): number {
    const buffer = this.#buffer;
    const { message } = this.#config;
    if (length > SHORT_COMPARE) {
      const got = length === buffer.length
        ? buffer
        : buffer.subarray(0, length);
      const expected = message.subarray(at, at + length);
      if (this.#native.libc.memcmp(got, expected, expected.length) === 0) {
        return -1;
      }
    }
    for (let k = 0; k < length; k++) {
      if (buffer[k] !== message[at + k]) return k;
    }
    return -1;
  }

  #timers(): void {
    if (this.#waiting.size === 0 && this.#nextWatch === Infinity) return;
    const now = this.#native.now();
    for (const conn of [...this.#waiting]) {
      if (conn.due > now) continue;
      this.#waiting.delete(conn);
      this.#begin(conn, conn.due);
    }
    if (now < this.#nextWatch) return;
    this.#nextWatch = now + this.#watchMs();
    const { timeout } = this.#config;
    for (const conn of [...this.#conns.values()]) {
      if (conn.since > 0 && now - conn.since > timeout) {
        if (conn.connected) {
          this.#fail("other", `Round trip timed out after ${timeout} ms`);
        } else {
          this.#fail("connect", `Connect timed out after ${timeout} ms`);
        }
        this.#close(conn);
      }
    }
  }

  #close(conn: Conn): void {
    if (!this.#conns.delete(conn.fd)) return;
    this.#waiting.delete(conn);
    this.#native.libc.close(conn.fd);
  }

  #fail(kind: "connect" | "mismatch" | "other", message: string): void {
    if (kind === "connect") this.#connectErrors++;
    else if (kind === "mismatch") this.#mismatches++;
    else this.#otherErrors++;
    this.#config.progress[PROGRESS_ERRORS]++;
    if (this.#errorMessages.length < MAX_ERROR_MESSAGES) {
      this.#errorMessages.push(message);
    }
  }

  #result(): LoadResult {
    return {
      connected: this.#connected,
      roundTrips: this.#completed,
      durationMs: Math.max(0, this.#endedAt - this.#measuredFrom),
      latencyUs: latencySummary(this.#histogram),
      lost: 0,
      connectErrors: this.#connectErrors,
      mismatches: this.#mismatches,
      otherErrors: this.#otherErrors,
      errorMessages: this.#errorMessages,
    };
  }
}
