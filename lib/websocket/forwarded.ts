// Private: whom an HTTP request came from, behind proxies: the peer, or,
// when the peer is a trusted proxy, the address it names in
// X-Forwarded-For, walking right to left past every trusted hop (the
// rightmost address no trusted proxy vouches for is the client; whatever a
// client writes to the left of it is not believed). Free of I/O. Not
// exported from mod.ts.

import { isIP } from "node:net";
import type { AddressList } from "../rules/cidr.ts";

/**
 * The client of a request from `peer` with `forwardedFor` (the
 * X-Forwarded-For header, or null), believing only `trusted` proxies (none
 * when undefined). A forwarded client's port is 0: the header names none.
 */
export function forwardedClient(
  peer: Deno.NetAddr,
  forwardedFor: string | null,
  trusted: AddressList | undefined,
): Deno.NetAddr {
  if (trusted === undefined || forwardedFor === null) return peer;
  if (trusted.match(bare(peer.hostname)) === undefined) return peer;
  const hops = forwardedFor.split(",").map((hop) => bare(hop.trim()));
  let client: Deno.NetAddr = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i];
    if (isIP(hop) === 0) break; // Not an address: believe nothing further.
    client = { transport: "tcp", hostname: hop, port: 0 };
    if (trusted.match(hop) === undefined) break;
  }
  return client;
}

/** An address without IPv6 brackets or an IPv4 port (`1.2.3.4:5`). */
function bare(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed !== null) return bracketed[1];
  const withPort = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(address);
  return withPort === null ? address : withPort[1];
}
