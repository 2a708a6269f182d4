// Private: a load test's connections from several local source addresses
// (`sourceAddresses`): the addresses a list of addresses and CIDR blocks
// stands for, and, for the default engine, a TCP connection from one of
// them, with a PROXY header and TLS when asked (Deno.connect cannot bind a
// local address; node:net's connect can, and node:tls speaks over its
// socket, so that socket is read and written here as the little of a
// Deno.Conn that a load channel uses). The native engine binds its own
// sockets (lib/native/load_loop.ts). Not exported from mod.ts.

import net from "node:net";
import tls from "node:tls";
import type { Buffer } from "node:buffer";
import { optionError } from "../_helpers.ts";
import { clientHeader } from "../proxy/header.ts";
import type { ProxyPlan } from "./dial.ts";

/** Most source addresses one test may use. */
export const MAX_SOURCES = 4096;

/**
 * The addresses `entries` stand for: an address as it is, an IPv4 CIDR
 * block as its hosts (without its network and broadcast addresses below
 * /31: `127.0.0.0/29` is `127.0.0.1` to `127.0.0.6`).
 *
 * @throws {RangeError} An entry is not an address or IPv4 block, or there
 * are more than MAX_SOURCES.
 */
export function sourceAddresses(entries: readonly string[]): string[] {
  const found: string[] = [];
  for (const entry of entries) {
    const [address, bits] = entry.split("/");
    const family = net.isIP(address);
    if (family === 0 || (bits !== undefined && family !== 4)) {
      throw optionError(
        "sourceAddresses",
        `${entry} is not an address or an IPv4 CIDR block`,
      );
    }
    if (bits === undefined) {
      found.push(address);
      continue;
    }
    const prefix = Number(bits);
    if (!/^\d{1,2}$/.test(bits) || prefix > 32) {
      throw optionError("sourceAddresses", `${entry}: bad prefix length`);
    }
    const size = 2 ** (32 - prefix);
    if (found.length + size > MAX_SOURCES + 2) {
      throw optionError(
        "sourceAddresses",
        `more than ${MAX_SOURCES} addresses (${entry})`,
      );
    }
    const ip = address.split(".").reduce((n, o) => n * 256 + Number(o), 0);
    const base = ip - ip % size; // The block's first address.
    const [first, last] = size > 2 ? [1, size - 2] : [0, size - 1];
    for (let i = first; i <= last; i++) {
      const n = base + i;
      found.push(
        [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join("."),
      );
    }
  }
  if (found.length > MAX_SOURCES) {
    throw optionError("sourceAddresses", `more than ${MAX_SOURCES} addresses`);
  }
  return found;
}

/** A Deno error for a node:net error's code, as Deno's sockets throw. */
function denoError(error: Error & { code?: string }): Error {
  const kinds: Record<string, typeof Deno.errors.ConnectionReset> = {
    ECONNRESET: Deno.errors.ConnectionReset,
    ECONNREFUSED: Deno.errors.ConnectionRefused,
    EPIPE: Deno.errors.BrokenPipe,
    ETIMEDOUT: Deno.errors.TimedOut,
    EADDRNOTAVAIL: Deno.errors.AddrNotAvailable,
    EADDRINUSE: Deno.errors.AddrInUse,
  };
  const Kind = error.code === undefined ? undefined : kinds[error.code];
  return Kind === undefined ? error : new Kind(error.message);
}

/** The part of a Deno.Conn that a load channel uses. */
export type LoadConn = Pick<Deno.Conn, "read" | "write" | "close">;

/** A node:net socket read and written as a {@linkcode LoadConn}. */
class SourcedConn implements LoadConn {
  #socket: net.Socket;
  #chunks: Buffer[] = [];
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      // One chunk at a time, as a read would take it: TCP holds the rest.
      socket.pause();
      this.#wakeUp();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wakeUp();
    });
    socket.on("error", (error: Error) => {
      this.#error = denoError(error);
      this.#wakeUp();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wakeUp();
    });
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      this.#socket.resume();
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0];
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (error) => {
        if (error) reject(denoError(error));
        else resolve(p.length);
      });
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** TLS over a sourced connection: what the client checks and presents. */
export interface SourcedTls {
  /** The name the server's certificate must carry, sent as SNI. */
  serverName: string;
  caCerts?: readonly string[];
  alpnProtocols?: readonly string[];
  /** A client certificate and its key, PEM text. */
  cert?: string;
  key?: string;
}

