// Private: one TLS connection through OpenSSL, free of I/O: OpenSSL reads
// from and writes to two memory BIOs, and the driver moves their bytes to
// and from the socket (rustls' shape: ciphertext in, plaintext out, and
// ciphertext to send). So the same session serves an epoll loop, an
// io_uring one, bytes read with a PROXY header, and a rate-limited reader.
// Not exported from mod.ts.

import { isIP } from "node:net";
import type { TlsContext } from "./context.ts";
import {
  BIO_C_SET_BUF_MEM_EOF_RETURN,
  NID_COMMON_NAME,
  NID_SUBJECT_ALT_NAME,
  type OpenSsl,
  SSL_CTRL_SET_TLSEXT_HOSTNAME,
  SSL_ERROR_WANT_READ,
  SSL_ERROR_WANT_WRITE,
  SSL_ERROR_ZERO_RETURN,
  TLSEXT_NAMETYPE_HOST_NAME,
  X509_V_OK,
  XN_FLAG_RFC2253_UTF8,
} from "./openssl.ts";

/** What a handshake settled, for the modes and the logs. */
export interface TlsFacts {
  /** `TLSv1.3`, `TLSv1.2`. */
  version: string;
  cipher: string;
  /** The server name the client asked for (SNI), if any. */
  serverName: string | undefined;
  /** The protocol agreed by ALPN, if any. */
  alpn: string | undefined;
  /** The peer's certificate, if it sent one. */
  peerCert: PeerCert | undefined;
}

/** A peer's certificate, as people read it. */
export interface PeerCert {
  /** The subject, RFC 2253 style (`CN=alice,O=Example`). */
  subject: string;
  /** The subject's common name (CN), if it has one. */
  commonName: string | undefined;
  /** Its subject alternative names, OpenSSL's way (`DNS:alice.example`). */
  altNames: string[];
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Frees a session {@linkcode TlsSession.saved} gave. */
export function freeSaved(lib: OpenSsl, saved: Deno.PointerValue): void {
  if (saved !== null) lib.ssl.SSL_SESSION_free(saved);
}

/** Sessions made and not freed yet, in this thread (tests count them). */
let live = 0;

/** The number of sessions this thread has made and not freed. */
export function liveSessions(): number {
  return live;
}

/** What {@linkcode TlsSession.read} returns for the peer's close_notify. */
export const CLOSED = -1;
/** What {@linkcode TlsSession.read} returns when the session failed. */
export const FAILED = -2;

/** One TLS connection, fed and drained by its driver. */
export class TlsSession {
  #lib: OpenSsl;
  #ssl: NonNullable<Deno.PointerValue>;
  #in: NonNullable<Deno.PointerValue>;
  #out: NonNullable<Deno.PointerValue>;
  #freed = false;
  #notified = false;
  /** Why the session failed, once it has. */
  error: string | undefined;

  /** A server's session (`server`) or a client's, from `context`. */
  constructor(context: TlsContext, server: boolean) {
    const lib = context.lib;
    const { ssl, crypto } = lib;
    const pointer = ssl.SSL_new(context.pointer);
    if (pointer === null) throw new Error(`SSL_new: ${lib.takeError()}`);
    const method = crypto.BIO_s_mem();
    const input = crypto.BIO_new(method);
    const output = crypto.BIO_new(method);
    if (input === null || output === null) {
      if (input !== null) crypto.BIO_free(input);
      if (output !== null) crypto.BIO_free(output);
      ssl.SSL_free(pointer);
      throw new Error(`BIO_new: ${lib.takeError()}`);
    }
    // An empty input is "more to come", not an end of stream: the driver
    // says when the stream ended.
    crypto.BIO_ctrl(input, BIO_C_SET_BUF_MEM_EOF_RETURN, -1n, null);
    ssl.SSL_set_bio(pointer, input, output); // The SSL owns both from here.
    if (server) ssl.SSL_set_accept_state(pointer);
    else ssl.SSL_set_connect_state(pointer);
    this.#lib = lib;
    this.#ssl = pointer;
    this.#in = input;
    this.#out = output;
    live++;
  }

