// Private: the PROXY protocol's header, versions 1 (text) and 2 (binary), as
// HAProxy's doc/proxy-protocol.txt defines them: a strict parser for what a
// server receives and an encoder for what a client sends. Pure functions on
// bytes; no I/O. Not exported from mod.ts.

import { isIP } from "node:net";

/** What a PROXY header says. */
export interface ProxyHeader {
  version: 1 | 2;
  /**
   * `"proxy"`: the connection was relayed for `source`; `"local"` (v2
   * LOCAL, v1 UNKNOWN, or an unspecified family): the receiver keeps the
   * connection's own addresses.
   */
  command: "proxy" | "local";
  /** The original client and server, for `"proxy"`. */
  source?: { hostname: string; port: number };
  destination?: { hostname: string; port: number };
  /** The transport the v2 header names (v1: always a stream). */
  protocol: "stream" | "dgram" | "unspec";
}

/** The outcome of {@linkcode parseProxyHeader} on the bytes so far. */
export type ParseResult =
  | { state: "incomplete" }
  | { state: "invalid"; reason: string }
  | { state: "done"; header: ProxyHeader; length: number };

/** The 12 bytes every v2 header starts with. */
export const V2_SIGNATURE: Uint8Array = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);
/** A v1 line, CRLF included, is at most this long. */
export const V1_MAX = 107;
const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** v2's fixed part: signature, version and command, family, length. */
const V2_FIXED = 16;
/** The longest v2 header: the fixed part and a 16-bit length. */
export const V2_MAX = V2_FIXED + 0xffff;

const latin1 = new TextDecoder("latin1");

/**
 * Parses the PROXY header at the start of `bytes`, strictly: anything the
 * spec does not allow is `"invalid"` with a reason; a header that may still
 * become valid with more bytes is `"incomplete"`.
 */
export function parseProxyHeader(bytes: Uint8Array): ParseResult {
  if (startsWith(bytes, V2_SIGNATURE)) return parseV2(bytes);
  if (startsWith(bytes, V1_PREFIX)) return parseV1(bytes);
  // Not yet enough to tell: still a prefix of one of them?
  if (
    startsWith(V2_SIGNATURE, bytes) || startsWith(V1_PREFIX, bytes)
  ) return { state: "incomplete" };
  return { state: "invalid", reason: "not a PROXY header" };
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    if (bytes[i] !== prefix[i]) return false;
  }
  return true;
}

function invalid(reason: string): ParseResult {
  return { state: "invalid", reason };
}

function parseV1(bytes: Uint8Array): ParseResult {
  const end = bytes.subarray(0, V1_MAX).indexOf(0x0a);
  if (end === -1) {
    return bytes.length >= V1_MAX
      ? invalid(`v1 line longer than ${V1_MAX} bytes`)
      : { state: "incomplete" };
  }
  if (end === 0 || bytes[end - 1] !== 0x0d) {
    return invalid("v1 line does not end with CRLF");
  }
  const line = latin1.decode(bytes.subarray(0, end - 1));
  const length = end + 1;
  const parts = line.split(" ");
  if (parts[1] === "UNKNOWN") {
    // The rest, if any, is to be ignored.
    return { state: "done", length, header: local(1, "stream") };
  }
  if (parts.length !== 6) return invalid("v1 line needs 6 fields");
  const [, family, src, dst, sport, dport] = parts;
  const want = family === "TCP4" ? 4 : family === "TCP6" ? 6 : 0;
  if (want === 0) {
    return invalid(`v1 family ${quote(family)} is not TCP4, TCP6 or UNKNOWN`);
  }
  for (const address of [src, dst]) {
    const version = isIP(address);
    if (version !== want) {
      return invalid(
        version === 0
          ? `v1 address ${quote(address)} is not an IP address`
          : `v1 address ${quote(address)} does not match ${family}`,
      );
    }
  }
  const ports = [sport, dport].map(parsePort);
  if (ports.includes(undefined)) {
    return invalid(`v1 ports ${quote(sport)} ${quote(dport)} are not valid`);
  }
  return {
    state: "done",
    length,
    header: {
      version: 1,
      command: "proxy",
      protocol: "stream",
      source: { hostname: canonical(src), port: ports[0]! },
      destination: { hostname: canonical(dst), port: ports[1]! },
    },
  };
}

