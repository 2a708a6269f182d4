// Private: the one place that picks a transport for a listener's options.
// Not exported from mod.ts.

import type { ListenConfig, ServerConfig } from "../core/config.ts";
import { accessGuard } from "../rules/access.ts";
import { Limiter } from "../rules/limits.ts";
import { guardedListener } from "./guarded.ts";
import { throttledListener } from "./throttled.ts";
import { faultedListener } from "./faulted.ts";
import type { FaultBox } from "../faults/pipe.ts";
import { addressList } from "../rules/cidr.ts";
import { proxiedListener } from "./proxied.ts";
import { claimPort, tcpTransport } from "./tcp.ts";
import { checkCertificate, tlsTransport } from "./tls.ts";
import type { Transport, TransportEvents } from "./transport.ts";
import { unixTransport } from "./unix.ts";
import { websocketTransport } from "./websocket.ts";

/**
 * The transport `listen` asks for. With `reusePort`, other listeners of the
 * same server may share the port (workers; TCP and TLS).
 */
export function transportFor(
  listen: ListenConfig,
  reusePort: boolean,
  events: TransportEvents,
  rules: Pick<
    ServerConfig,
    | "proxy"
    | "access"
    | "limits"
    | "maxBytesPerSecond"
    | "mode"
    | "host"
    | "id"
  >,
  faults: FaultBox,
): Transport {
  const wrap = rulesFor(rules, events, faults);
  switch (listen.transport) {
    case "tcp":
      return wrapped(tcpTransport({ ...listen, reusePort }), wrap);
    case "tls":
      return tlsTransport({ ...listen, reusePort, wrap }, events);
    case "unix":
      return wrapped(unixTransport(listen.path), wrap);
    case "websocket":
      return wrapped(
        websocketTransport(listen, rules, reusePort, events),
        rulesFor({ ...rules, proxy: undefined }, events, faults),
      );
  }
}

/**
 * What wraps the raw listener, when a rule is configured: the PROXY
 * header is read first (before TLS), then the access rules judge the
 * address it names, before any other byte is read.
 */
function rulesFor(
  { proxy, access, limits, maxBytesPerSecond }: Pick<
    ServerConfig,
    "proxy" | "access" | "limits" | "maxBytesPerSecond"
  >,
  events: TransportEvents,
  faults: FaultBox,
): (listener: Deno.Listener) => Deno.Listener {
  const guard = accessGuard(access);
  const limiter = limits && new Limiter(limits);
  const throttle = maxBytesPerSecond !== Infinity;
  return (listener) => {
    let wrapped = listener;
    if (proxy !== undefined) {
      wrapped = proxiedListener(wrapped, {
        timeout: proxy.timeout,
        trusted: proxy.trusted && addressList(proxy.trusted),
      }, events);
    }
    if (guard !== undefined || limiter !== undefined) {
      wrapped = guardedListener(wrapped, guard, limiter, events);
    }
    // Faults act on the bytes of admitted clients, as they come and go;
    // a connection accepted while none are set is not wrapped at all.
    wrapped = faultedListener(wrapped, faults, events);
    if (throttle) wrapped = throttledListener(wrapped, maxBytesPerSecond);
    return wrapped;
  };
}

/** `transport`, its listener wrapped by `wrap` when there is one. */
function wrapped(
  transport: Transport,
  wrap: ((listener: Deno.Listener) => Deno.Listener) | undefined,
): Transport {
  if (wrap === undefined) return transport;
  return {
    ...transport,
    listen() {
      const listening = transport.listen();
      if (!("listener" in listening)) return wrap(listening);
      return { ...listening, listener: listening.listener.then(wrap) };
    },
  };
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
    case "websocket":
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
