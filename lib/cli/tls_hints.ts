// Private: what the client's command line adds to a TLS failure, free of
// I/O. The library reports a failure in its TLS stack's own words (rustls
// for Deno's sockets and node:tls, OpenSSL for the native engine); the
// command line keeps them and says, after them, what they usually mean
// here and which flag mends it. Not exported from mod.ts.

/** A failure's words, in any of the three stacks, and what to say. */
const HINTS: readonly (readonly [RegExp, string])[] = [
  [
    /got ClientHello when expecting|^TLS handshake: unexpected message$/,
    "the server does not seem to speak TLS: an echo server without TLS " +
    "sends this client's own hello back; leave out --tls, or serve with " +
    "--tls-cert and --tls-key",
  ],
  [
    /UnknownIssuer|unable to get local issuer|unable to verify the first certificate|self[- ]signed certificate/,
    "the server's certificate is not signed by an authority this client " +
    "trusts: name that authority's certificate with --ca FILE; deno task " +
    "cert writes it as ca.pem",
  ],
  [
    /CaUsedAsEndEntity/,
    "the server's certificate is an authority's, as openssl req -x509 " +
    "makes, not a server's: serve one an authority signed, as deno task " +
    "cert writes",
  ],
  [
    /not valid for name|hostname mismatch|does not match certificate's altnames/,
    "the server's certificate is for other names: connect by one of them, " +
    "or name one with --server-name NAME",
  ],
  [
    /\bExpired\b|certificate has expired/,
    "the server's certificate has expired, or this machine's clock is wrong",
  ],
  [
    /NotValidYet|certificate is not yet valid/,
    "the server's certificate is not valid yet, or this machine's clock is " +
    "wrong",
  ],
  [
    /CertificateRequired|alert certificate required/,
    "the server asks for a client certificate: --tls-cert FILE and " +
    "--tls-key FILE",
  ],
];

/**
 * What to add to a failure's `message` when it is a TLS failure the
 * client's flags can mend: ` (hint)`, or `""`.
 */
export function tlsHint(message: string): string {
  const found = HINTS.find(([words]) => words.test(message));
  return found === undefined ? "" : ` (${found[1]})`;
}
