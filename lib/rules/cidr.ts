// Private: lists of IP addresses and CIDR blocks (`10.0.0.0/8`,
// `2001:db8::/32`, a bare address as /32 or /128), for trusted proxies and
// access rules. Matching is node:net's BlockList, which also matches an IPv4
// client of a dual-stack listener (`::ffff:10.1.2.3`) against IPv4 blocks.
// Not exported from mod.ts.

import { BlockList, isIP } from "node:net";

/** A checked list of addresses and blocks. */
export interface AddressList {
  /** The entries as given, for logs and errors. */
  readonly entries: readonly string[];
  /** The entry `address` falls in, or `undefined`. */
  match(address: string): string | undefined;
}

/**
 * Checks one entry: an IPv4 or IPv6 address, optionally with a prefix
 * length. Returns what is wrong with it, or `undefined`.
 */
export function cidrProblem(entry: string): string | undefined {
  const [address, prefix, ...rest] = entry.split("/");
  const family = isIP(address);
  if (family === 0 || rest.length > 0) {
    return `${JSON.stringify(entry)} is not an IP address or CIDR block`;
  }
  if (prefix === undefined) return undefined;
  const bits = family === 4 ? 32 : 128;
  if (!/^(0|[1-9]\d*)$/.test(prefix) || Number(prefix) > bits) {
    return `${
      JSON.stringify(entry)
    } has a prefix length that is not 0 to ${bits}`;
  }
  return undefined;
}

/**
 * Builds a list from `entries`.
 *
 * @throws {RangeError} An entry is not an address or block (its message
 * names it).
 */
export function addressList(entries: readonly string[]): AddressList {
  const blocks = entries.map((entry) => {
    const problem = cidrProblem(entry);
    if (problem !== undefined) throw new RangeError(problem);
    const [address, prefix] = entry.split("/");
    const type = isIP(address) === 4 ? "ipv4" : "ipv6";
    const list = new BlockList();
    const bits = prefix === undefined
      ? (type === "ipv4" ? 32 : 128)
      : Number(prefix);
    list.addSubnet(address, bits, type);
    return { entry, list };
  });
  return {
    entries,
    match(address) {
      const type = isIP(address) === 6 ? "ipv6" : "ipv4";
      return blocks.find((b) => b.list.check(address, type))?.entry;
    },
  };
}
