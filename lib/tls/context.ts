// Private: an OpenSSL context (SSL_CTX) made from PEM text: the settings
// every TLS connection of one listener shares (TLS 1.2 and up, no
// renegotiation), its certificate chain and key. Not exported from mod.ts.

import { optionError } from "../_helpers.ts";
import {
  type OpenSsl,
  SSL_CTRL_CHAIN_CERT,
  SSL_CTRL_SET_MIN_PROTO_VERSION,
  SSL_OP_IGNORE_UNEXPECTED_EOF,
  SSL_OP_NO_RENEGOTIATION,
  TLS1_2_VERSION,
} from "./openssl.ts";

const encoder = new TextEncoder();

/** Contexts made and not freed yet, in this thread (tests count them). */
let live = 0;

/** The number of contexts this thread has made and not freed. */
export function liveContexts(): number {
  return live;
}

/** One listener's (or one client's) OpenSSL context. */
export class TlsContext {
  readonly lib: OpenSsl;
  readonly pointer: NonNullable<Deno.PointerValue>;
  #freed = false;

  private constructor(lib: OpenSsl, pointer: NonNullable<Deno.PointerValue>) {
    this.lib = lib;
    this.pointer = pointer;
    live++;
  }

  /**
   * A server's context with the PEM certificate chain `cert` (the leaf
   * first) and private key `key`.
   *
   * @throws {TypeError} `cert` or `key` is not usable; its `option` names it.
   */
  static server(lib: OpenSsl, cert: string, key: string): TlsContext {
    const { ssl } = lib;
    const pointer = ssl.SSL_CTX_new(ssl.TLS_server_method());
    if (pointer === null) {
      throw new Error(`SSL_CTX_new failed: ${lib.takeError()}`);
    }
    const context = new TlsContext(lib, pointer);
    try {
      context.#settings();
      context.#useChain(cert);
      context.#useKey(key);
    } catch (error) {
      context.free();
      throw error;
    }
    return context;
  }

  /**
   * A client's context. It checks no certificate of the server's: callers
   * that must (the load client with `ca`) add their checks to it.
   */
  static client(lib: OpenSsl): TlsContext {
    const { ssl } = lib;
    const pointer = ssl.SSL_CTX_new(ssl.TLS_client_method());
    if (pointer === null) {
      throw new Error(`SSL_CTX_new failed: ${lib.takeError()}`);
    }
    const context = new TlsContext(lib, pointer);
    context.#settings();
    return context;
  }

  /** Frees the context (connections made from it keep their reference). */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    live--;
    this.lib.ssl.SSL_CTX_free(this.pointer);
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

  /** Reads every certificate of `pem`: the first is ours, the rest its chain. */
  #useChain(pem: string): void {
    const { ssl, crypto } = this.lib;
    const bytes = encoder.encode(pem);
    const bio = crypto.BIO_new_mem_buf(bytes, bytes.length);
    try {
      let count = 0;
      while (true) {
        const x509 = crypto.PEM_read_bio_X509(bio, null, null, null);
        if (x509 === null) break;
        if (count++ === 0) {
          const ok = ssl.SSL_CTX_use_certificate(this.pointer, x509);
          crypto.X509_free(x509);
          if (ok !== 1) {
            throw optionError("cert", this.#reason("not usable"), TypeError);
          }
        } else if (
          // add0: the context owns the certificate from here.
          ssl.SSL_CTX_ctrl(this.pointer, SSL_CTRL_CHAIN_CERT, 0n, x509) !== 1n
        ) {
          crypto.X509_free(x509);
          throw optionError("cert", this.#reason("bad chain"), TypeError);
        }
      }
      // The end of the text is an error on the queue too ("no start line").
      this.lib.takeError();
      if (count === 0) {
        throw optionError("cert", "no PEM certificate found in it", TypeError);
      }
    } finally {
      crypto.BIO_free(bio);
    }
  }

  #useKey(pem: string): void {
    const { ssl, crypto } = this.lib;
    const bytes = encoder.encode(pem);
    const bio = crypto.BIO_new_mem_buf(bytes, bytes.length);
    const key = crypto.PEM_read_bio_PrivateKey(bio, null, null, null);
    crypto.BIO_free(bio);
    if (key === null) {
      this.lib.takeError();
      throw optionError("key", "no PEM private key found in it", TypeError);
    }
    const ok = ssl.SSL_CTX_use_PrivateKey(this.pointer, key);
    crypto.EVP_PKEY_free(key);
    if (ok !== 1 || ssl.SSL_CTX_check_private_key(this.pointer) !== 1) {
      this.lib.takeError();
      throw optionError(
        "key",
        "it does not belong to the certificate",
        TypeError,
      );
    }
  }

  #reason(fallback: string): string {
    return this.lib.takeError() ?? fallback;
  }
}
