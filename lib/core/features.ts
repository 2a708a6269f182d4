// Private: the features a server's options may ask for that a driver may
// not have, each with how it is used and how an error names it. A driver
// declares the ones it serves (lib/native/native_server.ts); the one check
// below refuses the rest, so the refusal follows the declaration instead of
// a list kept by hand. Not exported from mod.ts.

import { type ServerConfig, tlsOf } from "./config.ts";
import { optionError } from "../_helpers.ts";
import { isDatagram, isStream } from "../faults/spec.ts";

/** Whether `config` (with UDP or not) uses a feature. */
type Uses = (config: ServerConfig, udp: boolean) => boolean;

/** Every feature a driver may lack, by key. */
export const FEATURES = {
  lineMode: { name: "mode line", uses: (c) => c.mode === "line" },
  infoMode: { name: "mode info", uses: (c) => c.mode === "info" },
  broadcastMode: {
    name: "mode broadcast",
    uses: (c) => c.mode === "broadcast",
  },
  chatMode: { name: "mode chat", uses: (c) => c.mode === "chat" },
  proxyMode: { name: "mode proxy", uses: (c) => c.mode === "proxy" },
  upstreamTls: {
    name: "TLS to the upstream",
    uses: (c) => c.upstream?.tls !== undefined,
  },
  upstreamReset: {
    name: "a reset for a client whose upstream is unreachable",
    uses: (c) => c.upstream?.unreachable === "reset",
  },
  websocket: {
    name: "WebSocket",
    uses: (c) => c.websocket !== undefined,
  },
  tls: { name: "TLS", uses: (c) => tlsOf(c.listen) !== undefined },
  unixTls: {
    name: "TLS on a Unix socket",
    uses: (c) => c.listen.transport === "unix" && c.listen.tls !== undefined,
  },
  clientCerts: {
    name: "client certificates",
    uses: (c) => tlsOf(c.listen)?.clientCa !== undefined,
  },
  sni: {
    name: "certificates by server name (SNI)",
    uses: (c) => (tlsOf(c.listen)?.sni.length ?? 0) > 0,
  },
  unix: { name: "a Unix socket", uses: (c) => c.listen.transport === "unix" },
  udp: { name: "UDP", uses: (_, udp) => udp },
  proxy: { name: "the PROXY protocol", uses: (c) => c.proxy !== undefined },
  access: {
    name: "allow and deny lists",
    uses: (c) => c.access.allow.length > 0 || c.access.deny.length > 0,
  },
  limits: { name: "per-address limits", uses: (c) => c.limits !== undefined },
  readRate: {
    name: "a read rate per connection",
    uses: (c) => c.maxBytesPerSecond !== Infinity,
  },
  connectionFaults: {
    name: "faults on connections",
    uses: (c) => c.faults.some((f) => isStream(f) && f.kind !== "reset"),
  },
  tlsFaults: {
    name: "faults on TLS connections",
    uses: (c) =>
      tlsOf(c.listen) !== undefined &&
      c.faults.some((f) => isStream(f) || f.kind === "down"),
  },
  resetFaults: {
    name: "reset faults",
    uses: (c) => c.faults.some((f) => f.kind === "reset"),
  },
  downFaults: {
    name: "down faults that close",
    uses: (c) => c.faults.some((f) => f.kind === "down" && f.how === "close"),
  },
  refuseFaults: {
    name: "down faults that refuse (the listener stops)",
    uses: (c) => c.faults.some((f) => f.kind === "down" && f.how === "refuse"),
  },
  refuseFaultsTls: {
    name: "down faults that refuse, on TLS",
    uses: (c) =>
      c.listen.transport === "tls" &&
      c.faults.some((f) => f.kind === "down" && f.how === "refuse"),
  },
  refuseFaultsUnix: {
    name: "down faults that refuse, on a Unix socket",
    uses: (c) =>
      c.listen.transport === "unix" &&
      c.faults.some((f) => f.kind === "down" && f.how === "refuse"),
  },
  liveFaults: {
    name: "faults that follow changes on open connections (liveFaults)",
    uses: (c) => c.liveFaults,
  },
  datagramFaults: {
    name: "datagram faults",
    uses: (c) => c.faults.some(isDatagram),
  },
} as const satisfies Record<string, { name: string; uses: Uses }>;

/** A feature's key. */
export type Feature = keyof typeof FEATURES;

/**
 * The names of the features `config` uses that are not in `served`, in the
 * order of {@linkcode FEATURES}; empty when the driver serves them all.
 */
export function unserved(
  config: ServerConfig,
  udp: boolean,
  served: ReadonlySet<Feature>,
): string[] {
  return (Object.entries(FEATURES) as [Feature, { name: string; uses: Uses }][])
    .filter(([key, feature]) => !served.has(key) && feature.uses(config, udp))
    .map(([, feature]) => feature.name);
}

/** Another driver, and what it serves: named where it serves the rest. */
export interface OtherDriver {
  name: string;
  served: ReadonlySet<Feature>;
}

/**
 * Throws an option error naming `engine` unless the `driver` serves every
 * feature `config` uses: `served` is its declaration; `other` is named
 * when it serves all the rest.
 */
export function assertServed(
  driver: string,
  config: ServerConfig,
  udp: boolean,
  served: ReadonlySet<Feature>,
  other?: OtherDriver,
): void {
  const without = unserved(config, udp, served);
  if (without.length === 0) return;
  const elsewhere = other !== undefined &&
    unserved(config, udp, other.served).length === 0;
  throw optionError(
    "engine",
    `${driver} does not serve ${without.join(", ")}${
      elsewhere ? ` (${other.name} does)` : ""
    }`,
  );
}
