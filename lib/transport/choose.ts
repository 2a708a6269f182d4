// Private: the one place that picks a transport for a listener's options.
// Not exported from mod.ts.

import type { ListenConfig } from "../server/config.ts";
import { claimPort, tcpTransport } from "./tcp.ts";
import type { Transport } from "./transport.ts";
import { unixTransport } from "./unix.ts";

/**
 * The transport `listen` asks for. With `reusePort`, other listeners of the
 * same server may share the port (workers; TCP only).
 */
export function transportFor(
  listen: ListenConfig,
  reusePort: boolean,
): Transport {
  switch (listen.transport) {
    case "tcp":
      return tcpTransport({ ...listen, reusePort });
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
  if (listen.transport === "unix") return listen;
  const { hostname, port } = claimPort(listen.hostname, listen.port);
  return { ...listen, hostname, port };
}
