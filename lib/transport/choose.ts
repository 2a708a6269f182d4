// Private: the one place that picks a transport for a listener's options.
// Not exported from mod.ts.

import type { ListenConfig } from "../server/config.ts";
import { claimPort, tcpTransport } from "./tcp.ts";
import { checkCertificate, tlsTransport } from "./tls.ts";
import type { Transport, TransportEvents } from "./transport.ts";
import { unixTransport } from "./unix.ts";

/**
 * The transport `listen` asks for. With `reusePort`, other listeners of the
 * same server may share the port (workers; TCP and TLS).
 */
export function transportFor(
  listen: ListenConfig,
  reusePort: boolean,
  events: TransportEvents,
): Transport {
  switch (listen.transport) {
    case "tcp":
      return tcpTransport({ ...listen, reusePort });
    case "tls":
      return tlsTransport({ ...listen, reusePort }, events);
    case "unix":
      return unixTransport(listen.path);
  }
}

/**
 * `listen` with its port bound for a moment and resolved (port 0 becomes
 * the one picked), for listeners that will share it.
 *
 * @throws {Deno.errors.AddrInUse} Another socket listens there.
 */
export function claim(listen: ListenConfig): ListenConfig {
  switch (listen.transport) {
    case "unix":
      return listen;
    case "tcp":
      return { ...listen, ...portOf(claimPort(listen.hostname, listen.port)) };
    case "tls":
      checkCertificate(listen.cert, listen.key);
      return { ...listen, ...portOf(claimPort(listen.hostname, listen.port)) };
  }
}

function portOf({ hostname, port }: Deno.NetAddr) {
  return { hostname, port };
}
