// Private: where each listener keeps its counters, and their sum as
// EchoServerStats. One listener's counters are a slice of one Float64Array
// (a SharedArrayBuffer with workers), written by that listener alone. Not
// exported from mod.ts.

import type { EchoServerStats, FaultAction } from "../types.ts";
import { ENDINGS } from "./endings.ts";

/** Where each listener keeps its counters: {@linkcode COUNTERS} numbers. */
export const ACCEPTED = 0;
export const REJECTED = 1;
export const BYTES_IN = 2;
export const BYTES_OUT = 3;
export const DROPPED = 4;
export const ACTIVE = 5;
export const ACCEPT_ERRORS = 6;
export const HANDSHAKE_FAILURES = 7;
export const DATAGRAMS_IN = 8;
export const DATAGRAMS_OUT = 9;
export const DATAGRAM_BYTES_IN = 10;
export const DATAGRAM_BYTES_OUT = 11;
export const PROXY_FAILURES = 12;
export const REFUSED_DENIED = 13;
export const REFUSED_NOT_ALLOWED = 14;
export const DATAGRAMS_REFUSED = 15;
export const REFUSED_PER_ADDRESS = 16;
export const REFUSED_CONNECT_RATE = 17;
export const DATAGRAMS_RATE_LIMITED = 18;
/** Connections closed, by {@linkcode CLOSE_REASONS} (9 numbers). */
const CLOSED = 19;
/**
 * Connections closed, by how long they lasted: one number per bucket of
 * {@linkcode DURATION_BUCKETS} and one above the last (9), then the sum of
 * their durations in seconds.
 */
const DURATIONS = 28;
const DURATION_SUM = 37;
/** Lines the relay delivered (broadcast and chat mode). */
export const LINES_RELAYED = 38;
/** TLS handshakes completed. */
export const HANDSHAKES = 39;
/** TLS handshakes failed, by {@linkcode HANDSHAKE_FAILURE_KINDS} (4). */
const HANDSHAKE_FAILED = 40;
/**
 * Handshakes completed, by how long they took: one number per bucket of
 * {@linkcode HANDSHAKE_BUCKETS} and one above the last (9), then the sum
 * of their durations in seconds.
 */
const HANDSHAKE_DURATIONS = 44;
const HANDSHAKE_DURATION_SUM = 53;
/** Connections that faults hit (one or more). */
export const FAULTED = 54;
/** What faults did, by {@linkcode FAULT_ACTIONS} (8). */
const FAULT_ACTED = 55;
/** Connects to proxy mode's upstream that failed. */
export const UPSTREAM_FAILURES = 63;
/** Bytes that faults held back (latency, bandwidth, slicer), each way. */
export const FAULT_DELAYED = 64;
/** Requests the WebSocket listener refused (bad upgrades, bad HTTP, 408). */
export const WEBSOCKET_BAD_UPGRADES = 65;
/** Chat lines that flood control refused. */
export const CHAT_LINES_LIMITED = 66;
/** Chat logins, by {@linkcode LOGIN_RESULTS} (3). */
export const CHAT_LOGINS = 67;
/** Chat file transfers, by {@linkcode FILE_RESULTS} (2). */
export const CHAT_FILES = 70;
/** Bytes chat's file transfers delivered to their receivers. */
export const CHAT_FILE_BYTES = 72;
/**
 * How many numbers one listener's counters take: 73 so far, padded to 640
 * bytes (whole cache lines), so that no two listeners write to the same
 * cache line.
 */
export const COUNTERS = 80;

/** How chat's file transfers end, in the order their counters are kept. */
export const FILE_RESULTS = ["done", "failed"] as const;

/** How chat logins go, in the order their counters are kept. */
export const LOGIN_RESULTS = ["ok", "failed", "refused"] as const;

/** What faults do that is counted, as the stats and metrics name it. */
export const FAULT_ACTIONS = [
  "limit",
  "hang",
  "reset",
  "down",
  "drop",
  "duplicate",
  "corrupt",
  "reorder",
] as const satisfies readonly FaultAction[];

/** Counts one `action` of a fault in `counters`. */
export function countFault(counters: Float64Array, action: FaultAction): void {
  counters[FAULT_ACTED + FAULT_ACTIONS.indexOf(action)]++;
}

/** Sets the count of `action` (a count kept elsewhere, the datagrams'). */
export function setFaultCount(
  counters: Float64Array,
  action: FaultAction,
  count: number,
): void {
  counters[FAULT_ACTED + FAULT_ACTIONS.indexOf(action)] = count;
}

/** Why TLS handshakes fail, as metrics label them. */
export const HANDSHAKE_FAILURE_KINDS = [
  "protocol",
  "certificate",
  "timeout",
  "notTls",
] as const;

/** Upper bounds (seconds) of the handshake-duration buckets. */
export const HANDSHAKE_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.1,
  1,
] as const;

/**
 * Why connections close, as metrics label them: each reason the engines
 * give (their log records' `reason`) falls in one.
 */
export const CLOSE_REASONS = [
  "closedByClient",
  "idleTimeout",
  "sendQueueFull",
  "quitCommand",
  "shutdown",
  "serverStopped",
  "reset",
  "fault",
  "error",
] as const;

/** Upper bounds (seconds) of the connection-duration buckets. */
export const DURATION_BUCKETS = [
  0.001,
  0.01,
  0.1,
  1,
  10,
  60,
  600,
  3600,
] as const;

/** Where in the counters each reason an engine gives is counted. */
const CLOSED_AT = new Map(
  Object.entries(ENDINGS).map((
    [reason, counted],
  ) => [reason, CLOSED + CLOSE_REASONS.indexOf(counted)]),
);
const CLOSED_ERROR = CLOSED + CLOSE_REASONS.indexOf("error");