  /**
   * A client's session: asks for `name` (SNI, unless it is an IP address)
   * and accepts only a certificate for it (when its context verifies).
   */
  expect(name: string): void {
    const { ssl, crypto } = this.#lib;
    const text = encoder.encode(`${name}\0`);
    if (isIP(name) !== 0) {
      crypto.X509_VERIFY_PARAM_set1_ip_asc(ssl.SSL_get0_param(this.#ssl), text);
      return;
    }
    ssl.SSL_ctrl(
      this.#ssl,
      SSL_CTRL_SET_TLSEXT_HOSTNAME,
      BigInt(TLSEXT_NAMETYPE_HOST_NAME),
      Deno.UnsafePointer.of(text),
    );
    ssl.SSL_set1_host(this.#ssl, text);
  }

  /**
   * A client's session: offers to resume `saved` (from
   * {@linkcode TlsSession.saved}), which the caller still frees.
   */
  resume(saved: Deno.PointerValue): void {
    if (saved !== null) this.#lib.ssl.SSL_set_session(this.#ssl, saved);
  }

  /**
   * This session, to resume later (a ticket, in TLS 1.3), or null; free
   * it with {@linkcode freeSaved}.
   */
  saved(): Deno.PointerValue {
    return this.#lib.ssl.SSL_get1_session(this.#ssl);
  }

  /** Whether the handshake resumed an earlier session. */
  get resumed(): boolean {
    return this.#lib.ssl.SSL_session_reused(this.#ssl) === 1;
  }

  /** Takes `length` bytes of `bytes` that came from the peer. */
  put(bytes: Uint8Array, length: number): void {
    const { crypto } = this.#lib;
    let at = 0;
    while (at < length) {
      const view = at === 0 ? bytes : bytes.subarray(at);
      const n = crypto.BIO_write(this.#in, view, length - at);
      if (n <= 0) throw new Error("BIO_write refused bytes");
      at += n;
    }
  }

  /**
   * Goes on with the handshake: `true` once it is done, `false` while it
   * needs more from the peer; on failure, `false` with
   * {@linkcode TlsSession.error} set. Send {@linkcode TlsSession.take}'s
   * bytes after each call, failure included (the alert says why).
   */
  handshake(): boolean {
    const { ssl } = this.#lib;
    const r = ssl.SSL_do_handshake(this.#ssl);
    if (r === 1) return true;
    this.#failed(ssl.SSL_get_error(this.#ssl, r));
    return false;
  }

  /**
   * Decrypts what came into `into`: the number of bytes (> 0), 0 when it
   * needs more from the peer, {@linkcode CLOSED} for the peer's
   * close_notify, or {@linkcode FAILED} (see {@linkcode TlsSession.error}).
   */
  read(into: Uint8Array): number {
    const { ssl } = this.#lib;
    const r = ssl.SSL_read(this.#ssl, into, into.length);
    if (r > 0) return r;
    const code = ssl.SSL_get_error(this.#ssl, r);
    if (code === SSL_ERROR_ZERO_RETURN) return CLOSED;
    return this.#failed(code) ? 0 : FAILED;
  }

  /** Whether decrypted bytes wait for {@linkcode TlsSession.read}. */
  get pending(): boolean {
    return this.#lib.ssl.SSL_has_pending(this.#ssl) === 1;
  }

  /**
   * Encrypts `length` bytes of `bytes` for the peer (into what
   * {@linkcode TlsSession.take} gives). Returns `false` when the session
   * failed.
   */
  write(bytes: Uint8Array, length: number): boolean {
    if (length === 0) return true;
    const { ssl } = this.#lib;
    const r = ssl.SSL_write(this.#ssl, bytes, length);
    if (r === length) return true;
    this.#failed(ssl.SSL_get_error(this.#ssl, r));
    this.error ??= "write refused";
    return false;
  }

  /**
   * Moves ciphertext for the peer into `into`: the number of bytes, 0 when
   * there is none. Call again while it fills `into`.
   */
  take(into: Uint8Array): number {
    const n = this.#lib.crypto.BIO_read(this.#out, into, into.length);
    return n > 0 ? n : 0;
  }

  /**
   * Gives back the record buffers (about 33 kB) while the connection is
   * idle; OpenSSL makes them again for the next record. Keeps them when
   * bytes wait in them. Returns whether it gave them back.
   */
  trim(): boolean {
    return this.#lib.ssl.SSL_free_buffers(this.#ssl) === 1;
  }

  /** Writes our close_notify (once): our end of stream, for the peer. */
  closeNotify(): void {
    if (this.#notified || this.error !== undefined) return;
    this.#notified = true;
    this.#lib.ssl.SSL_shutdown(this.#ssl);
    this.#lib.takeError();
  }

  /** The protocol version the handshake settled on (`TLSv1.3`). */
  get version(): string {
    return this.#lib.text(this.#lib.ssl.SSL_get_version(this.#ssl));
  }

  /** The cipher the handshake settled on. */
  get cipher(): string {
    const { ssl } = this.#lib;
    const cipher = ssl.SSL_get_current_cipher(this.#ssl);
    return cipher === null
      ? ""
      : this.#lib.text(ssl.SSL_CIPHER_get_name(cipher));
  }

  /** What the handshake settled (call once it is done). */
  facts(): TlsFacts {
    const { ssl } = this.#lib;
    const name = this.#lib.text(
      ssl.SSL_get_servername(this.#ssl, TLSEXT_NAMETYPE_HOST_NAME),
    );
    return {
      version: this.version,
      cipher: this.cipher,
      serverName: name === "" ? undefined : name,
      alpn: this.#alpn(),
      peerCert: this.#peerCert(),
    };
  }

  #alpn(): string | undefined {
    const data = new BigUint64Array(1);
    const length = new Uint32Array(1);
    this.#lib.ssl.SSL_get0_alpn_selected(
      this.#ssl,
      new Uint8Array(data.buffer),
      new Uint8Array(length.buffer),
    );
    const pointer = Deno.UnsafePointer.create(data[0]);
    if (pointer === null || length[0] === 0) return undefined;
    return decoder.decode(
      new Deno.UnsafePointerView(pointer).getArrayBuffer(length[0]),
    );
  }

  #peerCert(): PeerCert | undefined {
    const { ssl, crypto } = this.#lib;
    const x509 = ssl.SSL_get1_peer_certificate(this.#ssl);
    if (x509 === null) return undefined;
    try {
      const name = crypto.X509_get_subject_name(x509);
      const subject = this.#print((bio) =>
        crypto.X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253_UTF8)
      );
      const cn = new Uint8Array(256);
      const length = crypto.X509_NAME_get_text_by_NID(
        name,
        NID_COMMON_NAME,
        cn,
        cn.length,
      );
      const at = crypto.X509_get_ext_by_NID(x509, NID_SUBJECT_ALT_NAME, -1);
      const names = at < 0
        ? ""
        : this.#print((bio) =>
          crypto.X509V3_EXT_print(bio, crypto.X509_get_ext(x509, at), 0n, 0)
        );
      return {
        subject,
        commonName: length < 0
          ? undefined
          : decoder.decode(cn.subarray(0, length)),
        altNames: names === "" ? [] : names.split(", "),
      };
    } finally {
      crypto.X509_free(x509);
    }
  }

  /** What `print` writes into a memory BIO, as text. */
  #print(print: (bio: Deno.PointerValue) => number): string {
    const { crypto } = this.#lib;
    const bio = crypto.BIO_new(crypto.BIO_s_mem());
    try {
      print(bio);
      const chunk = new Uint8Array(4096);
      let text = "";
      while (true) {
        const n = crypto.BIO_read(bio, chunk, chunk.length);
        if (n <= 0) return text;
        text += decoder.decode(chunk.subarray(0, n));
      }
    } finally {
      crypto.BIO_free(bio);
    }
  }

  /** Frees the connection and its BIOs (once). */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    live--;
    this.#lib.ssl.SSL_free(this.#ssl);
  }

  /**
   * Whether `code` from SSL_get_error only means "more bytes needed";
   * otherwise records why the session failed.
   */
  #failed(code: number): boolean {
    if (code === SSL_ERROR_WANT_READ || code === SSL_ERROR_WANT_WRITE) {
      return true;
    }
    let error = this.#lib.takeError() ??
      (code === SSL_ERROR_ZERO_RETURN
        ? "closed by the peer"
        : `SSL error ${code}`);
    if (error === "certificate verify failed") {
      // Why, in X.509's words: expired, unknown authority…
      const { ssl, crypto } = this.#lib;
      const result = ssl.SSL_get_verify_result(this.#ssl);
      if (result !== X509_V_OK) {
        error += `: ${
          this.#lib.text(crypto.X509_verify_cert_error_string(result))
        }`;
      }
    }
    this.error ??= error;
    return false;
  }
}
