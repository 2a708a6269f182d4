// Private: every foreign call into OpenSSL (Debian's libssl.so.3 and
// libcrypto.so.3), in this one file: the symbols TLS on the native engine
// uses, the constants of OpenSSL's macros they stand for, and how
// OpenSSL's error queue is read. Not exported from mod.ts.
//
// The calls made per message (SSL_read, SSL_write, BIO_read, BIO_write,
// SSL_get_error) take `pointer`, `buffer` and `i32` only, V8's fast path.
// OpenSSL's macros are calls of SSL_CTX_ctrl and BIO_ctrl with the numbers
// of ssl.h and bio.h (OpenSSL 3.0), which are part of its stable ABI.

/** The macros' numbers, from OpenSSL 3.0's ssl.h and bio.h. */
export const SSL_CTRL_CHAIN_CERT = 89;
export const SSL_CTRL_SET_MIN_PROTO_VERSION = 123;
export const SSL_OP_IGNORE_UNEXPECTED_EOF = 1n << 7n;
export const SSL_OP_NO_RENEGOTIATION = 1n << 30n;
export const TLS1_2_VERSION = 0x0303;
export const BIO_C_SET_BUF_MEM_EOF_RETURN = 130;
export const SSL_ERROR_SSL = 1;
export const SSL_ERROR_WANT_READ = 2;
export const SSL_ERROR_WANT_WRITE = 3;
export const SSL_ERROR_SYSCALL = 5;
export const SSL_ERROR_ZERO_RETURN = 6;
export const SSL_VERIFY_PEER = 1;
export const SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 2;
export const SSL_CTRL_SET_TLSEXT_SERVERNAME_CB = 53;
export const SSL_CTRL_SET_TLSEXT_HOSTNAME = 55;
export const TLSEXT_NAMETYPE_HOST_NAME = 0;
export const SSL_TLSEXT_ERR_OK = 0;
export const SSL_TLSEXT_ERR_ALERT_FATAL = 2;
export const OPENSSL_NPN_NEGOTIATED = 1;
/** X509_NAME_print_ex's RFC 2253 form, UTF-8 left as it is (no ESC_MSB). */
export const XN_FLAG_RFC2253_UTF8 = 0x1110313n;
export const NID_SUBJECT_ALT_NAME = 85;
export const NID_COMMON_NAME = 13;
/** X509_V_OK: SSL_get_verify_result's "verified". */
export const X509_V_OK = 0n;

