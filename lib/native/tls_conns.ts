// Private: TLS on the native loop (lib/native/loop.ts), through OpenSSL's
// memory BIOs (lib/tls/session.ts). A connection past the door first
// handshakes here, within the handshake timeout; once done, the loop
// admits it and serves it as any other, and this file turns its plaintext
// into ciphertext on the way out (keeping what the socket does not take)
// and ciphertext into plaintext on the way in. Not exported from mod.ts.

import { formatAddr } from "../_helpers.ts";
import type { TlsSettings } from "../core/config.ts";
import { countHandshake } from "../core/counters.ts";
import type { HandshakeFacts } from "../modes/session.ts";
import {
  handshakeFailed,
  type LogRecord,
  type OpenedTls,
} from "../core/records.ts";
import { TlsContext } from "../tls/context.ts";
import { type OpenSsl, openSsl } from "../tls/openssl.ts";
import { CLOSED, FAILED, TlsSession } from "../tls/session.ts";
import {
  EAGAIN,
  EINTR,
  EPOLL_CTL_ADD,
  EPOLL_CTL_MOD,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  errnoText,
  MSG_NOSIGNAL,
  type Native,
  SHUT_WR,
} from "./ffi.ts";

/** Room for a read's worth of ciphertext (records add a few bytes each). */
const WIRE_SIZE = 256 * 1024 + 16 * 1024;

/** What the loop does for its TLS connections. */
export interface TlsHost {
  /** Registers `fd` in the loop's epoll set, or changes what it waits for. */
  ctl(op: number, fd: number, events: number): void;
  record(record: LogRecord): void;
  /**
   * `fd` finished its handshake: admit and serve it. `plaintext` is what
   * came with the handshake's last bytes (a view, valid during the call).
   */
  handshaken(
    fd: number,
    greeting: Greeting,
    plaintext: Uint8Array,
    length: number,
  ): void;
  /** `fd` failed its handshake: give back its place under the limits. */
  turnedAway(greeting: Greeting): void;
  /** The counters of this loop. */
  readonly counters: Float64Array;
}

/** A connection in its handshake, and what it came with. */
export interface Greeting {
  session: TlsSession;
  /** Who it is for: the PROXY header's client, or the socket's peer. */
  client: Deno.Addr;
  /** The address whose place under the per-address limits it holds. */
  limited: string | undefined;
  /** When its time for the handshake is up. */
  until: number;
  /** When it began (CLOCK_MONOTONIC, ms). */
  started: number;
  /** The context it began with (one retired by a reload, perhaps). */
  context: TlsContext;
}

/** The result of moving a session's ciphertext to its socket. */
export type Drained = "done" | "blocked" | "failed";

/** The TLS side of one loop: its context, handshakes, and open sessions. */
export class TlsConns {
  #native: Native;
  #lib: OpenSsl;
  #context: TlsContext;
  #host: TlsHost;
  #timeout: number;
  #wire = new Uint8Array(WIRE_SIZE);
  #plain = new Uint8Array(WIRE_SIZE);
  /** Connections in their handshake. */
  #greetings = new Map<number, Greeting>();
  /** Every connection's session, in its handshake or open. */
  #sessions = new Map<number, TlsSession>();
  /** Ciphertext a socket did not take, before what its session holds. */
  #unsent = new Map<number, Uint8Array>();
  /** Open connections with ciphertext taken in and not decrypted yet. */
  #stalled = new Set<number>();
  /**
   * Contexts a reload replaced, kept while a handshake begun with one goes
   * on (OpenSSL calls their callbacks during it).
   */
  #retired = new Set<TlsContext>();
  /** The errno of the last send that failed ("failed" from a drain). */
  errno = 0;

