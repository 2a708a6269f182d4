// The TLS session of the native engine (lib/tls/), free of I/O: two
// sessions, a client's and a server's, talk through memory; OpenSSL's
// contexts from PEM text, and its errors in its own words.

import assert from "node:assert/strict";
import { openSsl } from "../lib/tls/openssl.ts";
import { liveContexts, TlsContext } from "../lib/tls/context.ts";
import {
  CLOSED,
  FAILED,
  liveSessions,
  TlsSession,
} from "../lib/tls/session.ts";
import { testCertificates } from "./_certs.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Moves what `from` has to send into `to`; returns how many bytes. */
function carry(from: TlsSession, to: TlsSession): number {
  const buffer = new Uint8Array(4096);
  let moved = 0;
  while (true) {
    const n = from.take(buffer);
    if (n === 0) return moved;
    to.put(buffer, n);
    moved += n;
  }
}

/** Everything `session` has decrypted, as text, and how it stopped. */
function readAll(session: TlsSession): [string, number] {
  const buffer = new Uint8Array(1024);
  let text = "";
  while (true) {
    const n = session.read(buffer);
    if (n <= 0) return [text, n];
    text += decoder.decode(buffer.subarray(0, n));
  }
}

Deno.test("two TLS sessions handshake in memory, carry bytes both ways, and end with close_notify; all freed", async () => {
  await using certs = await testCertificates();
  const lib = openSsl();
  try {
    const serverContext = TlsContext.server(lib, {
      cert: certs.cert,
      key: certs.key,
    });
    const clientContext = TlsContext.client(lib);
    const server = new TlsSession(serverContext, true);
    const client = new TlsSession(clientContext, false);
    assert.equal(liveSessions(), 2);
    let rounds = 0;
    let serverDone = false;
    let clientDone = false;
    while (!(serverDone && clientDone) && rounds++ < 10) {
      clientDone = client.handshake();
      carry(client, server);
      serverDone = server.handshake();
      carry(server, client);
    }
    assert.ok(serverDone && clientDone, `handshake after ${rounds} rounds`);
    assert.equal(server.version, "TLSv1.3");
    assert.match(server.cipher, /^TLS_/);
    // 100 KB: more than one record.
    const big = "x".repeat(100_000) + "\n";
    assert.ok(client.write(encoder.encode(big), big.length));
    carry(client, server);
    const [got, stop] = readAll(server);
    assert.equal(got, big);
    assert.equal(stop, 0);
    assert.ok(server.write(encoder.encode("back"), 4));
    carry(server, client);
    assert.equal(readAll(client)[0], "back");
    // Idle: the record buffers go, and come back for the next record.
    assert.ok(server.trim());
    assert.ok(client.trim());
    assert.ok(client.write(encoder.encode("again"), 5));
    carry(client, server);
    assert.equal(readAll(server)[0], "again");
    // The client's end of stream; the server can still answer (TLS 1.3).
    client.closeNotify();
    carry(client, server);
    assert.deepEqual(readAll(server), ["", CLOSED]);
    assert.ok(server.write(encoder.encode("last"), 4));
    server.closeNotify();
    carry(server, client);
    assert.deepEqual(readAll(client), ["last", CLOSED]);
    for (const session of [server, client]) session.free();
    serverContext.free();
    clientContext.free();
    assert.equal(liveSessions(), 0);
    assert.equal(liveContexts(), 0);
  } finally {
    lib.close();
  }
});

Deno.test("a TLS session says why it failed: plain text, an HTTP request, garbage after the handshake", async () => {
  await using certs = await testCertificates();
  const lib = openSsl();
  const context = TlsContext.server(lib, { cert: certs.cert, key: certs.key });
  try {
    for (
      const [input, reason] of [
        [
          "hello there\n",
          /wrong version number|record layer failure|unknown protocol/,
        ],
        ["GET / HTTP/1.1\r\nHost: x\r\n\r\n", /http request/],
      ] as const
    ) {
      const server = new TlsSession(context, true);
      server.put(encoder.encode(input), input.length);
      assert.equal(server.handshake(), false);
      assert.match(server.error ?? "", reason);
      server.free();
    }
    // A record that does not decrypt, after a good handshake.
    const clientContext = TlsContext.client(lib);
    const server = new TlsSession(context, true);
    const client = new TlsSession(clientContext, false);
    for (let i = 0; i < 5; i++) {
      client.handshake();
      carry(client, server);
      server.handshake();
      carry(server, client);
    }
    const record = new Uint8Array([23, 3, 3, 0, 32, ...new Uint8Array(32)]);
    server.put(record, record.length);
    assert.equal(server.read(new Uint8Array(100)), FAILED);
    assert.match(server.error ?? "", /decrypt|bad record mac/i);
    server.free();
    client.free();
    clientContext.free();
  } finally {
    context.free();
    lib.close();
  }
  assert.equal(liveSessions(), 0);
  assert.equal(liveContexts(), 0);
});

Deno.test("a TLS context refuses a text without a certificate, a key without PEM, and a key of another certificate", async () => {
  await using certs = await testCertificates();
  const lib = openSsl();
  try {
    assert.throws(
      () =>
        TlsContext.server(lib, { cert: "not a certificate", key: certs.key }),
      {
        name: "TypeError",
        message: "Cannot use cert: no PEM certificate found in it",
      },
    );
    assert.throws(
      () => TlsContext.server(lib, { cert: certs.cert, key: "nothing" }),
      {
        name: "TypeError",
        message: "Cannot use key: no PEM private key found in it",
      },
    );
    assert.throws(
      () => TlsContext.server(lib, { cert: certs.cert, key: certs.otherKey }),
      {
        name: "TypeError",
        message: "Cannot use key: it does not belong to the certificate",
      },
    );
    assert.equal(liveContexts(), 0);
  } finally {
    lib.close();
  }
});