/** A port in decimal, 0 to 65535, without leading zeros. */
function parsePort(text: string): number | undefined {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

function local(version: 1 | 2, protocol: ProxyHeader["protocol"]): ProxyHeader {
  return { version, command: "local", protocol };
}

/** How many address bytes each v2 family carries. */
const V2_ADDRESS_BYTES: Record<number, number> = { 1: 12, 2: 36, 3: 216 };

function parseV2(bytes: Uint8Array): ParseResult {
  if (bytes.length < V2_FIXED) return { state: "incomplete" };
  const versionCommand = bytes[12];
  if (versionCommand >> 4 !== 2) {
    return invalid(`v2 version ${versionCommand >> 4} is not 2`);
  }
  const command = versionCommand & 0x0f;
  if (command > 1) {
    return invalid(`v2 command ${command} is not LOCAL or PROXY`);
  }
  const family = bytes[13] >> 4;
  const transport = bytes[13] & 0x0f;
  if (family > 3) return invalid(`v2 address family ${family} is unknown`);
  if (transport > 2) return invalid(`v2 protocol ${transport} is unknown`);
  const protocol = (["unspec", "stream", "dgram"] as const)[transport];
  const length = (bytes[14] << 8) | bytes[15];
  const total = V2_FIXED + length;
  if (bytes.length < total) return { state: "incomplete" };
  if (command === 0) {
    return { state: "done", length: total, header: local(2, protocol) };
  }
  if (family === 0) {
    // PROXY with an unspecified family: use the connection's addresses.
    return { state: "done", length: total, header: local(2, protocol) };
  }
  const needed = V2_ADDRESS_BYTES[family];
  if (length < needed) {
    return invalid(
      `v2 length ${length} is too short for its address family (${needed} bytes)`,
    );
  }
  if (family === 3) {
    // AF_UNIX: paths, not IP addresses; the connection keeps its own.
    return { state: "done", length: total, header: local(2, protocol) };
  }
  const block = bytes.subarray(V2_FIXED, V2_FIXED + needed);
  const view = new DataView(block.buffer, block.byteOffset, block.length);
  const size = family === 1 ? 4 : 16;
  const format = family === 1 ? formatIPv4 : formatIPv6;
  return {
    state: "done",
    length: total,
    header: {
      version: 2,
      command: "proxy",
      protocol,
      source: {
        hostname: format(block.subarray(0, size)),
        port: view.getUint16(2 * size),
      },
      destination: {
        hostname: format(block.subarray(size, 2 * size)),
        port: view.getUint16(2 * size + 2),
      },
    },
  };
}

function formatIPv4(bytes: Uint8Array): string {
  return Array.from(bytes).join(".");
}

function formatIPv6(bytes: Uint8Array): string {
  const groups = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  }
  return canonical(groups.join(":"));
}

/** An IPv6 address in its canonical compressed form (RFC 5952); IPv4 as is. */
function canonical(address: string): string {
  if (!address.includes(":")) return address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** What a client sends: see {@linkcode encodeProxyHeader}. */
export interface ProxyHeaderOptions {
  version: 1 | 2;
  /** Without addresses: v1 `UNKNOWN`, v2 `LOCAL`. */
  source?: { hostname: string; port: number };
  destination?: { hostname: string; port: number };
}

/**
 * The PROXY header a proxy would send for a client at `source` that
 * connected to `destination`, both IPv4 or both IPv6.
 *
 * @throws {RangeError} The addresses are not IP addresses of one family.
 */
export function encodeProxyHeader(options: ProxyHeaderOptions): Uint8Array {
  const { version, source, destination } = options;
  if (source === undefined || destination === undefined) {
    if (version === 1) return new TextEncoder().encode("PROXY UNKNOWN\r\n");
    const bytes = new Uint8Array(V2_FIXED);
    bytes.set(V2_SIGNATURE);
    bytes[12] = 0x20; // version 2, LOCAL; family, protocol and length 0
    return bytes;
  }
  const family = isIP(source.hostname);
  if (family === 0 || family !== isIP(destination.hostname)) {
    throw new RangeError(
      `Cannot encode a PROXY header from ${source.hostname} to ${destination.hostname}: both must be IPv4 or both IPv6`,
    );
  }
  if (version === 1) {
    return new TextEncoder().encode(
      `PROXY TCP${family} ${source.hostname} ${destination.hostname} ${source.port} ${destination.port}\r\n`,
    );
  }
  const size = family === 4 ? 4 : 16;
  const bytes = new Uint8Array(V2_FIXED + 2 * size + 4);
  bytes.set(V2_SIGNATURE);
  bytes[12] = 0x21; // version 2, PROXY
  bytes[13] = (family === 4 ? 0x10 : 0x20) | 0x01; // INET or INET6, STREAM
  const view = new DataView(bytes.buffer);
  view.setUint16(14, 2 * size + 4);
  const write = family === 4 ? ipv4Bytes : ipv6Bytes;
  bytes.set(write(source.hostname), V2_FIXED);
  bytes.set(write(destination.hostname), V2_FIXED + size);
  view.setUint16(V2_FIXED + 2 * size, source.port);
  view.setUint16(V2_FIXED + 2 * size + 2, destination.port);
  return bytes;
}

function ipv4Bytes(address: string): Uint8Array {
  return new Uint8Array(address.split(".").map(Number));
}

function ipv6Bytes(address: string): Uint8Array {
  // Expand "::" and a trailing dotted IPv4 part into eight groups.
  let text = canonical(address);
  const dotted = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split(".").map(Number);
    text = text.slice(0, -dotted[1].length) +
      `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : tail ? tail.split(":") : [];
  const middle = tail === undefined
    ? []
    : Array(8 - left.length - right.length).fill("0");
  const groups = [...left, ...middle, ...right];
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[2 * i] = value >> 8;
    bytes[2 * i + 1] = value & 0xff;
  });
  return bytes;
}

/**
 * The header a client sends for one connection: from `source` if given,
 * else from the connection's own `local` address, to the server's
 * (`remote`, or the loopback address of the source's family); `LOCAL`
 * (v2) or `UNKNOWN` (v1) when there is no address (a Unix socket).
 */
export function clientHeader(
  version: 1 | 2,
  source: { hostname: string; port: number } | undefined,
  local: { hostname: string; port: number } | undefined,
  remote: { hostname: string; port: number } | undefined,
): Uint8Array {
  const from = source ?? local;
  if (from === undefined) return encodeProxyHeader({ version });
  // The server's address, in the family of the claimed source.
  const family = isIP(from.hostname);
  const to = remote && isIP(remote.hostname) === family
    ? remote
    : { hostname: family === 4 ? "127.0.0.1" : "::1", port: 0 };
  return encodeProxyHeader({
    version,
    source: { hostname: from.hostname, port: from.port },
    destination: { hostname: to.hostname, port: to.port },
  });
}
