import { type Target, target } from "./client/dial.ts";
import {
  assertDatagram,
  type DatagramTarget,
  datagramTarget,
  ReplyWaiter,
} from "./client/datagram.ts";
import type { ConnectOptions } from "./types.ts";
import { setTimeout as sleep } from "node:timers/promises";
import {
  encodeHistogram,
  latencyHistogram,
  latencySummary,
} from "./client/latency.ts";
import type { LoadResult } from "./native/load_loop.ts";
import { CpuWindow } from "./client/cpu.ts";
import { drainMs } from "./client/drain.ts";
import {
  failure,
  type FailureKind,
  Failures,
  isReset,
  Refusal,
} from "./client/failures.ts";
import { assertPositive, optionError, writeAll } from "./_helpers.ts";
import {
  assertNativeLoad,
  nativeLoad,
  type NativeLoadOptions,
} from "./native/native_load.ts";

/** Options for {@linkcode loadTest}. */
export interface LoadTestOptions extends ConnectOptions {
  /**
   * Connections opened at once; each runs its own round trips one after
   * another.
   *
   * @default {1}
   */
  connections?: number;
  /**
   * Round trips in all, over all connections. Without `count`,
   * `countPerConnection` or `duration`, 1000.
   */
  count?: number;
  /**
   * Round trips each connection makes, instead of a `count` in all: with
   * `connections: 2, countPerConnection: 10`, 20 round trips, 10 on each
   * connection. A connection that fails makes fewer.
   */
  countPerConnection?: number;
  /**
   * Milliseconds to run for, instead of a `count`. At its end (or the
   * signal's), round trips in flight finish, uncounted, for up to a second
   * (at most `timeout`), so that each connection closes with nothing owed:
   * the server sees its clients close, not reset.
   */
  duration?: number;
  /**
   * With `duration`, milliseconds to run first without measuring: round
   * trips are made and checked but not counted, so that the server and
   * this process (its JIT, its caches) are warm when `duration` starts, as
   * a C load generator's warm-up does.
   *
   * @default {0}
   */
  warmup?: number;
  /**
   * The message: its bytes (a string is sent as UTF-8), or a size in bytes
   * for a message of pseudo-random bytes.
   *
   * @default {64}
   */
  message?: string | Uint8Array | number;
  /**
   * Round trips per second to aim for, over all connections; each connection
   * starts its round trips on a fixed schedule. When a connection is behind
   * that schedule because its earlier round trips were slow, latency is
   * measured from when the round trip was due, so a server that falls behind
   * is not flattered (no coordinated omission). Without it, connections go
   * flat out.
   */
  rate?: number;
  /**
   * Milliseconds a round trip may take before it counts as an error and its
   * connection stops; also the connect timeout. 0 waits forever.
   *
   * @default {10000}
   */
  timeout?: number;
  /** Called about every `progressInterval` milliseconds while it runs. */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * How often `onProgress` is called.
   *
   * @default {1000}
   */
  progressInterval?: number;
  /** Aborting it stops the test early; the report covers what was done. */
  signal?: AbortSignal;
  /**
   * What drives the connections. `"native"` is one epoll loop over libc
   * through Deno's FFI, in a Web Worker of its own: plain TCP only, on
   * Linux, with `--allow-ffi` (full access to the process). For driving
   * fast servers at the rate of a C load generator; every byte is still
   * compared and every latency recorded.
   *
   * @default {"default"}
   */
  engine?: "default" | "native";
  /**
   * How the native engine drives its sockets: `"io_uring"` (Linux 6.1+:
   * one system call submits a batch of sends and receives; the fastest),
   * or `"epoll"` (readiness, then a send or recv call each). By default,
   * io_uring where the kernel allows it (containers often forbid it), else
   * epoll; the report says which ran. Only with `engine: "native"`.
   */
  nativeIo?: "io_uring" | "epoll";
}

