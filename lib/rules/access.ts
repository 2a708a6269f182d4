// Private: access control, `allow` and `deny` lists of addresses and CIDR
// blocks, as ncat's --allow and --deny have them. A guard is built from
// plain data (every worker builds the same one) and installed only when a
// list is given, so the hot path pays nothing otherwise. Not exported from
// mod.ts.

import { optionError } from "../_helpers.ts";
import { addressList, cidrProblem } from "./cidr.ts";
import type { LimitRefusal } from "./limits.ts";

/** Why a client was refused, and by which rule or limit. */
export type Refusal =
  | {
    reason: "denied" | "notAllowed";
    /** The entry that refused it, or `allow list` when none let it in. */
    rule: string;
  }
  | LimitRefusal;

/** Decides whether a client may come in: `undefined` when it may. */
export type Guard = (peer: Deno.Addr) => AccessRefusal | undefined;

/** A refusal by the access lists. */
export type AccessRefusal = Extract<Refusal, { rule: string }>;

/** The lists, as serveEcho checked them. */
export interface AccessConfig {
  allow: string[];
  deny: string[];
}

/**
 * The guard for `config`: deny wins over allow, and with any allow entry,
 * every other client is refused. Clients without an IP address (on a Unix
 * socket) are not subject to it. `undefined` when both lists are empty.
 */
export function accessGuard(config: AccessConfig): Guard | undefined {
  if (config.allow.length === 0 && config.deny.length === 0) return undefined;
  const allow = config.allow.length > 0 ? addressList(config.allow) : undefined;
  const deny = config.deny.length > 0 ? addressList(config.deny) : undefined;
  return (peer) => {
    if (!("hostname" in peer)) return undefined;
    const denied = deny?.match(peer.hostname);
    if (denied !== undefined) return { reason: "denied", rule: denied };
    if (allow !== undefined && allow.match(peer.hostname) === undefined) {
      return { reason: "notAllowed", rule: "allow list" };
    }
    return undefined;
  };
}

/**
 * The lists of serveEcho's `allow` and `deny`, checked.
 *
 * @throws {TypeError} A list is not a list.
 * @throws {RangeError} An entry is not an address or CIDR block.
 */
export function accessConfig(
  options: { allow?: readonly string[]; deny?: readonly string[] },
): AccessConfig {
  const { allow = [], deny = [] } = options;
  for (const [option, list] of [["allow", allow], ["deny", deny]] as const) {
    if (!Array.isArray(list)) {
      throw optionError(option, "must be a list of addresses", TypeError);
    }
    for (const entry of list) {
      const problem = cidrProblem(entry);
      if (problem !== undefined) throw optionError(option, problem);
    }
  }
  return { allow: [...allow], deny: [...deny] };
}
