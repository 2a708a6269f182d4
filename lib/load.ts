import {
  certificatePair,
  proxyPlan,
  type Target,
  target,
} from "./client/dial.ts";
import { assertDatagram, datagramTarget } from "./client/datagram.ts";
import type { ConnectOptions } from "./types.ts";
import { encodeHistogram, latencySummary } from "./client/latency.ts";
import type { LoadResult, LoadTlsPlan } from "./native/load_loop.ts";
import { TlsContext } from "./tls/context.ts";
import { openSsl } from "./tls/openssl.ts";
import {
  datagramChannel,
  streamChannel,
  StreamLoad,
} from "./client/stream_load.ts";
import { assertPositive, optionError } from "./_helpers.ts";
import { ENDINGS_EXPECTED } from "./client/failures.ts";
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
   * Round trips each connection makes before it is closed and a new one
   * opened in its place: 1 makes a connect (and a TLS handshake) for every
   * round trip. The report times connects and handshakes apart from round
   * trips. Not for UDP.
   *
   * @default {Infinity}
   */
  reconnectEvery?: number;
  /**
   * Ways a connection may end early that the test expects (a server with
   * faults, or one that drops clients on purpose): `reset`, `close` (before
   * its echo was whole) and `timeout` (a round trip over `timeout`). Each
   * is counted (`resets`, `closes`, `timeouts` in the report), not an error,
   * and another connection takes its place. Not for UDP.
   */
  expect?: readonly ("reset" | "close" | "timeout")[];
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
   * What drives the connections. `"native"` is one io_uring or epoll loop
   * over libc through Deno's FFI, in a Web Worker of its own: TCP, a Unix
   * socket (with a PROXY header if asked), UDP, or TLS through OpenSSL
   * (`libssl.so.3`, resuming sessions on reconnects; these three on epoll),
   * on Linux, with `--allow-ffi` (full access to the process). For driving
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
   * Connects made in the measured part (with `reconnectEvery`, more than
   * the connections).
   */
  readonly connects: number;
  /**
   * How long those connects took, from `connect()` to connected (after a
   * PROXY header, before TLS).
   */
  readonly connectLatencyUs: LatencySummary;
  /** Their histogram, encoded as `latencyHistogram` is. */
  readonly connectLatencyHistogram: string;
  /** With `tls`: TLS handshakes completed in the measured part. */
  readonly handshakes?: number;
  /** With `tls`: handshakes per second over `durationMs`. */
  readonly handshakesPerSecond?: number;
  /** With `tls`: how long handshakes took, from connected to done. */
  readonly handshakeLatencyUs?: LatencySummary;
  /** With `tls`: their histogram, encoded as `latencyHistogram` is. */
  readonly handshakeLatencyHistogram?: string;
  /**
   * With `tls` on the native engine: how many of the handshakes resumed
   * an earlier session of the same connection slot (a ticket).
   */
  readonly resumedHandshakes?: number;
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
  /**
   * Connections the server reset before their echo was whole, expected or
   * not (those not expected are errors too).
   */
  readonly resets: number;
  /** Connections the server closed before their echo was whole (as above). */
  readonly closes: number;
  /** Round trips that timed out (as above). */
  readonly timeouts: number;
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
  const { engine = "default" } = options;
  // The native engine's TLS is OpenSSL's, which loadTlsPlan checks: it
  // speaks over Unix sockets too, and presents a client certificate where
  // Deno's does not (after a PROXY header, with another server name).
  const server = options.udp ? datagramTarget(options) : target(
    engine === "native" && options.tls
      ? {
        ...options,
        tls: false,
        caCerts: undefined,
        serverName: undefined,
        cert: undefined,
        key: undefined,
        alpnProtocols: undefined,
      }
      : options,
  );
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
  const { reconnectEvery = Infinity } = options;
  if (reconnectEvery !== Infinity) {
    assertPositive("reconnectEvery", reconnectEvery, true);
  }
  if (options.udp && reconnectEvery !== Infinity) {
    throw optionError("reconnectEvery", "UDP has no connections", TypeError);
  }
  const expect = [...options.expect ?? []];
  for (const ending of expect) {
    if (!(ENDINGS_EXPECTED as readonly string[]).includes(ending)) {
      throw optionError(
        "expect",
        `must list ${ENDINGS_EXPECTED.join(", ")}, got ${ending}`,
      );
    }
  }
  if (options.udp && expect.length > 0) {
    throw optionError("expect", "UDP has no connections to end", TypeError);
  }
  const message = messageBytes(
    options.message ?? 64,
    options.websocket !== undefined && !options.websocketBinary,
  );
  if (options.udp) assertDatagram(message);
  if (engine === "native" && options.websocket !== undefined) {
    throw optionError(
      "websocket",
      "the native engine speaks TCP, TLS and UDP: WebSocket needs engine default",
      TypeError,
    );
  }
  if (engine === "native") {
    return nativeReport(server.address, message, {
      connections,
      count,
      countPerConnection,
      rate,
      timeout,
      duration,
      warmup,
      reconnectEvery,
      expect,
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
    : async (
      _: number,
      signal: AbortSignal | undefined,
      connected: () => void,
    ) =>
      streamChannel(
        await (server as Target).connect(signal, connected),
        message,
      );

  const run = new StreamLoad({
    open,
    connections,
    count,
    countPerConnection,
    rate,
    timeout,
    warmup,
    duration,
    reconnectEvery,
    tls: options.tls === true,
    expect,
  });
  const stopAt = duration === undefined
    ? undefined
    : setTimeout(() => run.stop(), warmup + duration);
  let lastCount = 0;
  let lastAt = performance.now();
  const ticker = onProgress === undefined ? undefined : setInterval(() => {
    const now = performance.now();
    onProgress({
      elapsedMs: now - run.schedule.startedAt,
      roundTrips: run.schedule.completed,
      rate: (run.schedule.completed - lastCount) / ((now - lastAt) / 1000),
      errors: run.errors,
    });
    lastCount = run.schedule.completed;
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
    roundTrips: run.schedule.completed,
    durationMs: run.schedule.durationMs,
    latencyHistogram: encodeHistogram(run.schedule.histogram),
    latencyUs: latencySummary(run.schedule.histogram),
    ...run.schedule.phases(options.tls === true),
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
    ...(measured.handshakes === undefined
      ? {}
      : { handshakesPerSecond: rate(measured.handshakes) }),
  };
}

/** {@linkcode loadTest} with the native engine: the same report. */
async function nativeReport(
  address: string,
  message: Uint8Array,
  run: Omit<
    NativeLoadOptions,
    "hostname" | "port" | "path" | "proxy" | "udp" | "tls" | "message" | "io"
  >,
  options: LoadTestOptions,
): Promise<LoadReport> {
  assertNativeLoad();
  const { hostname = "127.0.0.1", port = 9000, path } = options;
  const tls = options.tls ? loadTlsPlan(options, hostname) : undefined;
  const { io, ...result } = await nativeLoad({
    ...run,
    hostname: path === undefined ? await resolvedAddress(hostname) : "",
    port,
    path,
    proxy: proxyPlan(options),
    udp: options.udp === true,
    tls,
    message,
    io: options.nativeIo,
  });
  return {
    ...reportOf(address, run.connections, message, result),
    nativeIo: io,
  };
}

/**
 * What the native engine's TLS checks and presents, checked here (an
 * OpenSSL context made and freed), so that a bad certificate or key is an
 * option error on this thread.
 */
function loadTlsPlan(options: LoadTestOptions, hostname: string): LoadTlsPlan {
  const { caCerts, alpnProtocols } = options;
  const pair = certificatePair(options);
  const plan: LoadTlsPlan = {
    serverName: options.serverName ??
      (options.path === undefined ? hostname : "localhost"),
    ...(caCerts === undefined ? {} : { caCerts: [...caCerts] }),
    ...pair,
    ...(alpnProtocols === undefined ? {} : { alpn: [...alpnProtocols] }),
  };
  const lib = openSsl();
  try {
    TlsContext.client(lib, plan).free();
  } finally {
    lib.close();
  }
  return plan;
}

/** `hostname` as an IP address: itself, or the first one DNS gives. */
async function resolvedAddress(hostname: string): Promise<string> {
  if (/^[\d.]+$/.test(hostname) || hostname.includes(":")) return hostname;
  if (hostname === "localhost") return "127.0.0.1";
  for (const type of ["A", "AAAA"] as const) {
    const found = await Deno.resolveDns(hostname, type).catch(() => []);
    if (found.length > 0) return found[0];
  }
  throw new Deno.errors.NotFound(`Cannot resolve ${hostname}`);
}

/**
 * The message's bytes: given, encoded, or `size` pseudo-random bytes
 * (printable ASCII when they go as WebSocket text).
 */
function messageBytes(
  message: string | Uint8Array | number,
  text = false,
): Uint8Array {
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
    bytes[i] = text ? 32 + (x >>> 0) % 95 : x & 255;
  }
  return bytes;
}