  /**
   * TLS as `listen` says; a handshake has its `handshakeTimeout` ms (0: no
   * limit).
   */
  constructor(native: Native, listen: TlsSettings, host: TlsHost) {
    this.#native = native;
    this.#lib = openSsl();
    try {
      this.#context = TlsContext.server(this.#lib, listen);
    } catch (error) {
      this.#lib.close();
      throw error;
    }
    this.#host = host;
    const { handshakeTimeout } = listen;
    this.#timeout = handshakeTimeout === 0 ? Infinity : handshakeTimeout;
  }

  /** Whether `fd` is in its handshake. */
  greeting(fd: number): boolean {
    return this.#greetings.has(fd);
  }

  /** `fd`'s session once open, for the loop's reads and writes. */
  session(fd: number): TlsSession | undefined {
    return this.#sessions.get(fd);
  }

  /** The plaintext buffer reads decrypt into (shared by the loop). */
  get plain(): Uint8Array {
    return this.#plain;
  }

  /** When the next handshake times out. */
  get nextTimer(): number {
    let at = Infinity;
    for (const { until } of this.#greetings.values()) at = Math.min(at, until);
    return at;
  }

  /** Open connections that have ciphertext to decrypt without a read. */
  get stalled(): ReadonlySet<number> {
    return this.#stalled;
  }

  /**
   * Starts `fd`'s handshake: `client` is who it is for, `limited` its place
   * under the limits, `rest` bytes read with its PROXY header, `registered`
   * whether the loop's epoll set has it already.
   */
  greet(
    fd: number,
    client: Deno.Addr,
    limited: string | undefined,
    rest: Uint8Array | undefined,
    registered: boolean,
    now: number,
  ): void {
    const context = this.#context;
    const session = new TlsSession(context, true);
    const greeting = {
      session,
      client,
      limited,
      until: now + this.#timeout,
      started: this.#native.now(),
      context,
    };
    this.#greetings.set(fd, greeting);
    this.#sessions.set(fd, session);
    this.#host.ctl(
      registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
      fd,
      EPOLLIN | EPOLLRDHUP,
    );
    if (rest !== undefined && rest.length > 0) {
      session.put(rest, rest.length);
      this.#shake(fd, greeting);
    }
  }

