// Private: the Unix domain socket transport. Not exported from mod.ts.

import { getLogger } from "../_logtape.ts";
import { type TlsOptions, tlsSettings } from "./tls.ts";
import { formatAddr, LOG_CATEGORY, optionError } from "../_helpers.ts";
import type { ListenConfig } from "../core/config.ts";
import type { Pending, Transport } from "./transport.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

/**
 * The longest socket path Linux takes, in bytes: `sun_path` holds 108,
 * with its terminating NUL.
 */
export const MAX_SOCKET_PATH = 107;

/**
 * A Unix socket at `path`. A socket file left behind by a server that died
 * (SIGKILL leaves it; Deno removes it on every orderly close) is replaced
 * when nothing answers on it; a live server there, or a file that is not a
 * socket, is `AddrInUse`. Clients have no address of their own, so each is
 * named by the path and a number.
 */
export function unixTransport(path: string): Transport {
  let clients = 0;
  return {
    listen(): Deno.Listener | Pending {
      try {
        return listenUnix(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse)) throw error;
        if (!Deno.lstatSync(path).isSocket) throw notASocket(path);
        return {
          addr: { transport: "unix", path },
          listener: replaceStale(path),
        };
      }
    },
    prepare() {},
    // A PROXY header may have named a client with an address of its own.
    peer: (conn) =>
      conn.remoteAddr.transport === "unix"
        ? `${path}#${++clients}`
        : formatAddr(conn.remoteAddr),
  };
}

function listenUnix(path: string): Deno.Listener {
  return Deno.listen({ transport: "unix", path });
}

/**
 * Listens at `path` in place of the socket file there, once nothing answers
 * on it.
 *
 * @throws {Deno.errors.AddrInUse} A server answers there.
 */
async function replaceStale(path: string): Promise<Deno.Listener> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw inUse(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
  }
  removeStale(path);
  return listenUnix(path);
}

/** The error for a file at the socket's path that is not a socket. */
export function notASocket(path: string): Error {
  return new Deno.errors.AddrInUse(`${path} exists and is not a socket`);
}

/** The error for a socket file a live server answers on. */
export function inUse(path: string): Error {
  return new Deno.errors.AddrInUse(
    `${path} is already in use by a running server`,
  );
}

/** Removes a socket file nothing answered on, and says so. */
export function removeStale(path: string): void {
  Deno.removeSync(path);
  logger.info("Removed {path}: a socket file nothing answered on", { path });
}

/**
 * serveEcho's `path`, checked, as the listen config of a Unix socket.
 *
 * @throws {TypeError} A hostname, port or TLS beside it, or no path.
 * @throws {RangeError} The path is longer than a socket's.
 */
export function unixListenConfig(
  options: {
    path: string;
    hostname?: string;
    port?: number;
  } & TlsOptions,
): Extract<ListenConfig, { transport: "unix" }> {
  const { path, hostname, port, cert, key } = options;
  if (hostname !== undefined || port !== undefined) {
    throw optionError(
      "path",
      "a Unix socket has no hostname or port",
      TypeError,
    );
  }
  if (typeof path !== "string" || path === "") {
    throw optionError("path", "must be a file path", TypeError);
  }
  const bytes = new TextEncoder().encode(path).length;
  if (bytes > MAX_SOCKET_PATH) {
    throw optionError(
      "path",
      `must be at most ${MAX_SOCKET_PATH} bytes for a Unix socket, got ${bytes}`,
    );
  }
  const tls = cert === undefined && key === undefined
    ? undefined
    : tlsSettings(options);
  return { transport: "unix", path, tls };
}