/** Counters of a running {@linkcode loadTest}. */
export interface LoadProgress {
  /** Milliseconds since the connections were opened. */
  readonly elapsedMs: number;
  /** Round trips completed and verified. */
  readonly roundTrips: number;
  /** Round trips per second since the last progress report. */
  readonly rate: number;
  /** Errors of every kind so far. */
  readonly errors: number;
}

/** Latency figures of a {@linkcode LoadReport}, in microseconds. */
export interface LatencySummary {
  /** Median. */
  readonly p50: number;
  /** 90th percentile. */
  readonly p90: number;
  /** 99th percentile. */
  readonly p99: number;
  /** 99.9th percentile. */
  readonly p999: number;
  /** Slowest round trip. */
  readonly max: number;
  /** Mean. */
  readonly mean: number;
}

/** What a {@linkcode loadTest} did and measured. */
export interface LoadReport {
  /** The server, as `host:port` or a Unix socket's path. */
  readonly address: string;
  /** Connections asked for. */
  readonly connections: number;
  /** Connections that were opened. */
  readonly connected: number;
  /** Bytes in each message. */
  readonly messageBytes: number;
  /** Round trips completed, every byte of the echo verified. */
  readonly roundTrips: number;
  /** Milliseconds from the first connect to the last round trip. */
  readonly durationMs: number;
  /** Round trips per second over `durationMs`. */
  readonly roundTripsPerSecond: number;
  /** Megabytes (10^6 bytes) per second echoed, in each direction. */
  readonly megabytesPerSecond: number;
  /** Latency of the round trips, from an HDR histogram (3 digits). */
  readonly latencyUs: LatencySummary;
  /**
   * That histogram (round-trip times in µs), compressed and in base64 as
   * HdrHistogram's tools exchange histograms: `decodeFromCompressedBase64`
   * of hdr-histogram-js (or HdrHistogram's Java and C libraries) reads it
   * back, for a percentile distribution, a plot, or several runs merged.
   */
  readonly latencyHistogram: string;
  /**
   * Over UDP, datagrams whose reply did not come within `timeout` (not an
   * error: UDP may lose datagrams); 0 over TCP.
   */
  readonly lost: number;
  /** Connections that could not be opened. */
  readonly connectErrors: number;
  /**
   * Connections the server closed or reset before echoing a byte: refused
   * by access rules or limits, or expecting a PROXY header or TLS.
   */
  readonly closedBeforeEcho: number;
  /** Echoes that differed from what was sent. */
  readonly mismatches: number;
  /** Other failures: resets and early closes mid-echo, timeouts. */
  readonly otherErrors: number;
  /** The first few error messages, for the user. */
  readonly errorMessages: readonly string[];
  /**
   * CPU time this process used in the measured part of the test (the
   * window of `durationMs`: no start-up or warm-up), in
   * milliseconds.
   */
  readonly cpuMs: number;
  /** How the native engine drove the sockets; absent with the default. */
  readonly nativeIo?: "io_uring" | "epoll";
}

/**
 * Runs a load test against an echo server: each connection sends the
 * message, waits for the whole echo, checks it byte for byte, and repeats,
 * until `count` round trips are done or `duration` has passed. Failures are
 * counted, not thrown: check `mismatches`, `connectErrors` and `otherErrors`
 * in the report.
 *
 * @example Ten round trips of 64 bytes
 * ```ts
 * import { loadTest, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * const report = await loadTest({ port: server.addr.port, count: 10 });
 * assert.equal(report.roundTrips, 10);
 * assert.equal(report.mismatches, 0);
 * ```
 *
 * @param options Where, how hard, for how long.
 * @returns The report, once every connection is closed.
 * @throws {RangeError} An option is out of range; the error's `option` field
 * names it and its `reason` field says what is wrong.
 */