const SSL_SYMBOLS = {
  TLS_server_method: { parameters: [], result: "pointer" },
  TLS_client_method: { parameters: [], result: "pointer" },
  SSL_CTX_new: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_free: { parameters: ["pointer"], result: "void" },
  SSL_CTX_use_certificate: {
    parameters: ["pointer", "pointer"],
    result: "i32",
  },
  SSL_CTX_use_PrivateKey: {
    parameters: ["pointer", "pointer"],
    result: "i32",
  },
  SSL_CTX_check_private_key: { parameters: ["pointer"], result: "i32" },
  SSL_CTX_ctrl: {
    parameters: ["pointer", "i32", "i64", "pointer"],
    result: "i64",
  },
  SSL_CTX_set_options: { parameters: ["pointer", "u64"], result: "u64" },
  SSL_new: { parameters: ["pointer"], result: "pointer" },
  SSL_free: { parameters: ["pointer"], result: "void" },
  SSL_set_bio: {
    parameters: ["pointer", "pointer", "pointer"],
    result: "void",
  },
  SSL_set_accept_state: { parameters: ["pointer"], result: "void" },
  SSL_set_connect_state: { parameters: ["pointer"], result: "void" },
  SSL_do_handshake: { parameters: ["pointer"], result: "i32" },
  SSL_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  SSL_get_error: { parameters: ["pointer", "i32"], result: "i32" },
  SSL_shutdown: { parameters: ["pointer"], result: "i32" },
  SSL_has_pending: { parameters: ["pointer"], result: "i32" },
  SSL_free_buffers: { parameters: ["pointer"], result: "i32" },
  SSL_get_version: { parameters: ["pointer"], result: "pointer" },
  SSL_get_current_cipher: { parameters: ["pointer"], result: "pointer" },
  SSL_CIPHER_get_name: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_set_verify: {
    parameters: ["pointer", "i32", "pointer"],
    result: "void",
  },
  SSL_CTX_get_cert_store: { parameters: ["pointer"], result: "pointer" },
  SSL_CTX_add_client_CA: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_CTX_callback_ctrl: {
    parameters: ["pointer", "i32", "function"],
    result: "i64",
  },
  SSL_CTX_set_alpn_select_cb: {
    parameters: ["pointer", "function", "pointer"],
    result: "void",
  },
  SSL_CTX_set_alpn_protos: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
  },
  SSL_select_next_proto: {
    parameters: ["pointer", "pointer", "buffer", "u32", "pointer", "u32"],
    result: "i32",
  },
  SSL_get0_alpn_selected: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "void",
  },
  SSL_get_servername: { parameters: ["pointer", "i32"], result: "pointer" },
  SSL_set_SSL_CTX: { parameters: ["pointer", "pointer"], result: "pointer" },
  SSL_get1_peer_certificate: { parameters: ["pointer"], result: "pointer" },
  SSL_get_verify_result: { parameters: ["pointer"], result: "i64" },
  SSL_ctrl: {
    parameters: ["pointer", "i32", "i64", "pointer"],
    result: "i64",
  },
  SSL_set1_host: { parameters: ["pointer", "buffer"], result: "i32" },
  SSL_CTX_set_session_id_context: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
  },
  SSL_get0_param: { parameters: ["pointer"], result: "pointer" },
  SSL_get1_session: { parameters: ["pointer"], result: "pointer" },
  SSL_set_session: { parameters: ["pointer", "pointer"], result: "i32" },
  SSL_SESSION_free: { parameters: ["pointer"], result: "void" },
  SSL_session_reused: { parameters: ["pointer"], result: "i32" },
  SSL_CTX_set_default_verify_paths: {
    parameters: ["pointer"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

const CRYPTO_SYMBOLS = {
  BIO_s_mem: { parameters: [], result: "pointer" },
  BIO_new: { parameters: ["pointer"], result: "pointer" },
  BIO_new_mem_buf: { parameters: ["buffer", "i32"], result: "pointer" },
  BIO_free: { parameters: ["pointer"], result: "i32" },
  BIO_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BIO_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  BIO_ctrl: {
    parameters: ["pointer", "i32", "i64", "pointer"],
    result: "i64",
  },
  PEM_read_bio_X509: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  PEM_read_bio_PrivateKey: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  X509_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  ERR_get_error: { parameters: [], result: "u64" },
  ERR_reason_error_string: { parameters: ["u64"], result: "pointer" },
  ERR_clear_error: { parameters: [], result: "void" },
  X509_STORE_add_cert: { parameters: ["pointer", "pointer"], result: "i32" },
  X509_get_subject_name: { parameters: ["pointer"], result: "pointer" },
  X509_NAME_print_ex: {
    parameters: ["pointer", "pointer", "i32", "u64"],
    result: "i32",
  },
  X509_NAME_get_text_by_NID: {
    parameters: ["pointer", "i32", "buffer", "i32"],
    result: "i32",
  },
  X509_get_ext_by_NID: {
    parameters: ["pointer", "i32", "i32"],
    result: "i32",
  },
  X509_get_ext: { parameters: ["pointer", "i32"], result: "pointer" },
  X509V3_EXT_print: {
    parameters: ["pointer", "pointer", "u64", "i32"],
    result: "i32",
  },
  X509_verify_cert_error_string: { parameters: ["i64"], result: "pointer" },
  X509_VERIFY_PARAM_set1_ip_asc: {
    parameters: ["pointer", "buffer"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** libssl's functions, as JavaScript calls them. */
export type Ssl = Deno.DynamicLibrary<typeof SSL_SYMBOLS>["symbols"];
/** libcrypto's functions, as JavaScript calls them. */
export type Crypto = Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>["symbols"];

/** OpenSSL, opened for this thread. */
export interface OpenSsl {
  readonly ssl: Ssl;
  readonly crypto: Crypto;
  /**
   * The reason of the oldest error on this thread's queue, in OpenSSL's
   * words (`"wrong version number"`), and the queue emptied; `undefined`
   * when it was empty.
   */
  takeError(): string | undefined;
  /** A C string OpenSSL returned, as text; "" for NULL. */
  text(pointer: Deno.PointerValue): string;
  close(): void;
}

let opened: OpenSsl | undefined;
let users = 0;

/**
 * Opens OpenSSL 3 for this thread (once: later calls share it until each
 * has called `close`). Throws an Error that says what is missing when
 * `libssl.so.3` cannot be loaded.
 */
export function openSsl(): OpenSsl {
  if (opened !== undefined) {
    users++;
    return opened;
  }
  let crypto: Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>;
  let ssl: Deno.DynamicLibrary<typeof SSL_SYMBOLS>;
  try {
    crypto = Deno.dlopen("libcrypto.so.3", CRYPTO_SYMBOLS);
  } catch (error) {
    throw new Error(`OpenSSL 3 (libcrypto.so.3) cannot be loaded: ${error}`);
  }
  try {
    ssl = Deno.dlopen("libssl.so.3", SSL_SYMBOLS);
  } catch (error) {
    crypto.close();
    throw new Error(`OpenSSL 3 (libssl.so.3) cannot be loaded: ${error}`);
  }
  const text = (pointer: Deno.PointerValue): string =>
    pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
  const symbols = crypto.symbols;
  opened = {
    ssl: ssl.symbols,
    crypto: symbols,
    takeError() {
      const code = symbols.ERR_get_error();
      if (code === 0n) return undefined;
      const reason = text(symbols.ERR_reason_error_string(code));
      symbols.ERR_clear_error();
      return reason === "" ? `OpenSSL error ${code.toString(16)}` : reason;
    },
    text,
    close() {
      if (--users > 0) return;
      opened = undefined;
      ssl.close();
      crypto.close();
    },
  };
  users = 1;
  return opened;
}
