// The PROXY protocol header codec (lib/proxy/header.ts): properties over
// random input with fast-check, and every malformed header the spec rules
// out.

import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import { concat } from "./_helpers.ts";
import {
  encodeProxyHeader,
  parseProxyHeader,
  V2_SIGNATURE,
} from "../lib/proxy/header.ts";

const encoder = new TextEncoder();

const ipv4 = fc.ipV4();
const ipv6 = fc.ipV6();
const port = fc.integer({ min: 0, max: 65535 });
const endpoints = fc.oneof(
  fc.tuple(ipv4, ipv4),
  fc.tuple(ipv6, ipv6),
);

/** The canonical text of an IPv6 address, as the parser returns it. */
function canonical(address: string): string {
  return address.includes(":")
    ? new URL(`http://[${address}]/`).hostname.slice(1, -1)
    : address;
}

Deno.test("parseProxyHeader() never throws on random bytes, and says what it found", () => {
  const starts = fc.constantFrom(
    new Uint8Array(),
    encoder.encode("PROXY "),
    encoder.encode("PROXY TCP4 "),
    V2_SIGNATURE,
    concat([V2_SIGNATURE, new Uint8Array([0x21])]),
  );
  fc.assert(
    fc.property(starts, fc.uint8Array({ maxLength: 300 }), (start, tail) => {
      const result = parseProxyHeader(concat([start, tail]));
      assert.ok(["incomplete", "invalid", "done"].includes(result.state));
      if (result.state === "done") {
        assert.ok(
          result.length > 0 && result.length <= start.length + tail.length,
        );
      }
    }),
    { numRuns: 5000 },
  );
});

Deno.test("every header the encoder makes parses back, whole, only whole, and ignores what follows", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(1 as const, 2 as const),
      endpoints,
      port,
      port,
      fc.uint8Array({ maxLength: 64 }),
      (version, [src, dst], sport, dport, after) => {
        const header = encodeProxyHeader({
          version,
          source: { hostname: src, port: sport },
          destination: { hostname: dst, port: dport },
        });
        const result = parseProxyHeader(concat([header, after]));
        assert.equal(result.state, "done");
        if (result.state !== "done") return;
        assert.equal(result.length, header.length);
        assert.equal(result.header.version, version);
        assert.equal(result.header.command, "proxy");
        assert.deepEqual(result.header.source, {
          hostname: canonical(src),
          port: sport,
        });
        assert.deepEqual(result.header.destination, {
          hostname: canonical(dst),
          port: dport,
        });
        // Any strict prefix is not yet a header, and not an error either.
        for (const cut of [1, header.length >> 1, header.length - 1]) {
          assert.equal(
            parseProxyHeader(header.subarray(0, cut)).state,
            "incomplete",
          );
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("LOCAL and UNKNOWN keep the connection's own address", () => {
  for (const version of [1, 2] as const) {
    const bytes = encodeProxyHeader({ version });
    const result = parseProxyHeader(bytes);
    assert.equal(result.state, "done");
    if (result.state === "done") {
      assert.equal(result.header.command, "local");
      assert.equal(result.header.source, undefined);
      assert.equal(result.length, bytes.length);
    }
  }
  // UNKNOWN may carry anything up to its CRLF, which is ignored.
  const unknown = parseProxyHeader(
    encoder.encode("PROXY UNKNOWN whatever 1 2\r\nrest"),
  );
  assert.equal(unknown.state, "done");
});

/** A v2 header: version and command, family and protocol, body. */
function v2(versionCommand: number, family: number, body: Uint8Array) {
  const fixed = new Uint8Array(4);
  fixed[0] = versionCommand;
  fixed[1] = family;
  new DataView(fixed.buffer).setUint16(2, body.length);
  return concat([V2_SIGNATURE, fixed, body]);
}

Deno.test("malformed headers are invalid, each with its reason", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "not a header",
      encoder.encode("GET / HTTP/1.1\r\n"),
      /^not a PROXY header$/,
    ],
    [
      "v1 longer than 107 bytes",
      encoder.encode(`PROXY TCP4 ${"1".repeat(120)}`),
      /longer than 107 bytes/,
    ],
    [
      "v1 without CR",
      encoder.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
      /does not end with CRLF/,
    ],
    [
      "v1 leading zeros in an address",
      encoder.encode("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n"),
      /is not an IP address/,
    ],
    [
      "v1 leading zeros in a port",
      encoder.encode("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
      /ports .* are not valid/,
    ],
    [
      "v1 port out of range",
      encoder.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"),
      /ports .* are not valid/,
    ],
    [
      "v1 family that does not match",
      encoder.encode("PROXY TCP4 ::1 ::1 1 2\r\n"),
      /does not match TCP4/,
    ],
    [
      "v1 unknown family",
      encoder.encode("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
      /is not TCP4, TCP6 or UNKNOWN/,
    ],
    [
      "v1 missing field",
      encoder.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
      /needs 6 fields/,
    ],
    [
      "v1 two spaces",
      encoder.encode("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),
      /needs 6 fields|not an IP address/,
    ],
    ["v2 version 1", v2(0x11, 0x11, new Uint8Array(12)), /version 1 is not 2/],
    ["v2 command 2", v2(0x22, 0x11, new Uint8Array(12)), /command 2/],
    ["v2 family 4", v2(0x21, 0x41, new Uint8Array(12)), /family 4 is unknown/],
    ["v2 protocol 3", v2(0x21, 0x13, new Uint8Array(12)), /protocol 3/],
    [
      "v2 INET with too short a length",
      v2(0x21, 0x11, new Uint8Array(8)),
      /too short for its address family/,
    ],
    [
      "v2 INET6 with INET's length",
      v2(0x21, 0x21, new Uint8Array(12)),
      /too short for its address family/,
    ],
    [
      "wrong v2 signature",
      concat([V2_SIGNATURE.subarray(0, 11), new Uint8Array([0x0b])]),
      /^not a PROXY header$/,
    ],
  ];
  for (const [name, bytes, reason] of cases) {
    const result = parseProxyHeader(bytes);
    assert.equal(result.state, "invalid", name);
    if (result.state === "invalid") assert.match(result.reason, reason, name);
  }
  // A length that runs past what arrived is not complete, not valid yet.
  const long = v2(0x21, 0x11, new Uint8Array(12));
  long[15] = 40;
  assert.equal(parseProxyHeader(long).state, "incomplete");
});

Deno.test("encodeProxyHeader() refuses addresses of two families", () => {
  assert.throws(
    () =>
      encodeProxyHeader({
        version: 2,
        source: { hostname: "1.2.3.4", port: 1 },
        destination: { hostname: "::1", port: 2 },
      }),
    RangeError,
  );
});
