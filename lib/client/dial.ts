// Private: where every client connects: echoOnce and echoStream, loadTest
// and the interactive session. The transport is chosen here and nowhere
// else, from the shape of the options: a `path` means a Unix socket. Not
// exported from mod.ts.

import { isIP } from "node:net";
import {
  assertChoice,
  assertPort,
  formatAddr,
  optionError,
  writeAll,
} from "../_helpers.ts";
import { clientHeader } from "../proxy/header.ts";
import type { ConnectOptions } from "../types.ts";
import { openWebSocket, websocketUrl } from "./websocket.ts";

/** A WebSocket server, as `options.websocket` names it. */
function websocketTarget(options: ConnectOptions): Target {
  const url = websocketUrl(options.websocket!);
  const others = (
    ["path", "hostname", "port", "udp", "tls", "sendProxy", "cert"] as const
  ).filter((o) => options[o] !== undefined && options[o] !== false);
  if (others.length > 0) {
    throw optionError(
      others[0],
      "not with websocket (its URL says where, and wss:// speaks TLS)",
      TypeError,
    );
  }
  const binary = options.websocketBinary ?? false;
  return {
    address: url.href,
    async connect(signal, connected) {
      const conn = await openWebSocket(url, binary, options.caCerts, signal);
      connected?.();
      return conn;
    },
  };
}

/** A server to connect to, as checked by {@linkcode target}. */
export interface Target {
  /** Its address for messages: `host:port` or the socket's path. */
  readonly address: string;
  /**
   * Connects, with Nagle's algorithm off on TCP, so that small messages
   * are not held back waiting for an acknowledgement; calls `connected`
   * once the socket is connected, before a TLS handshake.
   *
   * @throws {Deno.errors.ConnectionRefused} Nothing listens there.
   * @throws {unknown} `signal.reason`, when the signal aborts first.
   */
  connect(signal?: AbortSignal, connected?: () => void): Promise<Deno.Conn>;
}

/**
 * Checks where `options` say to connect.
 *
 * @throws {RangeError} The port is out of range.
 * @throws {TypeError} A `path` with a `hostname` or `port`.
 */
export function target(options: ConnectOptions): Target {
  if (options.websocket !== undefined) return websocketTarget(options);
  if (options.websocketBinary !== undefined) {
    throw optionError("websocketBinary", "needs websocket", TypeError);
  }
  if (options.udp) {
    throw optionError(
      "udp",
      "UDP carries datagrams, not a stream: use echoOnce or loadTest",
      TypeError,
    );
  }
  if (options.path !== undefined) {
    const { path } = options;
    if (options.hostname !== undefined || options.port !== undefined) {
      throw optionError(
        "path",
        "a Unix socket has no hostname or port",
        TypeError,
      );
    }
    if (options.tls) {
      throw optionError("tls", "TLS is spoken on TCP only", TypeError);
    }
    const header = proxyHeader(options);
    return {
      address: path,
      async connect(_signal, connected) {
        const conn = await Deno.connect({ transport: "unix", path });
        try {
          if (header) await writeAll(conn, header(undefined));
          connected?.();
        } catch (error) {
          conn.close();
          throw error;
        }
        return conn;
      },
    };
  }
  const { hostname = "127.0.0.1", port = 9000 } = options;
  assertPort(port, 1);
  const address = formatAddr({ hostname, port });
  const tls = options.tls
    ? {
      hostname: options.serverName ?? hostname,
      ...(options.caCerts ? { caCerts: [...options.caCerts] } : {}),
      ...(options.alpnProtocols
        ? { alpnProtocols: [...options.alpnProtocols] }
        : {}),
    }
    : undefined;
  const header = proxyHeader(options);
  const pair = clientCertificate(options, hostname);
  if (pair !== undefined) {
    // Deno presents a certificate only on a connection it opens itself.
    return {
      address,
      async connect(signal, connected) {
        // Connected: the handshake is made on demand.
        const conn = await Deno.connectTls({
          hostname,
          port,
          ...tls,
          ...pair,
        });
        connected?.();
        return await handshaken(conn, hostname, signal);
      },
    };
  }
  return {
    address,
    async connect(signal, connected) {
      const conn = await Deno.connect({ hostname, port, signal });
      try {
        conn.setNoDelay(true);
        // A proxy's header comes first, before TLS.
        if (header) await writeAll(conn, header(conn));
        connected?.();
        return tls === undefined ? conn : await secure(conn, tls, signal);
      } catch (error) {
        try {
          conn.close();
        } catch {
          // startTls took it over and closed it.
        }
        throw error;
      }
    },
  };
}