export async function loadTest(
  options: LoadTestOptions = {},
): Promise<LoadReport> {
  const {
    connections = 1,
    duration,
    rate,
    timeout = 10_000,
    progressInterval = 1000,
    onProgress,
    signal,
    warmup = 0,
  } = options;
  const { countPerConnection = Infinity } = options;
  const count = options.count ??
    (duration === undefined && options.countPerConnection === undefined
      ? 1000
      : Infinity);
  const server = options.udp ? datagramTarget(options) : target(options);
  assertPositive("connections", connections, true);
  assertPositive("count", count, false);
  assertPositive("countPerConnection", countPerConnection, false);
  if (duration !== undefined) assertPositive("duration", duration, false);
  if (warmup !== 0) {
    if (duration === undefined) {
      throw optionError("warmup", "needs a duration", TypeError);
    }
    assertPositive("warmup", warmup, false);
  }
  if (rate !== undefined) assertPositive("rate", rate, false);
  const message = messageBytes(options.message ?? 64);
  if (options.udp) assertDatagram(message);
  const { engine = "default" } = options;
  if (engine === "native") {
    return nativeReport(server.address, message, {
      connections,
      count,
      countPerConnection,
      rate,
      timeout,
      duration,
      warmup,
      progressInterval,
      onProgress,
      signal,
    }, options);
  }
  if (engine !== "default") {
    throw optionError("engine", `must be default or native, got ${engine}`);
  }
  if (options.nativeIo !== undefined) {
    throw optionError("nativeIo", "needs engine native", TypeError);
  }
  const open = "open" in server
    ? (index: number) =>
      Promise.resolve(datagramChannel(server, message, timeout, index))
    : async (_: number, signal: AbortSignal | undefined) =>
      streamChannel(await (server as Target).connect(signal), message);

  const run = new Run({
    open,
    connections,
    count,
    countPerConnection,
    rate,
    timeout,
    warmup,
  });
  const stopAt = duration === undefined
    ? undefined
    : setTimeout(() => run.stop(), warmup + duration);
  let lastCount = 0;
  let lastAt = performance.now();
  const ticker = onProgress === undefined ? undefined : setInterval(() => {
    const now = performance.now();
    onProgress({
      elapsedMs: now - run.startedAt,
      roundTrips: run.completed,
      rate: (run.completed - lastCount) / ((now - lastAt) / 1000),
      errors: run.errors,
    });
    lastCount = run.completed;
    lastAt = now;
  }, progressInterval);
  signal?.addEventListener("abort", run.stop, { once: true });
  try {
    await Promise.all(
      Array.from({ length: connections }, (_, i) => run.connection(i)),
    );
  } finally {
    clearTimeout(stopAt);
    clearInterval(ticker);
    run.finish();
    signal?.removeEventListener("abort", run.stop);
  }
  return reportOf(server.address, connections, message, {
    connected: run.connected,
    roundTrips: run.completed,
    durationMs: Math.max(0, run.endedAt - run.measuredFrom),
    latencyHistogram: encodeHistogram(run.histogram),
    latencyUs: latencySummary(run.histogram),
    lost: run.lost,
    ...run.failures.report(),
    cpuMs: run.cpu.ms,
  });
}

/** The report of what either engine measured. */
function reportOf(
  address: string,
  connections: number,
  message: Uint8Array,
  measured: LoadResult,
): LoadReport {
  const seconds = measured.durationMs / 1000;
  const rate = (n: number) => seconds > 0 ? n / seconds : 0;
  return {
    ...measured,
    address,
    connections,
    messageBytes: message.length,
    roundTripsPerSecond: rate(measured.roundTrips),
    megabytesPerSecond: rate(measured.roundTrips * message.length) / 1e6,
  };
}

/** {@linkcode loadTest} with the native engine: the same report. */
async function nativeReport(
  address: string,
  message: Uint8Array,
  run: Omit<NativeLoadOptions, "hostname" | "port" | "message" | "io">,
  options: LoadTestOptions,
): Promise<LoadReport> {
  assertNativeLoad(
    options.udp
      ? "UDP"
      : options.tls
      ? "TLS"
      : options.path !== undefined
      ? "a Unix socket"
      : options.sendProxy !== undefined
      ? "with a PROXY header"
      : undefined,
  );
  const { hostname = "127.0.0.1", port = 9000 } = options;
  const { io, ...result } = await nativeLoad({
    ...run,
    hostname: await ipAddress(hostname),
    port,
    message,
    io: options.nativeIo,
  });
  return {
    ...reportOf(address, run.connections, message, result),
    nativeIo: io,
  };
}

