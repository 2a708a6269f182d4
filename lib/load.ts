import {
  certificatePair,
  proxyPlan,
  type Target,
  target,
} from "./client/dial.ts";
import { assertDatagram, datagramTarget } from "./client/datagram.ts";
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
import { connectFrom, sourceAddresses } from "./client/sources.ts";
import {
  assertNativeLoad,
  nativeLoad,
  type NativeLoadOptions,
} from "./native/native_load.ts";

export type {
  LatencySummary,
  LoadProgress,
  LoadReport,
  LoadTestOptions,
} from "./types.ts";
import type { LoadReport, LoadTestOptions } from "./types.ts";

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
  const sources = options.sourceAddresses === undefined
    ? []
    : sourceAddresses(options.sourceAddresses);
  // The native engine's TLS is OpenSSL's, which loadTlsPlan checks: it
  // speaks over Unix sockets too, and presents a client certificate where
  // Deno's does not (after a PROXY header, with another server name); so
  // does node:tls, over the default engine's sourced connections.
  const server = options.udp ? datagramTarget(options) : target(
    options.tls && (engine === "native" || sources.length > 0)
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
  if (
    sources.length > 0 &&
    (options.path !== undefined || options.udp ||
      options.websocket !== undefined)
  ) {
    throw optionError(
      "sourceAddresses",
      "TCP and TLS only: not a Unix socket, UDP or WebSocket",
      TypeError,
    );
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
      progressHistogram: options.progressHistogram,
      signal,
      sources,
    }, options);
  }
  if (engine !== "default") {
    throw optionError("engine", `must be default or native, got ${engine}`);
  }
  if (options.nativeIo !== undefined) {
    throw optionError("nativeIo", "needs engine native", TypeError);
  }
  const sourceConnects = sources.map(() => 0);
  const { hostname = "127.0.0.1", port = 9000 } = options;
  const proxy = proxyPlan(options);
  const sourcedTls = options.tls && sources.length > 0
    ? {
      serverName: options.serverName ?? hostname,
      ...(options.caCerts === undefined ? {} : { caCerts: options.caCerts }),
      ...(options.alpnProtocols === undefined
        ? {}
        : { alpnProtocols: options.alpnProtocols }),
      ...certificatePair(options),
    }
    : undefined;
  const open = "open" in server
    ? (index: number) =>
      Promise.resolve(datagramChannel(server, message, timeout, index))
    : sources.length > 0
    ? async (
      index: number,
      signal: AbortSignal | undefined,
      connected: () => void,
    ) => {
      const at = index % sources.length;
      sourceConnects[at]++;
      const conn = await connectFrom(hostname, port, sources[at], {
        signal,
        connected,
        proxy,
        tls: sourcedTls,
      });
      return streamChannel(conn, message);
    }
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
      ...(options.progressHistogram
        ? { latencyHistogram: encodeHistogram(run.schedule.histogram) }
        : {}),
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
    ...(sources.length === 0 ? {} : {
      sourceConnects: Object.fromEntries(
        sources.map((a, i) => [a, sourceConnects[i]]),
      ),
    }),
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
