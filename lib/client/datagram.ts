// Private: UDP for the clients: where echoOnce and loadTest send their
// datagrams, and how one waits for its reply. Not exported from mod.ts.

import {
  assertPort,
  formatAddr,
  MAX_DATAGRAM,
  optionError,
} from "../_helpers.ts";
import type { ConnectOptions } from "../types.ts";

/** Where to send datagrams, as checked by {@linkcode datagramTarget}. */
export interface DatagramTarget {
  /** `host:port`, for messages. */
  readonly address: string;
  readonly to: Deno.NetAddr;
  /** A socket of our own to send from and hear the replies on. */
  open(): Deno.DatagramConn;
}

/**
 * Checks where `options` say to send datagrams.
 *
 * @throws {TypeError} UDP with a Unix socket or TLS.
 * @throws {Deno.errors.NotSupported} Deno runs without `--unstable-net`.
 */
export function datagramTarget(options: ConnectOptions): DatagramTarget {
  if (options.path !== undefined || options.tls || options.sendProxy) {
    throw optionError(
      "udp",
      "UDP goes to a host and port, without TLS or a PROXY header",
      TypeError,
    );
  }
  if (!("listenDatagram" in Deno)) {
    throw optionError(
      "udp",
      "run Deno with --unstable-net (Deno.listenDatagram is unstable)",
      Deno.errors.NotSupported,
    );
  }
  const { hostname = "127.0.0.1", port = 9000 } = options;
  assertPort(port, 1);
  const to: Deno.NetAddr = { transport: "udp", hostname, port };
  // Our socket's family follows the server's address: IPv6 for "::1".
  const local = hostname.includes(":") ? "::" : "0.0.0.0";
  return {
    address: formatAddr(to),
    to,
    open: () =>
      Deno.listenDatagram({ hostname: local, port: 0, transport: "udp" }),
  };
}

/** Throws a `RangeError` unless `bytes` fits in one datagram. */
export function assertDatagram(bytes: Uint8Array): void {
  if (bytes.length > MAX_DATAGRAM) {
    throw optionError(
      "udp",
      `a datagram holds at most ${MAX_DATAGRAM} bytes, got ${bytes.length}`,
    );
  }
}

/**
 * Waits for the next datagram on `socket` from `from`'s port (others are
 * not replies: skipped), up to `timeoutMs` (0: forever). Returns its bytes
 * (a view of `buffer`), or `null` on time out. `pending` carries a receive
 * that was still waiting when an earlier call timed out.
 */
export class ReplyWaiter {
  #socket: Deno.DatagramConn;
  #buffer: Uint8Array;
  #pending: Promise<[Uint8Array, Deno.Addr]> | undefined;

  constructor(socket: Deno.DatagramConn, buffer: Uint8Array) {
    this.#socket = socket;
    this.#buffer = buffer;
  }

  async next(
    from: Deno.NetAddr,
    timeoutMs: number,
  ): Promise<Uint8Array | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = timeoutMs > 0
      ? new Promise<null>((resolve) =>
        timer = setTimeout(resolve, timeoutMs, null)
      )
      : undefined;
    try {
      while (true) {
        if (this.#pending === undefined) {
          this.#pending = this.#socket.receive(this.#buffer);
          // Still waiting when the socket closes: nobody needs the error.
          this.#pending.catch(() => {});
        }
        const got = await (timedOut === undefined
          ? this.#pending
          : Promise.race([this.#pending, timedOut]));
        if (got === null) {
          return null;
        }
        this.#pending = undefined;
        const [data, addr] = got;
        if ((addr as Deno.NetAddr).port === from.port) {
          return data;
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** The receive still waiting, if any, settles once the socket closes. */
  settle(): Promise<unknown> {
    return this.#pending?.catch(() => {}) ?? Promise.resolve();
  }
}
