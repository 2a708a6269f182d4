// createCertificates() and `deno task cert`: a throwaway CA and a
// certificate that our server, our client, openssl and curl all take.

import assert from "node:assert/strict";
import { createCertificates, echoOnce, serveEcho } from "../mod.ts";
import { tempDir } from "./_helpers.ts";
import { CLIENT, LOCK, ROOT, run, SERVER, ServerProcess } from "./_process.ts";

const CERT = `${ROOT}cert.ts`;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs cert.ts as its task does, with `args`. */
function cert(args: string[]) {
  return run(Deno.execPath(), [
    ...["run", LOCK, "--allow-read", "--allow-write", CERT, ...args],
  ]);
}

Deno.test("createCertificates() makes a CA and a certificate that TLS echo takes", async () => {
  const made = await createCertificates();
  assert.match(made.caCert, /^-----BEGIN CERTIFICATE-----\n/);
  assert.match(made.key, /^-----BEGIN PRIVATE KEY-----\n/);
  await using server = serveEcho({ port: 0, cert: made.cert, key: made.key });
  for (const hostname of ["127.0.0.1", "localhost"]) {
    const echo = await echoOnce("hi", {
      hostname,
      port: server.addr.port,
      tls: true,
      caCerts: [made.caCert],
    });
    assert.equal(echo, "hi");
  }
  // Another CA is not trusted: the check is real.
  const other = await createCertificates();
  await assert.rejects(
    echoOnce("hi", {
      port: server.addr.port,
      tls: true,
      caCerts: [other.caCert],
    }),
    /invalid peer certificate/,
  );
});

Deno.test("createCertificates() puts the names in, and refuses bad ones", async () => {
  await using dir = await tempDir("tcp-echo-cert-");
  const made = await createCertificates({
    names: ["echo.test", "*.echo.test", "192.0.2.7", "2001:db8::1"],
    days: 3,
  });
  await Deno.writeTextFile(`${dir.path}/ca.pem`, made.caCert);
  await Deno.writeTextFile(`${dir.path}/cert.pem`, made.cert);
  const verify = await run("openssl", [
    ...["verify", "-CAfile", `${dir.path}/ca.pem`, `${dir.path}/cert.pem`],
  ]);
  assert.equal(verify.code, 0, verify.stderr);
  const text = await run("openssl", [
    ...["x509", "-in", `${dir.path}/cert.pem`, "-noout", "-text"],
  ]);
  const shown = decoder.decode(text.stdout);
  assert.match(
    shown,
    /DNS:echo\.test, DNS:\*\.echo\.test, IP Address:192\.0\.2\.7, IP Address:2001:DB8:0:0:0:0:0:1/,
  );
  assert.match(shown, /CA:FALSE/);
  assert.match(shown, /TLS Web Server Authentication/);
  const days = (made.notAfter.getTime() - Date.now()) / 86_400_000;
  assert.ok(days > 2.99 && days <= 3, String(days));
  for (const names of [["bad name"], ["-x.test"], []]) {
    await assert.rejects(createCertificates({ names }), RangeError);
  }
  await assert.rejects(createCertificates({ days: 0 }), RangeError);
});