/** How {@linkcode connectFrom} connects, beyond where from and to. */
export interface ConnectFromOptions {
  signal?: AbortSignal;
  /** Called once connected (and the header sent), before TLS. */
  connected?: () => void;
  /** The PROXY header to send first, naming the connection's own ends. */
  proxy?: ProxyPlan;
  tls?: SourcedTls;
}

/**
 * A TCP connection to `hostname:port` from `localAddress`, with
 * TCP_NODELAY; then, as `options` ask, a PROXY header and a TLS handshake,
 * completed here so that a certificate that does not verify fails here.
 *
 * @throws {Deno.errors.ConnectionRefused} Nothing listens there.
 * @throws {Deno.errors.AddrNotAvailable} `localAddress` is not this host's.
 * @throws {Deno.errors.InvalidData} The TLS handshake failed.
 */
export async function connectFrom(
  hostname: string,
  port: number,
  localAddress: string,
  options: ConnectFromOptions = {},
): Promise<LoadConn> {
  const { signal, proxy } = options;
  const socket = await connected(
    net.connect({ host: hostname, port, localAddress, noDelay: true }),
    "connect",
    signal,
  );
  try {
    if (proxy !== undefined) {
      const header = clientHeader(proxy.version, proxy.source, {
        hostname: socket.localAddress!,
        port: socket.localPort!,
      }, { hostname: socket.remoteAddress!, port: socket.remotePort! });
      await new Promise<void>((resolve, reject) =>
        socket.write(header, (e) => e ? reject(denoError(e)) : resolve())
      );
    }
  } catch (error) {
    socket.destroy();
    throw error;
  }
  options.connected?.();
  if (options.tls === undefined) return new SourcedConn(socket);
  const { serverName, caCerts, alpnProtocols, cert, key } = options.tls;
  const secured = tls.connect({
    socket,
    // Node sends no SNI for an address, and checks the name it was given.
    host: serverName,
    ...(net.isIP(serverName) === 0 ? { servername: serverName } : {}),
    ...(caCerts === undefined ? {} : { ca: [...caCerts] }),
    ...(alpnProtocols === undefined
      ? {}
      : { ALPNProtocols: [...alpnProtocols] }),
    ...(cert === undefined ? {} : { cert, key }),
  });
  try {
    return new SourcedConn(await connected(secured, "secureConnect", signal));
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new Deno.errors.InvalidData(
      `TLS handshake with ${serverName} failed: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/**
 * `socket` once it says `event`: connected, or its handshake made.
 *
 * @throws {Deno.errors.TimedOut} `signal` aborted first.
 */
function connected<S extends net.Socket>(
  socket: S,
  event: "connect" | "secureConnect",
  signal: AbortSignal | undefined,
): Promise<S> {
  return new Promise((resolve, reject) => {
    const abort = () => {
      socket.destroy();
      reject(
        new Deno.errors.TimedOut(
          event === "connect" ? "Connect timed out" : "TLS handshake timed out",
        ),
      );
    };
    // An abort that came before this wait ends it too.
    if (signal?.aborted) return abort();
    signal?.addEventListener("abort", abort, { once: true });
    const fail = (error: Error) => {
      signal?.removeEventListener("abort", abort);
      socket.destroy();
      reject(denoError(error));
    };
    socket.once("error", fail);
    socket.once(event, () => {
      signal?.removeEventListener("abort", abort);
      socket.off("error", fail);
      resolve(socket);
    });
  });
}
