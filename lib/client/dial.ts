// Private: where every client connects: echoOnce and echoStream, loadTest
// and the interactive session. The transport is chosen here and nowhere
// else, from the shape of the options: a `path` means a Unix socket. Not
// exported from mod.ts.

import { assertPort, formatAddr, optionError } from "../_helpers.ts";
import type { ConnectOptions } from "../types.ts";

/** A server to connect to, as checked by {@linkcode target}. */
export interface Target {
  /** Its address for messages: `host:port` or the socket's path. */
  readonly address: string;
  /**
   * Connects, with Nagle's algorithm off on TCP, so that small messages
   * are not held back waiting for an acknowledgement.
   *
   * @throws {Deno.errors.ConnectionRefused} Nothing listens there.
   * @throws {unknown} `signal.reason`, when the signal aborts first.
   */
  connect(signal?: AbortSignal): Promise<Deno.Conn>;
}

/**
 * Checks where `options` say to connect.
 *
 * @throws {RangeError} The port is out of range.
 * @throws {TypeError} A `path` with a `hostname` or `port`.
 */
export function target(options: ConnectOptions): Target {
  if (options.path !== undefined) {
    const { path } = options;
    if (options.hostname !== undefined || options.port !== undefined) {
      throw optionError(
        "path",
        "a Unix socket has no hostname or port",
        TypeError,
      );
    }
    return {
      address: path,
      connect: () => Deno.connect({ transport: "unix", path }),
    };
  }
  const { hostname = "127.0.0.1", port = 9000 } = options;
  assertPort(port, 1);
  return {
    address: formatAddr({ hostname, port }),
    async connect(signal) {
      const conn = await Deno.connect({ hostname, port, signal });
      try {
        conn.setNoDelay(true);
      } catch (error) {
        conn.close();
        throw error;
      }
      return conn;
    },
  };
}