Deno.test("deno task cert writes files the server, our client, openssl and curl take, and keeps what is there", async () => {
  await using dir = await tempDir("tcp-echo-cert-");
  const out = `${dir.path}/certs`;
  const first = await cert(["--out", out]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(
    decoder.decode(first.stdout),
    /^Made a throwaway CA and a certificate for localhost, 127\.0\.0\.1, ::1, valid until \d{4}-\d\d-\d\d:\n/,
  );
  const key = await Deno.stat(`${out}/key.pem`);
  assert.equal(key.mode! & 0o777, 0o600);
  const ca = await Deno.readTextFile(`${out}/ca.pem`);

  // Not replaced without --force: exit 1, and nothing changed.
  const again = await cert(["--out", out]);
  assert.equal(again.code, 1);
  assert.equal(
    again.stderr,
    `error: Cannot write the certificates: ${out}/ca.pem is already there (give --force to replace)\n`,
  );
  assert.equal(await Deno.readTextFile(`${out}/ca.pem`), ca);
  // A key made readable by others gets its mode back when replaced.
  await Deno.chmod(`${out}/key.pem`, 0o644);
  const forced = await cert(["--out", out, "--force"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(await Deno.readTextFile(`${out}/ca.pem`), ca);
  assert.equal((await Deno.stat(`${out}/key.pem`)).mode! & 0o777, 0o600);

  // The server CLI with them; our client and openssl s_client trust ca.pem.
  await using server = await ServerProcess.start([
    ...["--tls-cert", `${out}/cert.pem`, "--tls-key", `${out}/key.pem`],
  ], [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER]);
  const client = await run(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", "--allow-read", CLIENT],
    ...["--port", String(server.port), "--tls", "--ca", `${out}/ca.pem`],
    "over TLS",
  ]);
  assert.equal(client.code, 0, client.stderr);
  assert.equal(decoder.decode(client.stdout), "over TLS\n");
  // openssl s_client verifies the chain and the name; socat echoes through.
  const openssl = await run("openssl", [
    ...["s_client", "-connect", `127.0.0.1:${server.port}`, "-CAfile"],
    ...[`${out}/ca.pem`, "-verify_return_error", "-verify_hostname"],
    "localhost",
  ]);
  assert.equal(openssl.code, 0, openssl.stderr);
  assert.match(decoder.decode(openssl.stdout), /Verify return code: 0 \(ok\)/);
  const socat = await run("socat", [
    "-",
    `OPENSSL:127.0.0.1:${server.port},cafile=${out}/ca.pem,commonname=localhost`,
  ], encoder.encode("from socat"));
  assert.equal(socat.code, 0, socat.stderr);
  assert.equal(decoder.decode(socat.stdout), "from socat");

  // curl, against an HTTPS server with the same files.
  await using https = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(`${out}/cert.pem`),
    key: await Deno.readTextFile(`${out}/key.pem`),
    onListen: () => {},
  }, () => new Response("trusted\n"));
  const curl = await run("curl", [
    ...["-sS", "--cacert", `${out}/ca.pem`],
    `https://localhost:${https.addr.port}/`,
  ]);
  assert.equal(curl.code, 0, curl.stderr);
  assert.equal(decoder.decode(curl.stdout), "trusted\n");
});

Deno.test("deno task cert: usage errors exit 2 with one line", async () => {
  for (
    const [args, message] of [
      [
        ["--name", "bad name!"],
        "Invalid --name: expected host names or IP addresses, got 'bad name!'",
      ],
      [["--days", "0"], "Invalid --days: must be a positive integer, got 0"],
      [["--bogus"], "Unknown option '--bogus'"],
    ]
  ) {
    const result = await cert(args as string[]);
    assert.equal(result.code, 2);
    assert.equal(result.stderr, `error: ${message} (see --help)\n`);
  }
  const help = await cert(["--help"]);
  assert.equal(help.code, 0);
  assert.match(
    decoder.decode(help.stdout),
    /^Usage: deno task cert \[options\]/,
  );
});

Deno.test("createCertificates({ client }) adds a client's certificate by the same CA, which the native engine takes", async () => {
  await using dir = await tempDir("tcp-echo-cert-");
  const made = await createCertificates({ client: "alice" });
  assert.ok(made.clientCert !== undefined && made.clientKey !== undefined);
  const file = (name: string, text: string) => {
    Deno.writeTextFileSync(`${dir.path}/${name}`, text);
    return `${dir.path}/${name}`;
  };
  const ca = file("ca.pem", made.caCert);
  const client = file("client.pem", made.clientCert);
  const key = file("client-key.pem", made.clientKey);
  const verify = await run("openssl", [
    ...["verify", "-purpose", "sslclient", "-CAfile", ca, client],
  ]);
  assert.equal(verify.code, 0, verify.stderr);
  await using server = serveEcho({
    port: 0,
    engine: "native",
    mode: "info",
    cert: made.cert,
    key: made.key,
    clientCa: made.caCert,
  });
  await server.ready;
  const asked = await run("openssl", [
    "s_client",
    ...["-connect", `127.0.0.1:${server.addr.port}`, "-CAfile", ca],
    ...["-cert", client, "-key", key, "-quiet", "-verify_quiet", "-ign_eof"],
  ], encoder.encode("clientcert\nquit\n"));
  assert.equal(decoder.decode(asked.stdout), "CN=alice\n", asked.stderr);
  for (const bad of ["", "a,b", "x".repeat(65), "tab\there"]) {
    await assert.rejects(
      createCertificates({ client: bad }),
      (error: Error & { option?: string }) =>
        error instanceof RangeError && error.option === "client",
    );
  }
});
