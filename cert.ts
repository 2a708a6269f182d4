/**
 * The certificate command: writes a throwaway certificate authority
 * (`ca.pem`) and a certificate it signed (`cert.pem`, `key.pem`) for TLS
 * tests, as mkcert does.
 *
 * ```sh
 * deno task cert                               # localhost, 127.0.0.1, ::1
 * deno task cert --name echo.test --out /tmp/certs
 * deno task server --tls-cert cert.pem --tls-key key.pem
 * deno task client --tls --ca ca.pem hi
 * ```
 *
 * @module
 */

import denoJson from "./deno.json" with { type: "json" };
import {
  createCertificates,
  DEFAULT_CERTIFICATE_NAMES,
} from "./lib/create_certificates.ts";
import type { OptionError } from "./lib/_helpers.ts";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  flagFor,
  parseFlags,
  printError,
  usageExit,
} from "./lib/cli/flags.ts";
import { CERT_FILES, CERT_FLAGS, CERT_HELP } from "./lib/cli/cert_flags.ts";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(CERT_FLAGS, args, false);
  } catch (error) {
    return usageExit(error);
  }
  const { values: v, spelled } = parsed;
  if (v.help || v.version) {
    console.log(v.help ? CERT_HELP : denoJson.version);
    return EXIT_OK;
  }
  let made;
  try {
    made = await createCertificates({
      names: v.name,
      days: v.days,
      client: v.client,
    });
  } catch (error) {
    const { option, reason } = error as Partial<OptionError>;
    const flag = option && flagFor(CERT_FLAGS, spelled, option);
    if (!flag) throw error;
    printError(`Invalid ${flag}: ${reason} (see --help)`);
    return EXIT_USAGE;
  }
  const dir = v.out ?? ".";
  const path = (file: string) => dir === "." ? file : `${dir}/${file}`;
  const files: [string, string, number][] = [
    [path(CERT_FILES.ca), made.caCert, 0o644],
    [path(CERT_FILES.cert), made.cert, 0o644],
    [path(CERT_FILES.key), made.key, 0o600],
  ];
  if (made.clientCert !== undefined && made.clientKey !== undefined) {
    files.push(
      [path(CERT_FILES.clientCert), made.clientCert, 0o644],
      [path(CERT_FILES.clientKey), made.clientKey, 0o600],
    );
  }
  try {
    Deno.mkdirSync(dir, { recursive: true });
    // All or nothing: no file is written while one is in the way.
    for (const [file] of files) {
      if (!v.force && exists(file)) {
        throw new Error(`${file} is already there (give --force to replace)`);
      }
    }
    for (const [file, pem, mode] of files) {
      // A file replaced with --force takes its mode before its new text: a
      // key is never readable by others, not even for a moment.
      if (exists(file)) Deno.chmodSync(file, mode);
      Deno.writeTextFileSync(file, pem, { mode });
    }
  } catch (error) {
    printError(`Cannot write the certificates: ${(error as Error).message}`);
    return EXIT_FAILURE;
  }
  const names = (v.name ?? DEFAULT_CERTIFICATE_NAMES).join(", ");
  const until = made.notAfter.toISOString().slice(0, 10);
  const width = Math.max(...files.map(([file]) => file.length));
  const line = (i: number, what: string) =>
    `  ${files[i][0].padEnd(width)}  ${what}`;
  console.log(
    [
      `Made a throwaway CA and a certificate for ${names}, valid until ${until}:`,
      line(
        0,
        "the CA: clients trust it (--ca, curl --cacert, openssl -CAfile)",
      ),
      line(1, "the certificate, for server --tls-cert"),
      line(2, "its private key, for server --tls-key"),
      ...files.length > 3
        ? [
          line(3, `the certificate of CN=${v.client}, for a client`),
          line(4, "its private key"),
        ]
        : [],
    ].join("\n"),
  );
  return EXIT_OK;
}

/** Whether something is at `path` (a file, or anything else in the way). */
function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
