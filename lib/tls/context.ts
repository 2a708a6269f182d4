// Private: an OpenSSL context (SSL_CTX) made from PEM text: the settings
// every TLS connection of one listener shares (TLS 1.2 and up, no
// renegotiation), its certificate chain and key; on a server, the client
// certificates it asks for, the protocols it offers (ALPN), and other
// certificates chosen by the name a client asks for (SNI), each a context
// of its own with the same settings. Not exported from mod.ts.

import { createHash } from "node:crypto";
import { optionError } from "../_helpers.ts";
import {
  type OpenSsl,
  OPENSSL_NPN_NEGOTIATED,
  SSL_CTRL_CHAIN_CERT,
  SSL_CTRL_SET_MIN_PROTO_VERSION,
  SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
  SSL_OP_IGNORE_UNEXPECTED_EOF,
  SSL_OP_NO_RENEGOTIATION,
  SSL_TLSEXT_ERR_ALERT_FATAL,
  SSL_TLSEXT_ERR_OK,
  SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
  SSL_VERIFY_PEER,
  TLS1_2_VERSION,
  TLSEXT_NAMETYPE_HOST_NAME,
} from "./openssl.ts";

const encoder = new TextEncoder();

/** Contexts made and not freed yet, in this thread (tests count them). */
let live = 0;

/** The number of contexts this thread has made and not freed. */
export function liveContexts(): number {
  return live;
}

/** A certificate chain and its key, as PEM text. */
export interface KeyPair {
  cert: string;
  key: string;
}

/** What a server's TLS is made of, as serveEcho checked it. */
export interface ServerTlsOptions extends KeyPair {
  /** PEM certificates of the authorities a client's certificate must chain to. */
  clientCa?: string;
  /** Ask for a client certificate, but admit a client without one. */
  clientCertOptional?: boolean;
  /** Protocols offered by ALPN, most preferred first. */
  alpn?: string[];
  /** Other certificates, by the server name a client asks for (SNI). */
  sni?: ({ name: string } & KeyPair)[];
}

/** ALPN's wire form: each protocol's length, then the protocol. */
function alpnWire(protocols: string[]): Uint8Array {
  const parts = protocols.map((p) => encoder.encode(p));
  const wire = new Uint8Array(parts.reduce((n, p) => n + 1 + p.length, 0));
  let at = 0;
  for (const part of parts) {
    wire[at++] = part.length;
    wire.set(part, at);
    at += part.length;
  }
  return wire;
}

/** Whether `name` (lower case) is matched by `pattern` (`*.` one label). */
function nameMatches(pattern: string, name: string): boolean {
  if (!pattern.startsWith("*.")) return pattern === name;
  const dot = name.indexOf(".");
  return dot > 0 && name.slice(dot) === pattern.slice(1);
}

const SERVERNAME_CALLBACK = {
  parameters: ["pointer", "pointer", "pointer"],
  result: "i32",
} as const;
const ALPN_CALLBACK = {
  parameters: ["pointer", "pointer", "pointer", "pointer", "u32", "pointer"],
  result: "i32",
} as const;

/** What a client's context checks and presents. */
export interface ClientTlsOptions {
  /** PEM authorities to trust; the system's store without them. */
  caCerts?: readonly string[];
  /** A certificate chain to present, with its `key`. */
  cert?: string;
  key?: string;
  /** The protocols to offer by ALPN, most preferred first. */
  alpn?: readonly string[];
}

/** One listener's (or one client's) OpenSSL context. */
export class TlsContext {
  readonly lib: OpenSsl;
  readonly pointer: NonNullable<Deno.PointerValue>;
  #freed = false;
  /** A server's contexts by server name (SNI), freed with it. */
  #byName: [string, TlsContext][] = [];
  /** Closes the callbacks OpenSSL calls during handshakes. */
  #callbacks: (() => void)[] = [];
  /** ALPN's protocols in wire form: OpenSSL may point into them. */
  #alpn: Uint8Array | undefined;

  private constructor(lib: OpenSsl, pointer: NonNullable<Deno.PointerValue>) {
    this.lib = lib;
    this.pointer = pointer;
    live++;
  }

