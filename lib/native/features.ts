// Private: the features the native driver (lib/native/native_server.ts)
// serves, as lib/core/features.ts lists them, in a module of its own so
// that the other driver can name it in its errors without loading it. Not
// exported from mod.ts.

import type { Feature } from "../core/features.ts";

/** The features the native driver serves (see lib/core/features.ts). */
export const NATIVE_FEATURES: ReadonlySet<Feature> = new Set<Feature>([
  "lineMode",
  "infoMode",
  "proxy",
  "access",
  "limits",
  "unix",
  "readRate",
  "udp",
  "broadcastMode",
  "chatMode",
  "tls",
  "clientCerts",
  "sni",
  "unixTls",
  "connectionFaults",
  "resetFaults",
  "downFaults",
  "proxyMode",
  "liveFaults",
  "datagramFaults",
  "refuseFaults",
  "refuseFaultsTls",
  "refuseFaultsUnix",
  "tlsFaults",
  "upstreamTls",
  "upstreamReset",
]);
