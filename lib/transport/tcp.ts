// Private: the TCP transport. Not exported from mod.ts.

import type { Transport } from "./transport.ts";

/** Where and how to listen on TCP. */
export interface TcpTransportOptions {
  hostname: string;
  port: number;
  /** Bind with `SO_REUSEPORT`, so that other listeners can share the port. */
  reusePort: boolean;
}

/**
 * TCP: listens on `hostname:port`, and turns Nagle's algorithm off on each
 * accepted connection, so that small echoes are not held back.
 */
export function tcpTransport(options: TcpTransportOptions): Transport {
  const { hostname, port, reusePort } = options;
  return {
    listen: () =>
      Deno.listen({
        hostname,
        port,
        transport: "tcp",
        ...(reusePort ? { reusePort: true } : {}),
      }),
    prepare: (conn) => (conn as Deno.TcpConn).setNoDelay(true),
  };
}