/** `hostname` as an IP address: itself, or the first one DNS gives. */
async function ipAddress(hostname: string): Promise<string> {
  if (/^[\d.]+$/.test(hostname) || hostname.includes(":")) return hostname;
  if (hostname === "localhost") return "127.0.0.1";
  for (const type of ["A", "AAAA"] as const) {
    const found = await Deno.resolveDns(hostname, type).catch(() => []);
    if (found.length > 0) return found[0];
  }
  throw new Deno.errors.NotFound(`Cannot resolve ${hostname}`);
}

interface RunOptions {
  /** Opens connection number `index` (a socket of its own, for UDP). */
  open(index: number, signal: AbortSignal | undefined): Promise<Channel>;
  connections: number;
  count: number;
  countPerConnection: number;
  rate: number | undefined;
  timeout: number;
  /** Milliseconds at the start whose round trips are not counted. */
  warmup: number;
}

/** The shared state of one load test's connections. */
class Run {
  readonly histogram = latencyHistogram();
  readonly cpu = new CpuWindow();
  readonly startedAt = performance.now();
  /** When round trips start to count (after the warm-up). */
  readonly measuredFrom: number;
  endedAt = this.startedAt;
  started = 0;
  completed = 0;
  connected = 0;
  readonly failures = new Failures();
  #options: RunOptions;
  #stopped = false;
  lost = 0;
  /** Open connections, and when their round trip in flight started. */
  #conns = new Map<Channel, number>();
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #warmedUp: ReturnType<typeof setTimeout> | undefined;
  #drained: ReturnType<typeof setTimeout> | undefined;
  /** Aborted at the stop: ends waits for a slot in the rate's schedule. */
  #stopping = new AbortController();

