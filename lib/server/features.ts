// Private: the features the streams driver (lib/server/engine.ts) serves,
// as lib/core/features.ts lists them, in a module of its own so that the
// other driver can name it in its errors without loading it. Not exported
// from mod.ts.

import { type Feature, FEATURES } from "../core/features.ts";

/**
 * The features the streams driver serves: all but those Deno's TLS
 * listener cannot do (ask for a client certificate, choose a certificate by
 * server name, listen on a Unix socket), and the faults it cannot act out
 * (Deno cannot reset a connection, for a fault or an unreachable upstream; a listener that stops for a while comes
 * with live faults, issue 23).
 */
export const STREAMS_FEATURES: ReadonlySet<Feature> = new Set(
  (Object.keys(FEATURES) as Feature[]).filter((f) =>
    f !== "clientCerts" && f !== "sni" && f !== "unixTls" &&
    f !== "resetFaults" && f !== "upstreamReset" &&
    f !== "refuseFaultsTls" && f !== "refuseFaultsUnix"
  ),
);
