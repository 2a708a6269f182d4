// Private: serveEcho's `websocket` option, checked into plain data: where
// the WebSocket listener listens, whether the stream listener is left out,
// and the largest message taken. Not exported from mod.ts.

import {
  assertInteger,
  assertPort,
  type OptionError,
  optionError,
} from "../_helpers.ts";
import type { EchoMode } from "../types.ts";

/** The WebSocket listener of a server, checked. */
export interface WebSocketConfig {
  hostname: string;
  port: number;
  /** No TCP (or TLS, or Unix socket) listener beside it. */
  only: boolean;
  /** The largest message taken; a bigger one closes with 1009. */
  maxMessageBytes: number;
  /** Milliseconds a client has to send each request head (408 past it). */
  headerTimeout: number;
  /** Proxies whose X-Forwarded-For is believed; none when undefined. */
  trusted: string[] | undefined;
}

/** What serveEcho takes (see ServeEchoOptions.websocket). */
export interface WebSocketOptions {
  hostname?: string;
  port?: number;
  only?: boolean;
  maxMessageBytes?: number;
  headerTimeout?: number;
}

/** The largest `maxMessageBytes` (Deno's WebSocket client's limit). */
export const MAX_MESSAGE_LIMIT = 64 * 1024 * 1024;

/**
 * Checks the `websocket` option of a server in `mode`.
 *
 * @throws {RangeError} A field is out of range (the error's `option` is
 * `websocket`).
 * @throws {TypeError} The mode has no WebSocket framing (proxy).
 */
export function websocketConfig(
  options: { websocket?: WebSocketOptions; trustedProxies?: readonly string[] },
  mode: EchoMode,
): WebSocketConfig | undefined {
  const { websocket } = options;
  if (websocket === undefined) return undefined;
  if (typeof websocket !== "object" || websocket === null) {
    throw optionError("websocket", "must be an object", TypeError);
  }
  if (mode === "proxy") {
    throw optionError(
      "websocket",
      "serves echo, line, info, broadcast and chat mode, not proxy",
      TypeError,
    );
  }
  const {
    hostname = "127.0.0.1",
    port = 8080,
    only = false,
    maxMessageBytes = 1024 * 1024,
    headerTimeout = 10_000,
  } = websocket;
  if (typeof hostname !== "string" || hostname === "") {
    throw optionError("websocket", "hostname must be a host name or address");
  }
  try {
    assertPort(port);
  } catch (error) {
    throw optionError("websocket", `port ${(error as OptionError).reason}`);
  }
  assertInteger(
    "websocket.maxMessageBytes",
    maxMessageBytes,
    1,
    MAX_MESSAGE_LIMIT,
  );
  assertInteger("websocket.headerTimeout", headerTimeout, 1, 2 ** 31 - 1);
  const trusted = options.trustedProxies && [...options.trustedProxies];
  return {
    hostname,
    port,
    only: only === true,
    maxMessageBytes,
    headerTimeout,
    trusted,
  };
}
