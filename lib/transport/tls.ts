// Private: the TLS transport. Not exported from mod.ts.
//
// Why a gate in front of Deno.listenTls. Deno 2.9 gives a TLS server two
// ways, and each breaks one promise on its own:
//
// - Deno.listenTls: closing a connection whose handshake has not completed
//   waits for the handshake (deno PR #14547), so a client that connects and
//   says nothing keeps its socket open for as long as it likes, whatever the
//   server does (measured: still open after 90 s).
// - node:tls: silent clients can be closed, but a client's end of stream
//   (close_notify and FIN) is lost when more than about 120 KB arrive before
//   it (measured with socat and Deno clients, 5 of 5 runs at 300 KB), so a
//   half-close hangs.
//
// So the server listens on plain TCP, which it can always close, and relays
// each client's bytes, both ways and with exact half-closes, to a
// Deno.listenTls listener on 127.0.0.1 that only this gate connects to. The
// handshake timeout is the gate's: when it expires, or the handshake fails,
// the gate closes its two sockets, which ends Deno's handshake with an end of
// stream, and so its waiting close. The engine gets the TLS connection once
// its handshake is done, wrapped so that its peer is the real client.
//
// The relay costs: at 64-byte round trips the gate serves about 40 % of what
// Deno.listenTls alone does. `handshakeTimeout: 0` (no timeout) goes through
// the gate too: Deno.listenTls alone could not close a silent client at
// shutdown, and its connections have no TCP_NODELAY (no setNoDelay, no
// listener option), so the first echo after the session tickets waited for
// the client's delayed acknowledgement, 40 ms a handshake. The gate sets
// TCP_NODELAY on both its sockets. The native engine is the fast path.

import {
  assertMilliseconds,
  formatAddr,
  optionError,
  writeAll,
} from "../_helpers.ts";
import type { TlsListen, TlsSettings } from "../core/config.ts";
import type { HandshakeFacts } from "../modes/session.ts";
import { AcceptQueue } from "./accept_queue.ts";
import { WrappedConn, WrappedListener } from "./wrapped.ts";
import type { Transport, TransportEvents } from "./transport.ts";

/** Where and how to listen on TLS. */
export interface TlsTransportOptions {
  hostname: string;
  port: number;
  /** Bind with `SO_REUSEPORT`: the port was claimed for listeners to share. */
  reusePort: boolean;
  /** PEM certificate chain. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** Milliseconds a client has to complete its handshake; 0: no limit. */
  handshakeTimeout: number;
  /** Protocols offered by ALPN; none when empty. */
  alpn: string[];
  /** Wraps the raw TCP listener (the PROXY protocol, read before TLS). */
  wrap?: (listener: Deno.Listener) => Deno.Listener;
}

/**
 * How long the gate waits, after the server closed a connection, for the
 * last bytes (close_notify) to reach a client that does not read.
 */
const LINGER_MS = 1000;
/** First and largest relay buffer; it doubles when a read fills it. */
const FIRST_BUFFER = 4 * 1024;
const LARGEST_BUFFER = 64 * 1024;
/** Pause before accepting again when the internal listener fails. */
const RETRY_MS = 10;

/** TLS over TCP, through a gate (see the top of this file). */
export function tlsTransport(
  options: TlsTransportOptions,
  events: TransportEvents,
): Transport {
  let gate: TlsGate | undefined;
  return {
    listen() {
      gate = new TlsGate(options, events);
      return gate;
    },
    reload(listen) {
      if (listen.transport !== "tls") return;
      gate?.reload(listen.cert, listen.key);
    },
    prepare() {},
    peer: (conn) => formatAddr(conn.remoteAddr),
    settled: () => gate?.settled() ?? Promise.resolve(),
  };
}

/** What each connection's handshake settled, as Deno tells it. */
const handshakes = new WeakMap<Deno.Conn, Deno.TlsHandshakeInfo>();

/**
 * What `conn`'s handshake settled, as the modes see it: Deno tells the
 * protocol agreed by ALPN, not the server name the client asked for, and
 * its listener asks for no client certificate.
 */
export function handshakeFacts(conn: Deno.Conn): HandshakeFacts | undefined {
  const info = handshakes.get(conn);
  if (info === undefined) return undefined;
  return {
    serverName: null,
    alpn: info.alpnProtocol ?? undefined,
    clientCert: undefined,
  };
}

/** serveEcho's TLS options, as given. */
export interface TlsOptions {
  cert?: unknown;
  key?: unknown;
  handshakeTimeout?: unknown;
  clientCa?: unknown;
  clientCertOptional?: unknown;
  alpnProtocols?: unknown;
  sni?: unknown;
}