  /**
   * A server's context with the PEM certificate chain `cert` (the leaf
   * first) and private key `key`, and the rest of `options`.
   *
   * @throws {TypeError} a certificate, key or authority is not usable; its
   * `option` names it (`cert`, `key`, `clientCa`, `sni`).
   */
  static server(lib: OpenSsl, options: ServerTlsOptions): TlsContext {
    const main = TlsContext.#serverOne(lib, options, options);
    try {
      for (const entry of options.sni ?? []) {
        const named = TlsContext.#serverOne(lib, entry, options, "sni");
        main.#byName.push([entry.name.toLowerCase(), named]);
      }
      if (main.#byName.length > 0) main.#chooseByName();
    } catch (error) {
      main.free();
      throw error;
    }
    return main;
  }

  /** One server context: `pair`'s certificate, `options`' settings. */
  static #serverOne(
    lib: OpenSsl,
    pair: KeyPair,
    options: ServerTlsOptions,
    option?: string,
  ): TlsContext {
    const { ssl } = lib;
    const pointer = ssl.SSL_CTX_new(ssl.TLS_server_method());
    if (pointer === null) {
      throw new Error(`SSL_CTX_new failed: ${lib.takeError()}`);
    }
    const context = new TlsContext(lib, pointer);
    try {
      context.#settings();
      context.#useChain(pair.cert, option ?? "cert");
      context.#useKey(pair.key, option ?? "key");
      if (options.clientCa !== undefined) {
        context.#askClients(options.clientCa, options.clientCertOptional);
      }
      // A session resumes only where its verification settings hold: with
      // client certificates, OpenSSL refuses to resume without this
      // ("session id context uninitialized").
      const id = createHash("sha256").update(
        `${options.clientCa ?? ""}\0${options.clientCertOptional ?? false}`,
      ).digest();
      ssl.SSL_CTX_set_session_id_context(pointer, id, id.length);
      if (options.alpn !== undefined && options.alpn.length > 0) {
        context.#offer(options.alpn);
      }
    } catch (error) {
      context.free();
      throw error;
    }
    return context;
  }

  /**
   * A client's context. Without `options` it checks no certificate of the
   * server's (for tests); with them, the server's certificate must chain to
   * `caCerts` (or the system's authorities), and each session says for
   * which name (see TlsSession.expect).
   *
   * @throws {TypeError} a certificate, key or authority is not usable; its
   * `option` names it (`caCerts`, `cert`, `key`).
   */
  static client(lib: OpenSsl, options?: ClientTlsOptions): TlsContext {
    const { ssl } = lib;
    const pointer = ssl.SSL_CTX_new(ssl.TLS_client_method());
    if (pointer === null) {
      throw new Error(`SSL_CTX_new failed: ${lib.takeError()}`);
    }
    const context = new TlsContext(lib, pointer);
    context.#settings();
    if (options === undefined) return context;
    try {
      context.#trust(options.caCerts);
      if (options.cert !== undefined && options.key !== undefined) {
        context.#useChain(options.cert, "cert");
        context.#useKey(options.key, "key");
      }
      if (options.alpn !== undefined && options.alpn.length > 0) {
        const wire = alpnWire([...options.alpn]);
        // 0 is success here.
        if (ssl.SSL_CTX_set_alpn_protos(pointer, wire, wire.length) !== 0) {
          throw optionError("alpnProtocols", "not usable", TypeError);
        }
      }
    } catch (error) {
      context.free();
      throw error;
    }
    return context;
  }

