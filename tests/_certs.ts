// A throwaway certificate authority and a leaf certificate for TLS tests,
// made with openssl at test time (rustls refuses a CA certificate used as
// the server's own).

import { run } from "./_process.ts";

/** PEM texts and the files they are in, in a directory removed on dispose. */
export interface TestCertificates extends AsyncDisposable {
  dir: string;
  /** The authority's certificate: what clients trust. */
  ca: string;
  /** The server's certificate, for localhost, 127.0.0.1 and ::1. */
  cert: string;
  key: string;
  /** A key that belongs to another certificate. */
  otherKey: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  otherKeyFile: string;
  /** A client's certificate by the CA: `CN=alice,O=Example`. */
  alice: PemFiles;
  /** alice's certificate, expired yesterday. */
  expired: PemFiles;
  /** A client's certificate by another CA (`CN=mallory`). */
  stranger: PemFiles;
  /** A server certificate by the CA for `other.example` (SNI). */
  other: PemFiles;
}

/** A certificate and its key, as files. */
export interface PemFiles {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const result = await run("openssl", args, undefined, dir);
  if (result.code !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${result.stderr}`);
  }
}

/**
 * Makes a CA, a leaf certificate signed by it, an unrelated key, client
 * certificates (by the CA, expired, by another CA) and a second server
 * certificate for SNI.
 */
export async function testCertificates(): Promise<TestCertificates> {
  const dir = await Deno.makeTempDir({ prefix: "tcp-echo-tls-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
  const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
  /** A self-signed authority, `name`.pem and `name`.key. */
  const authority = (name: string, subject: string) =>
    openssl(dir, [
      "req",
      "-x509",
      ...ec,
      "-nodes",
      ...["-keyout", `${name}.key`, "-out", `${name}.pem`],
      ...["-days", "2", "-subj", subject],
    ]);
  /** A certificate signed by `ca`, for `subject`, with `extensions`. */
  const signed = async (
    name: string,
    subject: string,
    extensions: string,
    ca = "ca",
    days = "2",
  ): Promise<PemFiles> => {
    await openssl(dir, [
      "req",
      ...ec,
      "-nodes",
      ...["-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject],
    ]);
    await Deno.writeTextFile(`${dir}/${name}.cnf`, extensions);
    await openssl(dir, [
      "x509",
      "-req",
      ...["-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`],
      "-CAcreateserial",
      ...["-out", `${name}.pem`, "-days", days, "-extfile", `${name}.cnf`],
    ]);
    return {
      certFile: `${dir}/${name}.pem`,
      keyFile: `${dir}/${name}.key`,
      cert: await read(`${name}.pem`),
      key: await read(`${name}.key`),
    };
  };
  await authority("ca", "/CN=tcp-echo test CA");
  await authority("stranger-ca", "/CN=another CA");
  const leaf = await signed(
    "leaf",
    "/CN=localhost",
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n" +
      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" +
      "extendedKeyUsage=serverAuth\n",
  );
  await openssl(dir, [
    "genpkey",
    ...["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ...["-out", "other.key"],
  ]);
  const client = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n" +
    "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:alice.example\n";
  return {
    dir,
    ca: await read("ca.pem"),
    cert: leaf.cert,
    key: leaf.key,
    otherKey: await read("other.key"),
    caFile: `${dir}/ca.pem`,
    certFile: leaf.certFile,
    keyFile: leaf.keyFile,
    otherKeyFile: `${dir}/other.key`,
    alice: await signed("alice", "/O=Example/CN=alice", client),
    expired: await signed("expired", "/O=Example/CN=alice", client, "ca", "-1"),
    stranger: await signed("stranger", "/CN=mallory", client, "stranger-ca"),
    other: await signed(
      "sni",
      "/CN=other.example",
      "subjectAltName=DNS:other.example\nbasicConstraints=CA:FALSE\n" +
        "extendedKeyUsage=serverAuth\n",
    ),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}
