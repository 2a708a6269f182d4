import type * as X509 from "npm:@peculiar/x509@^1.14.0";
import { isIP } from "node:net";
import { importLazily } from "./_lazy.ts";
import { assertPositive, optionError } from "./_helpers.ts";

/** Options for {@linkcode createCertificates}. */
export interface CreateCertificatesOptions {
  /**
   * What the certificate is for: host names (`example.test`, or a wildcard
   * `*.example.test`) and IP addresses (IPv4 or IPv6), each put in its
   * subject alternative names; the first is also its common name.
   *
   * @default {["localhost", "127.0.0.1", "::1"]}
   */
  names?: readonly string[];
  /**
   * Days the certificate is valid, from now; the authority is valid ten
   * years.
   *
   * @default {825}
   */
  days?: number;
  /**
   * Also a client's certificate signed by the same authority, for servers
   * that ask for one (`serveEcho`'s `clientCa`): its subject is
   * `CN=<client>`, and it is for `clientAuth` only.
   */
  client?: string;
}

/**
 * A throwaway certificate authority and a certificate it signed, as PEM
 * text. The authority's private key is not kept: nothing else can be
 * signed with it.
 */
export interface Certificates {
  /** The authority's certificate: what clients trust. */
  readonly caCert: string;
  /** The certificate, for a server (`serveEcho`'s `cert`). */
  readonly cert: string;
  /** Its private key, PKCS #8 (`serveEcho`'s `key`). */
  readonly key: string;
  /** The last day it is valid. */
  readonly notAfter: Date;
  /** With `client`: the client's certificate, for the client to present. */
  readonly clientCert?: string;
  /** With `client`: its private key, PKCS #8. */
  readonly clientKey?: string;
}

/** The names a certificate is for when none are given. */
export const DEFAULT_CERTIFICATE_NAMES: readonly string[] = [
  "localhost",
  "127.0.0.1",
  "::1",
];

/** ECDSA on P-256 with SHA-256: what every TLS stack takes. */
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const DAY_MS = 86_400_000;
/** A host name, or a wildcard one: letters, digits, hyphens and dots. */
const HOST_NAME =
  /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * Makes a throwaway certificate authority and a certificate it signed for
 * `names`, as mkcert does, with Web Crypto (ECDSA P-256): the certificate is
 * for servers and clients (`serverAuth`, `clientAuth`) and is not an
 * authority, so TLS stacks that refuse an authority's certificate used as a
 * server's own (rustls, and so Deno) take it. Clients trust `caCert`.
 *
 * @example A TLS echo server with a certificate made in code
 * ```ts
 * import { createCertificates, echoOnce, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * const { caCert, cert, key } = await createCertificates();
 * await using server = serveEcho({ port: 0, cert, key });
 * const echo = await echoOnce("hi", {
 *   port: server.addr.port,
 *   tls: true,
 *   caCerts: [caCert],
 * });
 * assert.equal(echo, "hi");
 * ```
 *
 * @param options What the certificate is for, and for how long.
 * @returns The authority's certificate, the certificate and its key, in PEM.
 * @throws {RangeError} A name is neither a host name nor an IP address, or
 * `days` is not a positive integer; the error's `option` field names it.
 */
export async function createCertificates(
  options: CreateCertificatesOptions = {},
): Promise<Certificates> {
  const { names = DEFAULT_CERTIFICATE_NAMES, days = 825 } = options;
  if (names.length === 0) throw optionError("names", "empty");
  for (const name of names) {
    if (isIP(name) === 0 && !HOST_NAME.test(name)) {
      throw optionError(
        "names",
        `expected host names or IP addresses, got '${name}'`,
      );
    }
  }
  assertPositive("days", days, true);
  const { client } = options;
  if (client !== undefined && !/^[^\p{Cc},+="<>#;\\]{1,64}$/u.test(client)) {
    throw optionError(
      "client",
      `expected 1 to 64 characters without controls or , + = " < > # ; \\, got '${client}'`,
    );
  }
  const x509 = await importLazily<typeof X509>("npm:@peculiar/x509@^1.14.0");
  x509.cryptoProvider.set(crypto);
  const now = Date.now();
  // A minute back: a peer whose clock is a little behind takes it too.
  const notBefore = new Date(now - 60_000);
  const notAfter = new Date(now + days * DAY_MS);
  const caKeys = await crypto.subtle.generateKey(ALGORITHM, false, [
    "sign",
    "verify",
  ]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=tcp-echo throwaway CA ${new Date(now).toISOString()}`,
    notBefore,
    notAfter: new Date(now + 3650 * DAY_MS),
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, [
    "sign",
    "verify",
  ]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${names[0]}`,
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingKey: caKeys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(
        names.map((name) => ({
          type: isIP(name) === 0 ? "dns" as const : "ip" as const,
          value: name,
        })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const made = {
    caCert: `${ca.toString("pem")}\n`,
    cert: `${leaf.toString("pem")}\n`,
    key: `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY")}\n`,
    notAfter,
  };
  if (client === undefined) return made;
  const clientKeys = await crypto.subtle.generateKey(ALGORITHM, true, [
    "sign",
    "verify",
  ]);
  const clientCert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${client}`,
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingKey: caKeys.privateKey,
    publicKey: clientKeys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
      await x509.SubjectKeyIdentifierExtension.create(clientKeys.publicKey),
    ],
  });
  const clientPkcs8 = await crypto.subtle.exportKey(
    "pkcs8",
    clientKeys.privateKey,
  );
  return {
    ...made,
    clientCert: `${clientCert.toString("pem")}\n`,
    clientKey: `${x509.PemConverter.encode(clientPkcs8, "PRIVATE KEY")}\n`,
  };
}

/** 16 random bytes in hex, the first below 0x80: a positive serial number. */
function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