/** A server name, or `*.` and one: what `sni`'s `hostname` may be. */
const SERVER_NAME =
  /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * The TLS listener `options` ask for at `hostname` and `port`, checked (see
 * {@linkcode tlsSettings}).
 *
 * @throws {TypeError | RangeError} An option is wrong; its `option` names it.
 */
export function tlsListenConfig(
  options: TlsOptions,
  hostname: string,
  port: number,
): TlsListen {
  return { transport: "tls", hostname, port, ...tlsSettings(options) };
}

/**
 * How `options` ask to speak TLS, checked: the certificate and key are PEM
 * text (that they load is checked when the engine listens), and the rest
 * is well formed.
 *
 * @throws {TypeError | RangeError} An option is wrong; its `option` names it.
 */
export function tlsSettings(options: TlsOptions): TlsSettings {
  const { cert, key, handshakeTimeout = 10_000 } = options;
  if (typeof cert !== "string") {
    throw optionError("cert", "must be given with key, as PEM text", TypeError);
  }
  if (typeof key !== "string") {
    throw optionError("key", "must be given with cert, as PEM text", TypeError);
  }
  assertMilliseconds("handshakeTimeout", handshakeTimeout as number);
  const { clientCa, clientCertOptional = false } = options;
  if (clientCa !== undefined && typeof clientCa !== "string") {
    throw optionError("clientCa", "must be PEM text", TypeError);
  }
  if (typeof clientCertOptional !== "boolean") {
    throw optionError("clientCertOptional", "must be true or false", TypeError);
  }
  if (clientCertOptional && clientCa === undefined) {
    throw optionError(
      "clientCertOptional",
      "must be given with clientCa",
      TypeError,
    );
  }
  return {
    cert,
    key,
    handshakeTimeout: handshakeTimeout as number,
    clientCa,
    clientCertOptional,
    alpn: alpnConfig(options.alpnProtocols),
    sni: sniConfig(options.sni),
  };
}

function alpnConfig(protocols: unknown): string[] {
  if (protocols === undefined) return [];
  if (!Array.isArray(protocols)) {
    throw optionError(
      "alpnProtocols",
      "must be a list of protocols",
      TypeError,
    );
  }
  for (const protocol of protocols) {
    const length = typeof protocol === "string"
      ? new TextEncoder().encode(protocol).length
      : 0;
    if (length === 0 || length > 255) {
      throw optionError(
        "alpnProtocols",
        `each is 1 to 255 bytes of text, got ${JSON.stringify(protocol)}`,
      );
    }
  }
  return protocols;
}

function sniConfig(
  entries: unknown,
): { name: string; cert: string; key: string }[] {
  if (entries === undefined) return [];
  if (!Array.isArray(entries)) {
    throw optionError(
      "sni",
      "must be a list of { hostname, cert, key }",
      TypeError,
    );
  }
  return entries.map((entry) => {
    const { hostname, cert, key } = entry ?? {};
    if (typeof hostname !== "string" || !SERVER_NAME.test(hostname)) {
      throw optionError(
        "sni",
        `each hostname is a DNS name or *. and one, got ${
          JSON.stringify(hostname)
        }`,
        TypeError,
      );
    }
    if (typeof cert !== "string" || typeof key !== "string") {
      throw optionError(
        "sni",
        `${hostname} needs cert and key, as PEM text`,
        TypeError,
      );
    }
    return { name: hostname.toLowerCase(), cert, key };
  });
}

/**
 * Checks that `cert` and `key` are PEM and belong together, by listening
 * with them on 127.0.0.1 for an instant.
 *
 * @throws {TypeError} `cert` or `key` is not usable; its `option` names it.
 */
export function checkCertificate(cert: string, key: string): void {
  listenInternal(cert, key, []).close();
}

/** The listener only the gate connects to. */
function listenInternal(
  cert: string,
  key: string,
  alpn: string[],
): Deno.TlsListener {
  try {
    return Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      transport: "tcp",
      cert,
      key,
      ...(alpn.length > 0 ? { alpnProtocols: alpn } : {}),
    });
  } catch (error) {
    throw certificateError(error) ?? error;
  }
}

/** Deno's complaint about a certificate or key, as an option error. */
function certificateError(error: unknown): Error | undefined {
  const message = error instanceof Error ? error.message : "";
  if (/no certificates found/i.test(message)) {
    return optionError("cert", "no PEM certificate found in it", TypeError);
  }
  if (/no keys found/i.test(message)) {
    return optionError("key", "no PEM private key found in it", TypeError);
  }
  if (/KeyMismatch|keys may not be consistent/i.test(message)) {
    return optionError(
      "key",
      "it does not belong to the certificate",
      TypeError,
    );
  }
  if (error instanceof Deno.errors.InvalidData) {
    return optionError("cert", message, TypeError);
  }
  return undefined;
}