  constructor(options: RunOptions) {
    this.#options = options;
    this.measuredFrom = this.startedAt + options.warmup;
    if (options.warmup === 0) this.cpu.begin();
    else this.#warmedUp = setTimeout(() => this.cpu.begin(), options.warmup);
    // One timer for every connection's round-trip timeout, instead of one
    // per round trip: the generator's own cost stays low.
    if (options.timeout > 0) {
      this.#watchdog = setInterval(
        this.#checkTimeouts,
        Math.min(options.timeout / 4, 1000),
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
   * Ends the test: no new round trips, and none counted from now. Those in
   * flight may finish, for up to {@linkcode drainMs}, so that each
   * connection closes with nothing owed and nothing unread: the server sees
   * a client close, not a reset. Idle connections, and UDP's, close at
   * once.
   */
  stop = (): void => {
    if (this.#stopped) return;
    this.#stopped = true;
    this.endedAt = performance.now();
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
    }, drainMs(this.#options.timeout));
  };

  #checkTimeouts = (): void => {
    const { timeout } = this.#options;
    const now = performance.now();
    for (const [conn, since] of this.#conns) {
      // A datagram's own wait ends it as lost; a stream's is ended here.
      if (conn.stream && since > 0 && now - since > timeout) {
        this.#fail("other", failure.roundTripTimeout(timeout));
        this.#conns.delete(conn);
        conn.close();
      }
    }
  };

  /** Runs connection number `index` until the test is over. */
  async connection(index: number): Promise<void> {
    const { open, timeout } = this.#options;
    let conn: Channel;
    try {
      conn = await open(
        index,
        timeout > 0 ? AbortSignal.timeout(timeout) : undefined,
      );
    } catch (error) {
      if (!this.#stopped) this.#fail("connect", error);
      return;
    }
    if (this.#stopped) {
      conn.close();
      return;
    }
    this.connected++;
    this.#conns.set(conn, 0);
    try {
      await this.#roundTrips(conn, index);
    } catch (error) {
      // A connection the watchdog closed has been counted already.
      if (!this.#stopped && this.#conns.has(conn)) {
        this.#fail(error instanceof Refusal ? "refused" : "other", error);
      }
    } finally {
      if (this.#conns.delete(conn)) conn.close();
    }
  }

  async #roundTrips(conn: Channel, index: number): Promise<void> {
    const { connections, count, countPerConnection, rate } = this.#options;
    // With a rate, each connection has its own slot in a fixed schedule.
    const interval = rate === undefined ? 0 : 1000 * connections / rate;
    let due = this.startedAt + interval * index / connections;
    for (
      let mine = 0;
      !this.#stopped && this.started < count && mine < countPerConnection;
      mine++, due += interval
    ) {
      this.started++;
      let sentAt = performance.now();
      if (rate !== undefined) {
        if (due > sentAt) {
          // On schedule: our own timer's lateness is not the server's.
          // Ends early at the stop (which rejects it).
          await sleep(due - sentAt, undefined, {
            signal: this.#stopping.signal,
          }).catch(() => {});
          if (this.#stopped) return;
          sentAt = performance.now();
        } else {
          // Behind schedule because of slow round trips: count from due.
          sentAt = due;
        }
      }
      this.#mark(conn, sentAt);
      const result = await conn.exchange();
      this.#mark(conn, 0);
      if (result === "lost") {
        this.lost++;
        continue;
      }
      if (result !== "ok") {
        this.#fail("mismatch", new Error(result.mismatch));
        // A stream is out of step now: its connection stops.
        if (conn.stream) return;
        continue;
      }
      const now = performance.now();
      // Warming up, or finishing after the stop.
      if (now < this.measuredFrom || this.#stopped) continue;
      this.histogram.recordValue(
        Math.max(1, Math.round((now - sentAt) * 1000)),
      );
      this.completed++;
      this.endedAt = now;
    }
  }

  /**
   * Records when `conn`'s round trip in flight started (0: none), unless
   * `stop()` or the watchdog has closed it meanwhile.
   */
  #mark(conn: Channel, since: number): void {
    if (this.#conns.has(conn)) this.#conns.set(conn, since);
  }

  #fail(kind: FailureKind, error: unknown): void {
    this.failures.add(
      kind,
      error instanceof Error ? error.message : String(error),
    );
  }
}

/**
 * One connection of a load test, as the round-trip loop drives it: a TCP,
 * TLS or Unix stream, or a UDP socket of its own.
 */
interface Channel {
  /** A stream: a mismatch puts it out of step, and the watchdog times it. */
  readonly stream: boolean;
  /**
   * Sends the message once and waits for its echo: `"ok"`, `"lost"` (a
   * datagram whose reply did not come in time), or what differed.
   */
  exchange(): Promise<"ok" | "lost" | { mismatch: string }>;
  close(): void;
}

function streamChannel(conn: Deno.Conn, message: Uint8Array): Channel {
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
        throw new Error(failure.closedEarly(0, message.length));
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
function datagramChannel(
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

/** The message's bytes: given, encoded, or `size` pseudo-random bytes. */
function messageBytes(message: string | Uint8Array | number): Uint8Array {
  if (typeof message === "string") {
    const bytes = new TextEncoder().encode(message);
    if (bytes.length === 0) throw optionError("message", "empty");
    return bytes;
  }
  if (message instanceof Uint8Array) {
    if (message.length === 0) throw optionError("message", "empty");
    return message;
  }
  assertPositive("message", message, true);
  const bytes = new Uint8Array(message);
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 255;
  }
  return bytes;
}

/**
 * Reads into `into` until at least `expected` bytes are there; returns how
 * many (more than `expected` when the server sent more), or 0 when the
 * server closed before sending any.
 */
async function readEcho(
  conn: Deno.Conn,
  into: Uint8Array,
  expected: number,
): Promise<number> {
  let filled = 0;
  while (filled < expected) {
    const n = await conn.read(filled === 0 ? into : into.subarray(filled));
    if (n === null) {
      if (filled === 0) return 0;
      throw new Error(failure.closedEarly(filled, expected));
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
