// Private: the rules at the door, judged once for both drivers: the access
// lists first, then the per-address limits. Not exported from mod.ts.

import { bareAddress } from "../_helpers.ts";
import type { Guard, Refusal } from "./access.ts";
import type { Limiter } from "./limits.ts";

/** A verdict at the door. */
export type Verdict =
  | { refusal: Refusal }
  | {
    refusal?: undefined;
    /**
     * The address whose place under the limits the client took, to give
     * back (`Limiter.release`) once its connection closes; none without
     * limits or an address.
     */
    limited: string | undefined;
  };

/**
 * Judges a client from `peer` (the address a PROXY header names, where
 * there is one). A Unix socket's clients have no address: the rules let
 * them in.
 */
export function judge(
  guard: Guard | undefined,
  limiter: Limiter | undefined,
  peer: Deno.Addr,
): Verdict {
  const refusal = guard?.(peer);
  if (refusal !== undefined) return { refusal };
  if (limiter === undefined || !("hostname" in peer)) {
    return { limited: undefined };
  }
  const address = bareAddress(peer.hostname);
  const limit = limiter.admit(address);
  return limit === undefined ? { limited: address } : { refusal: limit };
}
