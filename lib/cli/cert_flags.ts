// Private: cert.ts's flags and --help. Not exported from mod.ts.

import { DEFAULT_CERTIFICATE_NAMES } from "../create_certificates.ts";
import { type Flag, flagHelp, integer, text } from "./flags.ts";

/** Every flag of cert.ts: `--help`, parsing and checking come from it. */
export const CERT_FLAGS = {
  name: {
    arg: "NAME",
    option: "names",
    multiple: true,
    help: "a host name or IP address the certificate is for (again for " +
      "more; a wildcard *.example.test works)",
    default: DEFAULT_CERTIFICATE_NAMES.join(", "),
    parse: text,
  },
  out: {
    arg: "DIR",
    help: "the folder to write ca.pem, cert.pem and key.pem in",
    default: "the current one (the repository's, for deno task cert)",
    parse: text,
  },
  days: {
    arg: "N",
    help: "days the certificate is valid (the authority: ten years)",
    default: "825",
    parse: integer,
  },
  client: {
    arg: "NAME",
    help: "also a client's certificate, CN=NAME, signed by the same CA, in " +
      "client.pem and client-key.pem (for server --tls-client-ca ca.pem)",
    parse: text,
  },
  force: { help: "replace files that are already there" },
  help: { short: "h", help: "print this help and exit" },
  version: { short: "V", help: "print the version and exit" },
} satisfies Record<string, Flag<unknown>>;

/** The files cert.ts writes, in --out. */
export const CERT_FILES = {
  ca: "ca.pem",
  cert: "cert.pem",
  key: "key.pem",
  clientCert: "client.pem",
  clientKey: "client-key.pem",
} as const;

/** cert.ts's --help. */
export const CERT_HELP = `Usage: deno task cert [options]

Makes a throwaway certificate authority and a certificate it signed, for TLS
tests, as mkcert does (ECDSA P-256, made with Web Crypto): ${CERT_FILES.ca} (the
authority's certificate, for clients to trust), ${CERT_FILES.cert} and
${CERT_FILES.key} (the certificate and its private key, for the server). The
authority's own key is not kept. Existing files are not replaced without
--force.

Options:
${flagHelp(CERT_FLAGS)}

Examples:
  deno task cert
  deno task server --tls-cert cert.pem --tls-key key.pem
  deno task client --tls --ca ca.pem hi
  curl --cacert ca.pem https://localhost:8443/
  openssl s_client -CAfile ca.pem -connect 127.0.0.1:9000
  deno task cert --name echo.test --name 192.0.2.7 --out /tmp/certs
  deno task cert --client alice    # and client.pem, client-key.pem

Exit codes:
  0  the files were written
  1  they could not be written (one is there already, without --force)
  2  usage error (unknown flag, bad flag value)`;