  /** A connection in its handshake is readable or writable. */
  ready(fd: number): void {
    const greeting = this.#greetings.get(fd)!;
    const { libc } = this.#native;
    if (this.#unsent.has(fd)) {
      const drained = this.drain(fd);
      if (drained === "failed") {
        return this.#fail(fd, "client closed before the handshake ended");
      }
      if (drained === "blocked") return;
      this.#host.ctl(EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLRDHUP);
    }
    const wire = this.#wire;
    while (this.#greetings.has(fd)) {
      const r = libc.read(fd, wire, wire.length);
      if (r < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        return this.#fail(
          fd,
          `client closed before the handshake ended: ${errnoText(errno)}`,
        );
      }
      if (r === 0) {
        return this.#fail(fd, "client closed before the handshake ended");
      }
      greeting.session.put(wire, r);
      this.#shake(fd, greeting);
    }
  }

  /** Handshakes out of time fail. */
  timers(now: number): void {
    for (const [fd, { until }] of this.#greetings) {
      if (now >= until) this.#fail(fd, "handshake timed out");
    }
  }

  /**
   * Decrypts what `fd` sent, giving each piece of plaintext to `consume`
   * while it says to read on; `eof` for the client's close_notify, `error`
   * when the session failed. Returns what ended it.
   */
  decrypt(
    fd: number,
    session: TlsSession,
    consume: (bytes: Uint8Array, length: number) => boolean,
  ): "more" | "held" | "eof" | "failed" {
    this.#stalled.delete(fd);
    const plain = this.#plain;
    while (true) {
      const n = session.read(plain);
      if (n === 0) return "more";
      if (n === CLOSED) return "eof";
      if (n === FAILED) return "failed";
      if (!consume(plain, n)) {
        // Unless the connection ended meanwhile (its session is gone).
        if (this.#sessions.get(fd) === session) this.#stalled.add(fd);
        return "held";
      }
    }
  }

  /**
   * Encrypts `length` bytes of `bytes` for `fd` and sends what the socket
   * takes; the rest waits here (see {@linkcode TlsConns.owes}).
   */
  write(fd: number, bytes: Uint8Array, length: number): Drained {
    const session = this.#sessions.get(fd)!;
    if (!session.write(bytes, length)) return "failed";
    return this.drain(fd);
  }

  /** What `fd`'s handshake settled, as its `Opened` record says it. */
  opened(fd: number): OpenedTls | undefined {
    const facts = this.#sessions.get(fd)?.facts();
    if (facts === undefined) return undefined;
    const { version, cipher, serverName, alpn, peerCert } = facts;
    return {
      version,
      cipher,
      ...(serverName === undefined ? {} : { serverName }),
      ...(alpn === undefined ? {} : { alpn }),
      ...(peerCert === undefined ? {} : { clientCert: peerCert.subject }),
    };
  }

  /** What `fd`'s handshake settled, as the modes see it. */
  facts(fd: number): HandshakeFacts | undefined {
    const facts = this.#sessions.get(fd)?.facts();
    if (facts === undefined) return undefined;
    return {
      serverName: facts.serverName,
      alpn: facts.alpn,
      clientCert: facts.peerCert?.subject,
    };
  }

  /** The common name of `fd`'s client certificate, if it sent one. */
  certName(fd: number): string | undefined {
    return this.#sessions.get(fd)?.facts().peerCert?.commonName;
  }

  /** Gives back `fd`'s record buffers while it is idle (see TlsSession.trim). */
  trim(fd: number): void {
    if (!this.#greetings.has(fd)) this.#sessions.get(fd)?.trim();
  }

  /** Whether ciphertext for `fd` waits for its socket. */
  owes(fd: number): boolean {
    return this.#unsent.has(fd);
  }

  /**
   * Sends `fd`'s ciphertext: first what its socket did not take before,
   * then what its session has, until the socket takes no more.
   */
  drain(fd: number): Drained {
    const session = this.#sessions.get(fd);
    if (session === undefined) return "done";
    const unsent = this.#unsent.get(fd);
    if (unsent !== undefined) {
      const w = this.#sendAll(fd, unsent, unsent.length);
      if (w < 0) return "failed";
      if (w < unsent.length) {
        this.#unsent.set(fd, unsent.subarray(w));
        return "blocked";
      }
      this.#unsent.delete(fd);
    }
    const wire = this.#wire;
    while (true) {
      const n = session.take(wire);
      if (n === 0) return "done";
      const w = this.#sendAll(fd, wire, n);
      if (w < 0) return "failed";
      if (w < n) {
        this.#unsent.set(fd, wire.slice(w, n));
        return "blocked";
      }
    }
  }

  /**
   * Ends our side of `fd`'s stream: a close_notify, then the socket's
   * half-close once the socket took it. Returns `false` while it waits.
   */
  closeWrite(fd: number): boolean {
    const session = this.#sessions.get(fd);
    if (session !== undefined) {
      session.closeNotify();
      if (this.drain(fd) === "blocked") return false;
    }
    this.#native.libc.shutdown(fd, SHUT_WR);
    return true;
  }

  /**
   * Sends `fd`'s close_notify if its socket takes it, before the loop
   * closes it: a peer sees a clean end of stream, as Deno's own TLS gives.
   */
  goodbye(fd: number): void {
    const session = this.#sessions.get(fd);
    if (session === undefined) return;
    session.closeNotify();
    this.drain(fd);
  }

  /**
   * New handshakes use the certificates, keys and authorities of `listen`
   * from now on; connections already open, or in their handshake, go on
   * with theirs.
   *
   * @throws {TypeError} One is not usable (the old ones stay).
   */
  reload(listen: TlsSettings): void {
    const next = TlsContext.server(this.#lib, listen);
    this.#retired.add(this.#context);
    this.#context = next;
    this.#freeRetired();
  }

  /** `fd` is closed: its session goes. */
  forget(fd: number): void {
    this.#sessions.get(fd)?.free();
    this.#sessions.delete(fd);
    this.#unsent.delete(fd);
    this.#stalled.delete(fd);
    if (this.#greetings.delete(fd) && this.#retired.size > 0) {
      this.#freeRetired();
    }
  }

  /** Frees the retired contexts no handshake uses any more. */
  #freeRetired(): void {
    for (const context of this.#retired) {
      const used = [...this.#greetings.values()].some((g) =>
        g.context === context
      );
      if (used) continue;
      this.#retired.delete(context);
      context.free();
    }
  }

  /** The listener closed: connections in their handshake go with it. */
  closeGreetings(): void {
    for (const [fd, greeting] of [...this.#greetings]) {
      this.forget(fd);
      this.#host.turnedAway(greeting);
      this.#native.libc.close(fd);
    }
  }

  /** Frees what is left: the last thing the loop does. */
  close(): void {
    this.closeGreetings();
    for (const fd of [...this.#sessions.keys()]) this.forget(fd);
    for (const context of this.#retired) context.free();
    this.#context.free();
    this.#lib.close();
  }

  /** Goes on with `fd`'s handshake after bytes came. */
  #shake(fd: number, greeting: Greeting): void {
    const { session } = greeting;
    const done = session.handshake();
    const drained = this.drain(fd);
    if (session.error !== undefined) return this.#fail(fd, failure(session));
    if (drained === "failed") {
      return this.#fail(fd, "client closed before the handshake ended");
    }
    if (drained === "blocked") this.#host.ctl(EPOLL_CTL_MOD, fd, EPOLLOUT);
    if (!done) return;
    this.#greetings.delete(fd);
    if (this.#retired.size > 0) this.#freeRetired();
    countHandshake(this.#host.counters, this.#native.now() - greeting.started);
    // Bytes that came with the last of the handshake are the stream's first.
    let length = 0;
    const plain = this.#plain;
    const n = session.read(plain);
    if (n > 0) length = n;
    else if (n === FAILED) return this.#fail(fd, failure(session));
    if (n > 0 || session.pending) this.#stalled.add(fd);
    // What the handshake's end wrote (session tickets) goes now.
    if (this.drain(fd) === "blocked") {
      this.#host.ctl(EPOLL_CTL_MOD, fd, EPOLLOUT);
    }
    this.#host.handshaken(fd, greeting, plain, length);
  }

  /** Ends a handshake that failed, and says why. */
  #fail(fd: number, reason: string): void {
    const greeting = this.#greetings.get(fd);
    if (greeting === undefined) return;
    this.forget(fd);
    this.#host.record(
      handshakeFailed(
        this.#host.counters,
        formatAddr(greeting.client),
        reason,
      ),
    );
    this.#host.turnedAway(greeting);
    this.#native.libc.close(fd);
  }

  /** Sends what the socket takes of `length` bytes; -1 on an error. */
  #sendAll(fd: number, bytes: Uint8Array, length: number): number {
    const { libc } = this.#native;
    let written = 0;
    while (written < length) {
      const rest = written === 0 ? bytes : bytes.subarray(written);
      const w = libc.send(fd, rest, length - written, MSG_NOSIGNAL);
      if (w < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) break;
        if (errno === EINTR) continue;
        this.errno = errno;
        return -1;
      }
      written += w;
    }
    return written;
  }
}

/** Why a handshake failed, in the words the default engine uses. */
function failure(session: TlsSession): string {
  const error = session.error ?? "failed";
  if (
    /wrong version number|http request|unknown protocol|packet length/i.test(
      error,
    )
  ) {
    return `not TLS (${error})`;
  }
  return error;
}