/** One client on its way through the gate. */
interface Passage {
  readonly raw: Deno.TcpConn;
  readonly proxy: Deno.TcpConn;
  readonly peer: Deno.NetAddr;
  /** When the client was accepted (performance.now()). */
  readonly started: number;
  /** The internal listener it connected to. */
  readonly internal: Deno.TlsListener;
  state: "handshaking" | "open" | "over";
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The server closed its TLS connection: end the passage soon. */
  serverClosed: boolean;
  /** Resolves once both sockets are closed. */
  done: Promise<void>;
}

/**
 * The public TCP listener and the internal TLS one, as one Deno.Listener
 * of TLS connections whose handshake is done.
 */
class TlsGate extends WrappedListener {
  #options: TlsTransportOptions;
  #events: TransportEvents;
  #internal: Deno.TlsListener;
  /**
   * Internal listeners a reload replaced, kept while a handshake begun on
   * one goes on.
   */
  #retired = new Set<Deno.TlsListener>();
  #queue: AcceptQueue;
  /** Passages by the port of their proxy socket, as the internal side sees it. */
  #passages = new Map<number, Passage>();
  /**
   * Internal connections that arrived before their passage was recorded
   * (the two sides of a connect complete in either order), by port.
   */
  #early = new Map<number, Deno.TlsConn>();

