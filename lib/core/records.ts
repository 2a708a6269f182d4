// Private: what a server says and counts about its connections, written
// once for every driver: each function counts the event in a listener's
// counters (lib/core/counters.ts) and returns its log record, which the
// streams engine logs at once and the native loop sends to the calling
// thread in batches. Not exported from mod.ts.

import { plural } from "../_helpers.ts";
import type { Refusal } from "../rules/access.ts";
import type { FaultAction } from "../types.ts";
import {
  ACCEPT_ERRORS,
  countFault,
  countHandshakeFailed,
  DROPPED,
  FAULTED,
  PROXY_FAILURES,
  REFUSED_CONNECT_RATE,
  REFUSED_DENIED,
  REFUSED_NOT_ALLOWED,
  REFUSED_PER_ADDRESS,
  REJECTED,
  WEBSOCKET_BAD_UPGRADES,
} from "./counters.ts";

/** One log record: a LogTape message template and its properties. */
export interface LogRecord {
  level: "debug" | "info" | "warning" | "error";
  message: string;
  properties: Record<string, unknown>;
}

/** Each refusal's counter and message. */
const REFUSALS: Record<
  Refusal["reason"],
  { counter: number; template: string }
> = {
  denied: {
    counter: REFUSED_DENIED,
    template: "Refused {peer}: denied by {rule}",
  },
  notAllowed: {
    counter: REFUSED_NOT_ALLOWED,
    template: "Refused {peer}: not in the allow list",
  },
  perAddress: {
    counter: REFUSED_PER_ADDRESS,
    template: "Refused {peer}: {limit} connections from its address are open",
  },
  connectRate: {
    counter: REFUSED_CONNECT_RATE,
    template:
      "Refused {peer}: its address opened more than {limit} connections a second",
  },
};

/**
 * A client admitted and served; on TLS, with what its handshake settled
 * (`tls`), and named by its certificate's subject when it sent one.
 */
export function opened(
  peer: string,
  active: number,
  tls?: OpenedTls,
): LogRecord {
  if (tls === undefined) {
    return {
      level: "info",
      message: "Opened {peer} ({active} open)",
      properties: { peer, active },
    };
  }
  const { clientCert } = tls;
  return {
    level: "info",
    message: clientCert === undefined
      ? "Opened {peer} ({active} open)"
      : "Opened {peer} for {clientCert} ({active} open)",
    properties: { peer, active, ...tls },
  };
}

/** What a TLS connection's `Opened` record says of its handshake. */
export interface OpenedTls {
  version: string;
  cipher: string;
  serverName?: string;
  alpn?: string;
  clientCert?: string;
}

/**
 * A connection ended for `reason` (counted apart, by `countClosed`: the
 * record is made only when it is logged).
 */
export function closed(
  c: {
    peer: string;
    durationMs: number;
    bytesIn: number;
    bytesOut: number;
    reason: string;
  },
): LogRecord {
  return {
    level: "info",
    message: `Closed {peer} after {durationMs} ms: {bytesIn} ${
      plural(c.bytesIn, "byte")
    } in, {bytesOut} ${plural(c.bytesOut, "byte")} out ({reason})`,
    properties: { ...c },
  };
}

/** A client turned away because `maxConnections` are open. */
export function rejected(
  counters: Float64Array,
  peer: string,
  active: number,
  maxConnections: number,
): LogRecord {
  counters[REJECTED]++;
  return {
    level: "warning",
    message: `Rejected {peer}: {active} ${
      plural(active, "connection")
    } open, the maximum is {maxConnections}`,
    properties: { peer, active, maxConnections },
  };
}

/** A client dropped because its send queue is full (it stopped reading). */
export function dropped(
  counters: Float64Array,
  peer: string,
  lines: number,
  bytes: number,
): LogRecord {
  counters[DROPPED]++;
  return {
    level: "warning",
    message: `Dropping {peer}: its send queue is full ({lines} ${
      plural(lines, "line")
    }, {bytes} ${plural(bytes, "byte")} waiting)`,
    properties: { peer, lines, bytes },
  };
}

/** A client the access rules or the per-address limits refused. */
export function refused(
  counters: Float64Array,
  peer: string,
  refusal: Refusal,
): LogRecord {
  counters[REFUSALS[refusal.reason].counter]++;
  return {
    level: "info",
    message: REFUSALS[refusal.reason].template,
    properties: { peer, ...refusal },
  };
}

/**
 * Faults hit a new connection (`connection`, naming them), or one acted on
 * it (a `limit` ended it, a `hang` hung it…): counted, logged at debug.
 */
export function faulted(
  counters: Float64Array,
  peer: string,
  action: "connection" | FaultAction,
  faults?: string,
): LogRecord {
  if (action === "connection") {
    counters[FAULTED]++;
    return {
      level: "debug",
      message: "Faults for {peer}: {faults}",
      properties: { peer, faults },
    };
  }
  countFault(counters, action);
  return {
    level: "debug",
    message: "Fault {action} on {peer}",
    properties: { peer, action },
  };
}

/** A PROXY header not valid, not trusted, or not complete in time. */
export function proxyFailed(
  counters: Float64Array,
  peer: string,
  reason: string,
): LogRecord {
  counters[PROXY_FAILURES]++;
  return {
    level: "info",
    message: "Bad PROXY header from {peer}: {reason}",
    properties: { peer, reason },
  };
}

/**
 * A request the WebSocket listener refused: an upgrade not valid, bad HTTP,
 * a head not complete in time (`reason` says which).
 */
export function badUpgrade(
  counters: Float64Array,
  peer: string,
  reason: string,
): LogRecord {
  counters[WEBSOCKET_BAD_UPGRADES]++;
  return {
    level: "info",
    message: "Bad request on the WebSocket listener from {peer}: {reason}",
    properties: { peer, reason },
  };
}

/** A TLS handshake that failed or timed out. */
export function handshakeFailed(
  counters: Float64Array,
  peer: string,
  reason: string,
): LogRecord {
  countHandshakeFailed(counters, reason);
  return {
    level: "info",
    message: "TLS handshake with {peer} failed: {reason}",
    properties: { peer, reason },
  };
}

/** accept() failed for one connection; the listener is fine. */
export function acceptFailed(counters: Float64Array, error: string): LogRecord {
  counters[ACCEPT_ERRORS]++;
  return {
    level: "debug",
    message: "Accept failed for one connection: {error}",
    properties: { error },
  };
}

/** accept() lacks a resource; accepting pauses for `delayMs`. */
export function acceptPaused(delayMs: number, error: string): LogRecord {
  return {
    level: "error",
    message: "Accept failed, retrying in {delayMs} ms: {error}",
    properties: { delayMs, error },
  };
}
