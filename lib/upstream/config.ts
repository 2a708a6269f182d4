// Private: proxy mode's upstream (issue 23), checked from serveEcho's
// options into plain data that workers rebuild: where it is (TCP or a Unix
// socket), whether to speak TLS to it and whom to trust, whether to send it
// a PROXY header naming the client, how long a connect may take. Free of
// I/O; lib/upstream/dial.ts connects. Not exported from mod.ts.

import { isIP } from "node:net";
import {
  assertChoice,
  assertMilliseconds,
  assertPort,
  optionError,
} from "../_helpers.ts";

/** The upstream of a server in proxy mode, checked. */
export interface UpstreamConfig {
  /** Its address for logs: `host:port` or `unix:PATH`. */
  address: string;
  to:
    | { transport: "tcp"; hostname: string; port: number }
    | { transport: "unix"; path: string };
  /** Speak TLS to it: verify it for `serverName`, against `caCerts` if any. */
  tls: { serverName: string; caCerts: string[] | undefined } | undefined;
  /** Start each connection with a PROXY header of this version. */
  sendProxy: 1 | 2 | undefined;
  /** How long a connect (and a TLS handshake) may take, in ms. */
  timeout: number;
  /**
   * How a client is closed when its upstream cannot be reached: with a
   * reset (RST), or a clean end (FIN); undefined for the engine's default
   * (the native engine resets; the default engine, which cannot, ends).
   */
  unreachable: "reset" | "close" | undefined;
}

/** What serveEcho takes for proxy mode (see ServeEchoOptions). */
export interface UpstreamOptions {
  mode?: string;
  upstream?: string;
  upstreamTls?: boolean | {
    caCerts?: readonly string[];
    serverName?: string;
  };
  upstreamProxy?: "v1" | "v2";
  upstreamTimeout?: number;
  upstreamUnreachable?: "reset" | "close";
}

/**
 * Checks proxy mode's options: `upstream` is required in proxy mode and
 * refused in the others, as are the rest.
 *
 * @throws {RangeError} An option is out of range or missing (its `option`
 * names it).
 * @throws {TypeError} An option is of the wrong shape.
 */
export function upstreamConfig(
  options: UpstreamOptions,
): UpstreamConfig | undefined {
  const {
    mode,
    upstream,
    upstreamTls,
    upstreamProxy,
    upstreamTimeout,
    upstreamUnreachable,
  } = options;
  if (mode !== "proxy") {
    for (
      const [option, value] of Object.entries({
        upstream,
        upstreamTls,
        upstreamProxy,
        upstreamTimeout,
        upstreamUnreachable,
      })
    ) {
      if (value !== undefined && value !== false) {
        throw optionError(option, 'is for mode "proxy"', TypeError);
      }
    }
    return undefined;
  }
  if (upstream === undefined) {
    throw optionError(
      "upstream",
      'mode "proxy" needs an upstream: HOST:PORT or unix:PATH',
    );
  }
  const to = upstreamAddress(upstream);
  let tls: UpstreamConfig["tls"];
  if (upstreamTls !== undefined && upstreamTls !== false) {
    if (to.transport === "unix") {
      throw optionError(
        "upstreamTls",
        "TLS to a Unix socket's upstream is not supported",
        TypeError,
      );
    }
    const given = upstreamTls === true ? {} : upstreamTls;
    const { caCerts, serverName = to.hostname } = given;
    if (
      caCerts !== undefined &&
      (!Array.isArray(caCerts) ||
        caCerts.some((c) => typeof c !== "string" || !c.includes("-----BEGIN")))
    ) {
      throw optionError(
        "upstreamTls",
        "caCerts must be a list of PEM certificates",
        TypeError,
      );
    }
    tls = { serverName, caCerts: caCerts && [...caCerts] };
  }
  assertChoice("upstreamProxy", upstreamProxy, ["v1", "v2"]);
  assertChoice("upstreamUnreachable", upstreamUnreachable, ["reset", "close"]);
  const timeout = upstreamTimeout ?? 5000;
  assertMilliseconds("upstreamTimeout", timeout);
  if (timeout === 0) {
    throw optionError("upstreamTimeout", "must be at least 1 ms");
  }
  return {
    address: to.transport === "unix"
      ? `unix:${to.path}`
      : isIP(to.hostname) === 6
      ? `[${to.hostname}]:${to.port}`
      : `${to.hostname}:${to.port}`,
    to,
    tls,
    sendProxy: upstreamProxy === undefined
      ? undefined
      : upstreamProxy === "v1"
      ? 1
      : 2,
    timeout,
    unreachable: upstreamUnreachable,
  };
}

/** `HOST:PORT`, `[ADDRESS]:PORT` or `unix:PATH`, checked. */
function upstreamAddress(text: string): UpstreamConfig["to"] {
  if (typeof text !== "string") {
    throw optionError("upstream", "must be text", TypeError);
  }
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (path === "") throw optionError("upstream", "unix: needs a path");
    return { transport: "unix", path };
  }
  const match = /^(?:\[([^\]]+)\]|([^:\[\]\s]+)):(\d{1,5})$/.exec(text);
  if (match === null) {
    throw optionError(
      "upstream",
      `must be HOST:PORT, [ADDRESS]:PORT or unix:PATH, got ${text}`,
    );
  }
  const port = Number(match[3]);
  assertPort(port, 1);
  return { transport: "tcp", hostname: match[1] ?? match[2], port };
}