  constructor(options: TlsTransportOptions, events: TransportEvents) {
    const internal = listenInternal(
      options.cert,
      options.key,
      options.alpn,
    );
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({
        hostname: options.hostname,
        port: options.port,
        transport: "tcp",
        ...(options.reusePort ? { reusePort: true } : {}),
      });
    } catch (error) {
      internal.close();
      throw error;
    }
    super(options.wrap?.(listener) ?? listener);
    this.#internal = internal;
    this.#options = options;
    this.#events = events;
    this.#queue = new AcceptQueue(
      this.inner,
      (raw) => this.#open(raw as Deno.TcpConn),
    );
    this.#acceptInternal(internal);
  }

  override accept(): Promise<Deno.Conn> {
    return this.#queue.accept();
  }

  /**
   * New clients handshake with `cert` and `key` from now on: a new
   * internal listener has them; the old one goes once the handshakes
   * begun on it are over.
   *
   * @throws {TypeError} They are not usable; the old ones stay.
   */
  reload(cert: string, key: string): void {
    const next = listenInternal(cert, key, this.#options.alpn);
    if (this.#queue.closed) return next.close();
    this.#retired.add(this.#internal);
    this.#internal = next;
    this.#acceptInternal(next);
    this.#closeRetired();
  }

  override close(): void {
    if (this.#queue.closed) return;
    this.#queue.close();
    this.#internal.close();
    for (const listener of this.#retired) listener.close();
    this.#retired.clear();
    // Clients still in their handshake go with the listener; connections
    // handed over already are the engine's to end.
    for (const passage of this.#passages.values()) {
      if (passage.state === "handshaking") this.#end(passage);
    }
    for (const conn of this.#early.values()) conn.close();
    this.#early.clear();
  }

  /** Resolves once every passage is over. */
  async settled(): Promise<void> {
    while (this.#passages.size > 0) {
      await Promise.all([...this.#passages.values()].map((p) => p.done));
    }
  }

  /** Opens the passage of a client just accepted. */
  async #open(raw: Deno.TcpConn): Promise<void> {
    const started = performance.now();
    const peer = raw.remoteAddr;
    let proxy: Deno.TcpConn;
    let internal: Deno.TlsListener;
    try {
      raw.setNoDelay(true);
      internal = this.#internal;
      proxy = await Deno.connect({
        hostname: "127.0.0.1",
        port: internal.addr.port,
      });
      proxy.setNoDelay(true);
    } catch (error) {
      raw.close();
      this.#events.handshakeFailed(
        formatAddr(peer),
        `cannot reach the TLS listener: ${(error as Error).message}`,
      );
      return;
    }
    if (this.#queue.closed) {
      raw.close();
      proxy.close();
      return;
    }
    const passage: Passage = {
      raw,
      proxy,
      peer,
      started,
      internal,
      state: "handshaking",
      timer: undefined,
      serverClosed: false,
      done: Promise.resolve(),
    };
    const { handshakeTimeout } = this.#options;
    if (handshakeTimeout > 0) {
      passage.timer = setTimeout(
        () => this.#fail(passage, "handshake timed out"),
        handshakeTimeout,
      );
    }
    const key = proxy.localAddr.port;
    this.#passages.set(key, passage);
    const early = this.#early.get(key);
    if (early !== undefined) {
      this.#early.delete(key);
      this.#handshake(early);
    }
    passage.done = Promise.all([
      this.#relay(passage, raw, proxy),
      this.#relay(passage, proxy, raw),
    ]).then(() => {
      this.#end(passage);
      this.#passages.delete(key);
    });
  }

  /**
   * Copies `from` to `to` until `from` ends, then half-closes `to`; on
   * any error, ends the whole passage.
   */
  async #relay(
    passage: Passage,
    from: Deno.TcpConn,
    to: Deno.TcpConn,
  ): Promise<void> {
    let buffer = new Uint8Array(FIRST_BUFFER);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        await writeAll(to, buffer.subarray(0, n));
        if (n === buffer.length && n < LARGEST_BUFFER) {
          buffer = new Uint8Array(n * 2);
        }
      }
      await to.closeWrite();
      // The server's side ended and it has closed: nothing more will come.
      if (from === passage.proxy && passage.serverClosed) this.#end(passage);
    } catch {
      this.#end(passage);
    }
  }

  /** Closes the retired listeners that no handshake uses any more. */
  #closeRetired(): void {
    for (const listener of this.#retired) {
      const used = [...this.#passages.values()].some((p) =>
        p.internal === listener && p.state === "handshaking"
      );
      if (used) continue;
      this.#retired.delete(listener);
      listener.close();
    }
  }

  /** Takes TLS connections from `listener`, once handshaken. */
  async #acceptInternal(listener: Deno.TlsListener): Promise<void> {
    while (!this.#queue.closed) {
      let conn: Deno.TlsConn;
      try {
        conn = await listener.accept();
      } catch {
        const live = listener === this.#internal ||
          this.#retired.has(listener);
        if (this.#queue.closed || !live) return;
        // Out of descriptors, say: the passage's own timer still runs.
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      this.#handshake(conn);
    }
  }

  async #handshake(conn: Deno.TlsConn): Promise<void> {
    const port = conn.remoteAddr.port;
    const passage = this.#passages.get(port);
    if (passage === undefined) {
      // Its passage is recorded in a moment. (Whoever else on this host
      // connects here is never handed over.)
      this.#early.set(port, conn);
      return;
    }
    if (passage.state !== "handshaking") {
      conn.close(); // Too late: its passage is over, and so is its peer.
      return;
    }
    let info: Deno.TlsHandshakeInfo;
    try {
      info = await conn.handshake();
    } catch (error) {
      this.#fail(passage, handshakeReason(error));
      conn.close();
      return;
    }
    if (passage.state !== "handshaking") {
      conn.close();
      return;
    }
    passage.state = "open";
    clearTimeout(passage.timer);
    if (this.#retired.size > 0) this.#closeRetired();
    this.#events.handshaken(performance.now() - passage.started);
    const gated = new GatedConn(
      conn,
      passage,
      this.addr as Deno.NetAddr,
      () => {
        passage.serverClosed = true;
        if (passage.state === "over") return;
        // A client that does not read gets a moment for the close_notify.
        passage.timer = setTimeout(() => this.#end(passage), LINGER_MS);
      },
    );
    handshakes.set(gated, info);
    this.#queue.push(gated);
  }

  /** A handshake failed or timed out: tell the engine, end the passage. */
  #fail(passage: Passage, reason: string): void {
    if (passage.state !== "handshaking") return;
    this.#end(passage);
    this.#events.handshakeFailed(formatAddr(passage.peer), reason);
  }

  /** Closes both sockets of a passage, once. */
  #end(passage: Passage): void {
    if (passage.state === "over") return;
    passage.state = "over";
    clearTimeout(passage.timer);
    if (this.#retired.size > 0) this.#closeRetired();
    for (const conn of [passage.raw, passage.proxy]) {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }
}

/** Why a handshake failed, in a few words. */
function handshakeReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (
    /eof|end of file|connection reset|broken pipe/i.test(message)
  ) {
    return "client closed before the handshake ended";
  }
  if (/InvalidContentType|corrupt message/i.test(message)) {
    return `not TLS (${message})`;
  }
  return message;
}

/**
 * A TLS connection from the internal listener, as the engine sees it: its
 * peer is the client at the gate, and closing it ends the passage too.
 */
class GatedConn extends WrappedConn {
  #localAddr: Deno.NetAddr;
  #remoteAddr: Deno.NetAddr;
  #onClose: () => void;

  constructor(
    conn: Deno.TlsConn,
    passage: Passage,
    localAddr: Deno.NetAddr,
    onClose: () => void,
  ) {
    super(conn);
    this.#remoteAddr = passage.peer;
    this.#localAddr = localAddr;
    this.#onClose = onClose;
  }

  override get localAddr(): Deno.NetAddr {
    return this.#localAddr;
  }

  override get remoteAddr(): Deno.NetAddr {
    return this.#remoteAddr;
  }

  override close(): void {
    this.inner.close();
    this.#onClose();
  }
}