  /** Verifies servers' certificates against `pem`, or the system's store. */
  #trust(pem: readonly string[] | undefined): void {
    const { ssl, crypto } = this.lib;
    if (pem === undefined) {
      ssl.SSL_CTX_set_default_verify_paths(this.pointer);
    } else {
      const store = ssl.SSL_CTX_get_cert_store(this.pointer);
      for (const x509 of this.#readCertificates(pem.join("\n"), "caCerts")) {
        crypto.X509_STORE_add_cert(store, x509);
        crypto.X509_free(x509);
      }
    }
    this.lib.takeError();
    ssl.SSL_CTX_set_verify(this.pointer, SSL_VERIFY_PEER, null);
  }

  /** Frees the context (connections made from it keep their reference). */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    live--;
    this.lib.ssl.SSL_CTX_free(this.pointer);
    for (const [, named] of this.#byName) named.free();
    // Connections still open keep the contexts; a handshake after this
    // point would call a closed callback: the loop frees its context last.
    for (const close of this.#callbacks) close();
  }

  /** Verifies clients' certificates against the authorities in `pem`. */
  #askClients(pem: string, optional = false): void {
    const { ssl, crypto } = this.lib;
    const store = ssl.SSL_CTX_get_cert_store(this.pointer);
    const certificates = this.#readCertificates(pem, "clientCa");
    for (const x509 of certificates) {
      crypto.X509_STORE_add_cert(store, x509);
      // The authorities' names go in the request for a certificate.
      ssl.SSL_CTX_add_client_CA(this.pointer, x509);
      crypto.X509_free(x509);
    }
    this.lib.takeError();
    ssl.SSL_CTX_set_verify(
      this.pointer,
      SSL_VERIFY_PEER | (optional ? 0 : SSL_VERIFY_FAIL_IF_NO_PEER_CERT),
      null,
    );
  }

  /** Offers `protocols` (ALPN): the client's first one we have wins. */
  #offer(protocols: string[]): void {
    const { ssl } = this.lib;
    const wire = alpnWire(protocols);
    this.#alpn = wire;
    const callback = new Deno.UnsafeCallback(
      ALPN_CALLBACK,
      (_ssl, out, outLength, offered, offeredLength) => {
        const r = ssl.SSL_select_next_proto(
          out,
          outLength,
          wire,
          wire.length,
          offered,
          offeredLength,
        );
        // No protocol in common: the handshake fails, as RFC 7301 says.
        return r === OPENSSL_NPN_NEGOTIATED
          ? SSL_TLSEXT_ERR_OK
          : SSL_TLSEXT_ERR_ALERT_FATAL;
      },
    );
    this.#callbacks.push(() => callback.close());
    ssl.SSL_CTX_set_alpn_select_cb(this.pointer, callback.pointer, null);
  }

  /** Picks the context of the name a client asks for (SNI), if any. */
  #chooseByName(): void {
    const { ssl } = this.lib;
    const byName = this.#byName;
    const callback = new Deno.UnsafeCallback(
      SERVERNAME_CALLBACK,
      (connection) => {
        const name = this.lib.text(
          ssl.SSL_get_servername(connection, TLSEXT_NAMETYPE_HOST_NAME),
        ).toLowerCase();
        if (name === "") return SSL_TLSEXT_ERR_OK;
        const found = byName.find(([pattern]) => pattern === name) ??
          byName.find(([pattern]) => nameMatches(pattern, name));
        if (found !== undefined) {
          ssl.SSL_set_SSL_CTX(connection, found[1].pointer);
        }
        // A name we have no certificate for gets the default one.
        return SSL_TLSEXT_ERR_OK;
      },
    );
    this.#callbacks.push(() => callback.close());
    ssl.SSL_CTX_callback_ctrl(
      this.pointer,
      SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
      callback.pointer,
    );
  }

  /** Every certificate in `pem`; none is an error naming `option`. */
  #readCertificates(
    pem: string,
    option: string,
  ): NonNullable<Deno.PointerValue>[] {
    const { crypto } = this.lib;
    const bytes = encoder.encode(pem);
    const bio = crypto.BIO_new_mem_buf(bytes, bytes.length);
    const certificates: NonNullable<Deno.PointerValue>[] = [];
    try {
      while (true) {
        const x509 = crypto.PEM_read_bio_X509(bio, null, null, null);
        if (x509 === null) break;
        certificates.push(x509);
      }
    } finally {
      crypto.BIO_free(bio);
    }
    // The end of the text is an error on the queue too ("no start line").
    this.lib.takeError();
    if (certificates.length === 0) {
      throw optionError(option, "no PEM certificate found in it", TypeError);
    }
    return certificates;
  }

  #settings(): void {
    const { ssl } = this.lib;
    ssl.SSL_CTX_ctrl(
      this.pointer,
      SSL_CTRL_SET_MIN_PROTO_VERSION,
      BigInt(TLS1_2_VERSION),
      null,
    );
    // Memory BIOs never block, so neither partial writes nor moving write
    // buffers are needed. SSL_MODE_RELEASE_BUFFERS is off: freeing and
    // allocating the record buffers at every record cost 20 % of the CPU
    // per 4 KiB round trip here.
    ssl.SSL_CTX_set_options(
      this.pointer,
      SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF,
    );
  }

  /** Every certificate of `pem`: the first is ours, the rest its chain. */
  #useChain(pem: string, option: string): void {
    const { ssl, crypto } = this.lib;
    const [leaf, ...chain] = this.#readCertificates(pem, option);
    const ok = ssl.SSL_CTX_use_certificate(this.pointer, leaf);
    crypto.X509_free(leaf);
    if (ok !== 1) {
      for (const x509 of chain) crypto.X509_free(x509);
      throw optionError(option, this.#reason("not usable"), TypeError);
    }
    for (const [i, x509] of chain.entries()) {
      // add0: the context owns the certificate from here.
      if (
        ssl.SSL_CTX_ctrl(this.pointer, SSL_CTRL_CHAIN_CERT, 0n, x509) !== 1n
      ) {
        for (const rest of chain.slice(i)) crypto.X509_free(rest);
        throw optionError(option, this.#reason("bad chain"), TypeError);
      }
    }
  }

  #useKey(pem: string, option: string): void {
    const { ssl, crypto } = this.lib;
    const bytes = encoder.encode(pem);
    const bio = crypto.BIO_new_mem_buf(bytes, bytes.length);
    const key = crypto.PEM_read_bio_PrivateKey(bio, null, null, null);
    crypto.BIO_free(bio);
    if (key === null) {
      this.lib.takeError();
      throw optionError(option, "no PEM private key found in it", TypeError);
    }
    const ok = ssl.SSL_CTX_use_PrivateKey(this.pointer, key);
    crypto.EVP_PKEY_free(key);
    if (ok !== 1 || ssl.SSL_CTX_check_private_key(this.pointer) !== 1) {
      this.lib.takeError();
      throw optionError(
        option,
        "it does not belong to the certificate",
        TypeError,
      );
    }
  }

  #reason(fallback: string): string {
    return this.lib.takeError() ?? fallback;
  }
}