/**
 * Counts a connection closed for `reason` after `durationMs`, in one
 * listener's `counters`.
 */
export function countClosed(
  counters: Float64Array,
  reason: string,
  durationMs: number,
): void {
  counters[CLOSED_AT.get(reason) ?? CLOSED_ERROR]++;
  observe(counters, DURATIONS, DURATION_BUCKETS, durationMs);
}

/** Counts a TLS handshake completed in `durationMs`. */
export function countHandshake(
  counters: Float64Array,
  durationMs: number,
): void {
  counters[HANDSHAKES]++;
  observe(counters, HANDSHAKE_DURATIONS, HANDSHAKE_BUCKETS, durationMs);
}

/** Counts a TLS handshake that failed for `reason` (a log record's words). */
export function countHandshakeFailed(
  counters: Float64Array,
  reason: string,
): void {
  counters[HANDSHAKE_FAILURES]++;
  counters[
    HANDSHAKE_FAILED + HANDSHAKE_FAILURE_KINDS.indexOf(
      handshakeFailureKind(reason),
    )
  ]++;
}

/** What kind of failure a handshake failure's `reason` is. */
export function handshakeFailureKind(
  reason: string,
): typeof HANDSHAKE_FAILURE_KINDS[number] {
  if (reason === "handshake timed out") return "timeout";
  if (reason.startsWith("not TLS")) return "notTls";
  // OpenSSL's words (native) and rustls' (default): a certificate missing,
  // refused by us, or refused by the client (an alert naming one).
  if (/certificate|unknown ?ca\b/i.test(reason)) {
    return "certificate";
  }
  return "protocol";
}

/**
 * Counts `ms` in the histogram at `at` of `counters`: one number per bucket
 * of `buckets` (upper bounds in seconds) and one above, then their sum.
 */
function observe(
  counters: Float64Array,
  at: number,
  buckets: readonly number[],
  ms: number,
): void {
  const seconds = Math.max(0, ms) / 1000;
  let bucket = buckets.findIndex((le) => seconds <= le);
  if (bucket === -1) bucket = buckets.length;
  counters[at + bucket]++;
  counters[at + buckets.length + 1] += seconds;
}

/** The counters from `base` on, one for each of `names`, by name. */
function named<K extends string>(
  total: Float64Array,
  base: number,
  names: readonly K[],
): Record<K, number> {
  return Object.fromEntries(
    names.map((name, i) => [name, total[base + i]]),
  ) as Record<K, number>;
}

/** Adds up the counters of every listener in `counters`. */
export function sumStats(counters: Float64Array): EchoServerStats {
  const total = new Float64Array(COUNTERS);
  const perWorker = [];
  for (let offset = 0; offset < counters.length; offset += COUNTERS) {
    for (let i = 0; i < COUNTERS; i++) total[i] += counters[offset + i];
    perWorker.push(counters[offset + ACCEPTED]);
  }
  return {
    active: total[ACTIVE],
    accepted: total[ACCEPTED],
    rejected: total[REJECTED],
    bytesIn: total[BYTES_IN],
    bytesOut: total[BYTES_OUT],
    dropped: total[DROPPED],
    acceptErrors: total[ACCEPT_ERRORS],
    handshakeFailures: total[HANDSHAKE_FAILURES],
    datagramsIn: total[DATAGRAMS_IN],
    datagramsOut: total[DATAGRAMS_OUT],
    datagramBytesIn: total[DATAGRAM_BYTES_IN],
    datagramBytesOut: total[DATAGRAM_BYTES_OUT],
    proxyHeaderFailures: total[PROXY_FAILURES],
    refused: {
      denied: total[REFUSED_DENIED],
      notAllowed: total[REFUSED_NOT_ALLOWED],
      perAddress: total[REFUSED_PER_ADDRESS],
      connectRate: total[REFUSED_CONNECT_RATE],
    },
    datagramsRefused: total[DATAGRAMS_REFUSED],
    datagramsRateLimited: total[DATAGRAMS_RATE_LIMITED],
    closed: named(total, CLOSED, CLOSE_REASONS),
    durations: {
      counts: [
        ...total.subarray(DURATIONS, DURATIONS + DURATION_BUCKETS.length + 1),
      ],
      sumSeconds: total[DURATION_SUM],
    },
    linesRelayed: total[LINES_RELAYED],
    handshakes: total[HANDSHAKES],
    handshakeFailuresBy: named(
      total,
      HANDSHAKE_FAILED,
      HANDSHAKE_FAILURE_KINDS,
    ),
    handshakeDurations: {
      counts: [
        ...total.subarray(
          HANDSHAKE_DURATIONS,
          HANDSHAKE_DURATIONS + HANDSHAKE_BUCKETS.length + 1,
        ),
      ],
      sumSeconds: total[HANDSHAKE_DURATION_SUM],
    },
    faulted: total[FAULTED],
    upstreamFailures: total[UPSTREAM_FAILURES],
    faultDelayedBytes: total[FAULT_DELAYED],
    websocketBadUpgrades: total[WEBSOCKET_BAD_UPGRADES],
    chatLinesLimited: total[CHAT_LINES_LIMITED],
    chatLogins: {
      ok: total[CHAT_LOGINS],
      failed: total[CHAT_LOGINS + 1],
      refused: total[CHAT_LOGINS + 2],
    },
    chatFiles: { done: total[CHAT_FILES], failed: total[CHAT_FILES + 1] },
    chatFileBytes: total[CHAT_FILE_BYTES],
    faultActions: named(total, FAULT_ACTED, FAULT_ACTIONS),
    perWorker,
  };
}