/** The PROXY header a client was asked to send: its version and source. */
export interface ProxyPlan {
  version: 1 | 2;
  /** The source it claims; the connection's own address when undefined. */
  source: { hostname: string; port: number } | undefined;
}

/**
 * The PROXY header `options` ask for, checked; `undefined` for none.
 *
 * @throws {RangeError} `proxySource` is not `ADDRESS:PORT`.
 */
export function proxyPlan(options: ConnectOptions): ProxyPlan | undefined {
  const { sendProxy, proxySource } = options;
  if (sendProxy === undefined) {
    if (proxySource !== undefined) {
      throw optionError("proxySource", "needs sendProxy", TypeError);
    }
    return undefined;
  }
  assertChoice("sendProxy", sendProxy, ["v1", "v2"]);
  return {
    version: sendProxy === "v1" ? 1 : 2,
    source: proxySource === undefined ? undefined : parseHostPort(proxySource),
  };
}

/**
 * The PROXY header `options` ask for, given the connection it starts (none
 * for a Unix socket), or `undefined` when none is asked for.
 */
function proxyHeader(
  options: ConnectOptions,
): ((conn: Deno.TcpConn | undefined) => Uint8Array) | undefined {
  const plan = proxyPlan(options);
  if (plan === undefined) return undefined;
  return (conn) =>
    clientHeader(plan.version, plan.source, conn?.localAddr, conn?.remoteAddr);
}

/** `ADDRESS:PORT` or `[ADDRESS]:PORT`, checked. */
function parseHostPort(text: string): { hostname: string; port: number } {
  const match = text.match(/^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/);
  const hostname = match?.[1] ?? match?.[2] ?? "";
  const port = Number(match?.[3]);
  if (!match || isIP(hostname) === 0 || port > 65535) {
    throw optionError(
      "proxySource",
      `must be ADDRESS:PORT, an IP address and a port, got ${text}`,
    );
  }
  return { hostname, port };
}

/**
 * The client certificate `options` ask to present, checked: it goes with
 * `tls` and `key`, and with Deno.connectTls, which connects to `hostname`
 * itself: no PROXY header before it, no other server name.
 *
 * @throws {TypeError} One of those is not so; its `option` names it.
 */
function clientCertificate(
  options: ConnectOptions,
  hostname: string,
): { cert: string; key: string } | undefined {
  const pair = certificatePair(options);
  if (pair === undefined) return undefined;
  if (!options.tls) throw optionError("cert", "needs tls", TypeError);
  if (options.sendProxy !== undefined) {
    throw optionError(
      "cert",
      "Deno presents a client certificate only on a connection it opens " +
        "itself, not after a PROXY header",
      TypeError,
    );
  }
  if (options.serverName !== undefined && options.serverName !== hostname) {
    throw optionError(
      "cert",
      "Deno presents a client certificate only with the server name it " +
        "connects to: leave serverName out, or connect to that name",
      TypeError,
    );
  }
  return pair;
}

/**
 * The client certificate and key `options` give, both PEM text, or
 * undefined for none (what any TLS client checks first).
 *
 * @throws {TypeError} One without the other, or not text.
 */
export function certificatePair(
  options: Pick<ConnectOptions, "cert" | "key">,
): { cert: string; key: string } | undefined {
  const { cert, key } = options;
  if (cert === undefined && key === undefined) return undefined;
  if (typeof cert !== "string" || typeof key !== "string") {
    throw optionError(
      cert === undefined ? "cert" : "key",
      "a client certificate needs cert and key, as PEM text",
      TypeError,
    );
  }
  return { cert, key };
}

/**
 * Starts TLS on `conn` and completes the handshake, so that a certificate
 * that does not verify fails here, not on the first read.
 */
function secure(
  conn: Deno.TcpConn,
  options: { hostname: string; caCerts?: string[]; alpnProtocols?: string[] },
  signal: AbortSignal | undefined,
): Promise<Deno.TlsConn> {
  return Deno.startTls(conn, options).then((tls) =>
    handshaken(tls, options.hostname, signal)
  );
}

/** Completes `tls`'s handshake with `hostname`, or closes it and throws. */
async function handshaken(
  tls: Deno.TlsConn,
  hostname: string,
  signal: AbortSignal | undefined,
): Promise<Deno.TlsConn> {
  // The listener goes once the handshake is over: an abort listener keeps
  // a timeout signal's timer, and so the process, alive.
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  aborted.catch(() => {});
  try {
    signal?.throwIfAborted();
    await Promise.race([tls.handshake(), aborted]);
    return tls;
  } catch (error) {
    tls.close();
    if (signal?.aborted) throw signal.reason;
    throw new Deno.errors.InvalidData(
      `TLS handshake with ${hostname} failed: ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}
