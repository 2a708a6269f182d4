// Private: the TCP transport. Not exported from mod.ts.

import { formatAddr } from "../_helpers.ts";
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
    peer: (conn) => formatAddr(conn.remoteAddr),
  };
}

/**
 * Binds `hostname:port` alone for an instant and returns the address bound
 * (a name resolved, and the port picked for port 0). `SO_REUSEPORT` lets any process of the same
 * user join a port whose listeners all set it, so binding with it first
 * would silently share a port another server already holds; a plain bind
 * fails on any listener, shared or not.
 *
 * @throws {Deno.errors.AddrInUse} Another socket listens there.
 */
export function claimPort(hostname: string, port: number): Deno.NetAddr {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  const bound = listener.addr;
  listener.close();
  return bound;
}
