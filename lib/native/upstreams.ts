// Private: proxy mode on the native engine (issue 23): each client's
// connection paired with one to the upstream, opened as the client is
// admitted (a non-blocking connect, a PROXY header first if asked), and
// bytes moved both ways through the loop's one read buffer, each side's end
// of stream passed on as a half-close. Bytes from the client go out as the
// echo's would (no copy unless the upstream's socket does not take them
// all); bytes from the upstream go to the client through the loop's own
// send (and so through the client's send faults). The loop
// (lib/native/loop.ts) owns the client's side; this owns the upstream's.
// Not exported from mod.ts.

import type { LogRecord } from "../core/records.ts";
import { UPSTREAM_FAILURES } from "../core/counters.ts";
import { clientHeader } from "../proxy/header.ts";
import type { UpstreamConfig } from "../upstream/config.ts";
import { Outage, outageRecord } from "../upstream/outage.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  EAGAIN,
  EINPROGRESS,
  EINTR,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_CTL_MOD,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  errnoText,
  IPPROTO_TCP,
  MSG_NOSIGNAL,
  type Native,
  SHUT_WR,
  SO_ERROR,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  sockaddr,
  SOL_SOCKET,
  TCP_NODELAY,
  unixSockaddr,
} from "./ffi.ts";
import { isIP } from "node:net";
import { type OpenSsl, openSsl } from "../tls/openssl.ts";
import { TlsContext } from "../tls/context.ts";
import { CLOSED, FAILED, TlsSession } from "../tls/session.ts";

/** What the loop does for the upstreams. */
export interface UpstreamHooks {
  ctl(op: number, fd: number, events: number): void;
  /**
   * Sends bytes from the upstream to client `c` (through its faults);
   * returns how many the socket took, or -1 once `c` has ended.
   */
  send(c: number, bytes: Uint8Array, length: number): number;
  /** Keeps bytes `from` to `to` of `bytes` owed to `c`. */
  oweRead(c: number, bytes: Uint8Array, from: number, to: number): void;
  /**
   * Half-closes `c` after everything it was sent (through its faults, and
   * what its socket owes), then calls {@linkcode Upstreams.clientShut}.
   */
  closeWrite(c: number): void;
  /** Stops reading `c` while the upstream is not ready for its bytes. */
  hold(c: number): void;
  unhold(c: number): void;
  /** Ends `c` (and so its upstream) for `reason`. */
  end(c: number, reason: string): void;
  /** Ends `c` with a reset (RST) for `reason`. */
  reset(c: number, reason: string): void;
  record(record: LogRecord): void;
}

/** One client's upstream connection. */
interface Link {
  client: number;
  fd: number;
  connected: boolean;
  /** When its connect (and header) must be done. */
  until: number;
  /** Bytes from the client the upstream's socket has not taken. */
  pending: Uint8Array[];
  /** Reading the upstream waits while the client owes what it sent. */
  paused: boolean;
  /** Each side's end of stream came. */
  clientEnded: boolean;
  upstreamEnded: boolean;
  /** Our half-close went to the upstream, and to the client. */
  shutUpstream: boolean;
  shutClient: boolean;
  /** The client's faults hold it: the upstream is not read either. */
  held: boolean;
  /** Out of the epoll set: it waits for nothing now. */
  detached: boolean;
  /** TLS to the upstream: its session, and whether its handshake is done. */
  tls: TlsSession | undefined;
  handshaken: boolean;
  /** The client's bytes that came before the handshake was done. */
  early: Uint8Array[];
  /** Our close_notify went. */
  notified: boolean;
}

/** The upstream connections of one loop. */
export class Upstreams {
  #native: Native;
  #config: UpstreamConfig;
  #hooks: UpstreamHooks;
  #counters: Float64Array;
  #address: Uint8Array;
  #family: number;
  #byClient = new Map<number, Link>();
  #byFd = new Map<number, Link>();
  #buffer: Uint8Array;
  #outage = new Outage();
  #int = new Int32Array(1);
  #intLength = new Uint32Array(1);
  #one = new Int32Array([1]);
  /** TLS to the upstream: OpenSSL, its client context, and a buffer. */
  #ssl: OpenSsl | undefined;
  #context: TlsContext | undefined;
  #wire = new Uint8Array(64 * 1024);

  constructor(
    native: Native,
    config: UpstreamConfig,
    hooks: UpstreamHooks,
    counters: Float64Array,
    buffer: Uint8Array,
  ) {
    this.#native = native;
    this.#config = config;
    this.#hooks = hooks;
    this.#counters = counters;
    this.#buffer = buffer;
    if (config.tls !== undefined) {
      this.#ssl = openSsl();
      try {
        this.#context = TlsContext.client(this.#ssl, {
          caCerts: config.tls.caCerts,
        });
      } catch (error) {
        this.#ssl.close();
        throw error;
      }
    }
    const { to } = config;
    if (to.transport === "unix") {
      this.#address = unixSockaddr(to.path);
      this.#family = AF_UNIX;
    } else {
      // An IP address: the server resolved a name before the loops began.
      this.#address = sockaddr(native, to.hostname, to.port);
      this.#family = isIP(to.hostname) === 6 ? AF_INET6 : AF_INET;
    }
  }

  has(fd: number): boolean {
    return this.#byFd.has(fd);
  }

  /**
   * Connects from now on go to `hostname` (an IP address), what the
   * upstream's name gives now; links open or under way stay.
   */
  retarget(hostname: string): void {
    const { to } = this.#config;
    if (to.transport !== "tcp") return;
    this.#address = sockaddr(this.#native, hostname, to.port);
    this.#family = isIP(hostname) === 6 ? AF_INET6 : AF_INET;
  }

  /** When the next connect times out, or Infinity. */
  get nextTimer(): number {
    let at = Infinity;
    for (const link of this.#byFd.values()) {
      if (!link.connected) at = Math.min(at, link.until);
    }
    return at;
  }

  /** Connects that took too long fail. */
  timers(now: number): void {
    for (const link of [...this.#byFd.values()]) {
      if (!link.connected && now >= link.until) {
        this.#failed(link, `timed out after ${this.#config.timeout} ms`);
      }
    }
  }

  /**
   * Client `c` (from `source` to `destination`, for a PROXY header) was
   * admitted at `now`: its upstream connection starts; `c` is not read
   * until it is made.
   */
  open(
    c: number,
    source: Deno.Addr | undefined,
    destination: Deno.Addr | undefined,
    now: number,
  ): void {
    const { libc } = this.#native;
    const fd = libc.socket(
      this.#family,
      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
      0,
    );
    const link: Link = {
      client: c,
      fd,
      connected: false,
      until: now + this.#config.timeout,
      pending: [],
      paused: false,
      clientEnded: false,
      upstreamEnded: false,
      shutUpstream: false,
      shutClient: false,
      held: false,
      detached: false,
      tls: undefined,
      handshaken: false,
      early: [],
      notified: false,
    };
    this.#hooks.hold(c);
    if (fd < 0) {
      return this.#failed(link, `socket: ${errnoText(this.#native.errno())}`);
    }
    this.#byClient.set(c, link);
    this.#byFd.set(fd, link);
    if (this.#family !== AF_UNIX) {
      libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, this.#one, 4);
    }
    if (this.#config.sendProxy !== undefined) {
      const net = (addr: Deno.Addr | undefined) =>
        addr?.transport === "tcp" ? addr as Deno.NetAddr : undefined;
      // A client on a Unix socket: v1 UNKNOWN, v2 LOCAL.
      link.pending.push(
        clientHeader(
          this.#config.sendProxy,
          net(source),
          undefined,
          net(destination),
        ),
      );
    }
    if (libc.connect(fd, this.#address, this.#address.length) < 0) {
      const errno = this.#native.errno();
      if (errno !== EINPROGRESS && errno !== EAGAIN) {
        return this.#failed(link, errnoText(errno));
      }
    }
    this.#hooks.ctl(EPOLL_CTL_ADD, fd, EPOLLOUT);
  }

  /** The upstream socket `fd` is ready for `events`. */
  ready(fd: number, events: number): void {
    const link = this.#byFd.get(fd)!;
    if (!link.connected) {
      this.#intLength[0] = 4;
      this.#native.libc.getsockopt(
        fd,
        SOL_SOCKET,
        SO_ERROR,
        this.#int,
        this.#intLength,
      );
      if (this.#int[0] !== 0) {
        return this.#failed(link, errnoText(this.#int[0]));
      }
      link.connected = true;
      if (this.#context !== undefined) {
        // The handshake after the PROXY header, if any (in `pending`).
        const session = new TlsSession(this.#context, false);
        session.expect(this.#config.tls!.serverName);
        link.tls = session;
        this.#handshake(link);
        if (!this.#byFd.has(fd)) return;
      } else {
        this.#ready(link);
      }
    }
    if (link.pending.length > 0 && !this.#flush(link)) return;
    if (events & EPOLLIN || events & EPOLLRDHUP) this.#read(link);
    if (this.#byFd.has(fd)) this.#interest(link);
  }

  /** The connection (and its handshake) is made: the client is read. */
  #ready(link: Link): void {
    this.#reached();
    for (const bytes of link.early) this.#encrypt(link, bytes, bytes.length);
    link.early = [];
    if (link.pending.length === 0) this.#hooks.unhold(link.client);
    if (link.clientEnded) this.#shutUpstream(link);
  }

  /** Goes on with `link`'s handshake; fails it, or readies it when done. */
  #handshake(link: Link): void {
    const session = link.tls!;
    const done = session.handshake();
    this.#takeWire(link);
    if (session.error !== undefined) {
      return this.#failed(link, `TLS handshake: ${session.error}`);
    }
    if (!done) return;
    link.handshaken = true;
    this.#ready(link);
  }

  /** Encrypts client bytes for the upstream, and queues the ciphertext. */
  #encrypt(link: Link, bytes: Uint8Array, length: number): boolean {
    if (!link.tls!.write(bytes, length)) {
      this.#hooks.end(link.client, `upstream TLS error: ${link.tls!.error}`);
      return false;
    }
    this.#takeWire(link);
    return true;
  }

  /** Moves the session's ciphertext to what the socket owes. */
  #takeWire(link: Link): void {
    while (true) {
      const n = link.tls!.take(this.#wire);
      if (n === 0) return;
      link.pending.push(this.#wire.slice(0, n));
    }
  }

  /**
   * Client `c`'s bytes for the upstream; returns whether to read `c` on
   * (false: the upstream's socket is full, `c` waits).
   */
  forward(c: number, bytes: Uint8Array, length: number): boolean {
    const link = this.#byClient.get(c);
    if (link === undefined) return false;
    if (link.tls !== undefined || this.#context !== undefined) {
      if (!link.handshaken) {
        link.early.push(bytes.slice(0, length));
        this.#hooks.hold(c);
        return false;
      }
      if (!this.#encrypt(link, bytes, length)) return false;
      if (!this.#flush(link)) {
        this.#hooks.hold(c);
        this.#interest(link);
        return false;
      }
      return true;
    }
    if (!link.connected || link.pending.length > 0) {
      link.pending.push(bytes.slice(0, length));
      this.#hooks.hold(c);
      return false;
    }
    const w = this.#send(link, bytes, length);
    if (w < 0) return false;
    if (w < length) {
      link.pending.push(bytes.slice(w, length));
      this.#hooks.hold(c);
      this.#interest(link);
      return false;
    }
    return true;
  }

  /** Client `c` half-closed: the upstream gets ours after what it owes. */
  clientEnded(c: number): void {
    const link = this.#byClient.get(c);
    if (link === undefined) return;
    link.clientEnded = true;
    this.#shutUpstream(link);
    this.#maybeDone(link);
  }

  /** Client `c` sent all it owed: the upstream is read again. */
  clientFlushed(c: number): void {
    const link = this.#byClient.get(c);
    if (link === undefined || !link.paused) return;
    link.paused = false;
    // Plaintext the session decrypted already is not announced by epoll.
    if (link.tls !== undefined && !this.#decrypted(link)) return;
    this.#interest(link);
  }

  /** The upstream's end reached client `c` (see UpstreamHooks.closeWrite). */
  clientShut(c: number): void {
    const link = this.#byClient.get(c);
    if (link === undefined) return;
    link.shutClient = true;
    this.#maybeDone(link);
  }

  /** The client's faults hold it (or let it go): the upstream waits too. */
  held(c: number, held: boolean): void {
    const link = this.#byClient.get(c);
    if (link === undefined || link.held === held) return;
    link.held = held;
    if (link.connected) this.#interest(link);
  }

  /** Client `c` ended: its upstream connection closes. */
  close(c: number): void {
    const link = this.#byClient.get(c);
    if (link === undefined) return;
    this.#forget(link);
  }

  /** Every upstream connection closes (the loop stops). */
  closeAll(): void {
    for (const link of [...this.#byFd.values()]) this.#forget(link);
    this.#context?.free();
    this.#context = undefined;
    this.#ssl?.close();
    this.#ssl = undefined;
  }

  #forget(link: Link): void {
    this.#byClient.delete(link.client);
    link.tls?.free();
    link.tls = undefined;
    if (!this.#byFd.delete(link.fd)) return;
    if (!link.detached) this.#hooks.ctl(EPOLL_CTL_DEL, link.fd, 0);
    this.#native.libc.close(link.fd);
  }

  /** Reads the upstream and sends it on to the client, while it takes it. */
  #read(link: Link): void {
    const { libc } = this.#native;
    const buffer = this.#buffer;
    for (let i = 0; i < 16; i++) {
      if (link.paused || link.held || link.upstreamEnded) return;
      const r = libc.read(link.fd, buffer, buffer.length);
      if (r < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        if (link.tls !== undefined && !link.handshaken) {
          return this.#failed(link, `TLS handshake: ${errnoText(errno)}`);
        }
        return this.#hooks.end(
          link.client,
          `upstream ${errno === 104 ? "reset by peer" : errnoText(errno)}`,
        );
      }
      if (r === 0) {
        if (link.tls !== undefined && !link.handshaken) {
          return this.#failed(
            link,
            "TLS handshake: the upstream closed before it ended",
          );
        }
        return this.#upstreamEnd(link);
      }
      if (link.tls !== undefined) {
        link.tls.put(buffer, r);
        if (!link.handshaken) {
          this.#handshake(link);
          if (!this.#byFd.has(link.fd) || !link.handshaken) return;
          if (link.pending.length > 0 && !this.#flush(link)) return;
        }
        if (!this.#decrypted(link)) return;
        if (r < buffer.length) return;
        continue;
      }
      const w = this.#hooks.send(link.client, buffer, r);
      if (w < 0) return;
      if (w < r) {
        this.#hooks.oweRead(link.client, buffer, w, r);
        link.paused = true;
        return;
      }
      if (r < buffer.length) return;
    }
  }

  /** The upstream's end of stream: passed on to the client. */
  #upstreamEnd(link: Link): void {
    link.upstreamEnded = true;
    this.#interest(link);
    this.#hooks.closeWrite(link.client);
  }

  /**
   * Sends the plaintext the session has to the client, while it takes it;
   * false when the client is full (reading waits) or the link ended.
   */
  #decrypted(link: Link): boolean {
    const session = link.tls!;
    const plain = this.#buffer;
    while (true) {
      const n = session.read(plain);
      if (n === 0) {
        this.#takeWire(link); // A key update may want an answer.
        return link.pending.length === 0 || this.#flush(link);
      }
      if (n === CLOSED) {
        this.#upstreamEnd(link);
        return false;
      }
      if (n === FAILED) {
        this.#hooks.end(link.client, `upstream TLS error: ${session.error}`);
        return false;
      }
      const w = this.#hooks.send(link.client, plain, n);
      if (w < 0) return false;
      if (w < n) {
        this.#hooks.oweRead(link.client, plain, w, n);
        link.paused = true;
        return false;
      }
    }
  }

  /** Sends what the upstream's socket did not take; true once all is. */
  #flush(link: Link): boolean {
    while (link.pending.length > 0) {
      const chunk = link.pending[0];
      const w = this.#send(link, chunk, chunk.length);
      if (w < 0) return false;
      if (w < chunk.length) {
        link.pending[0] = chunk.subarray(w);
        return false;
      }
      link.pending.shift();
    }
    this.#shutUpstream(link);
    const ready = link.tls === undefined ? link.connected : link.handshaken;
    if (!link.clientEnded && ready) this.#hooks.unhold(link.client);
    return true;
  }

  #send(link: Link, bytes: Uint8Array, length: number): number {
    const { libc } = this.#native;
    let written = 0;
    while (written < length) {
      const rest = written === 0 ? bytes : bytes.subarray(written, length);
      const w = libc.send(link.fd, rest, length - written, MSG_NOSIGNAL);
      if (w < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) break;
        if (errno === EINTR) continue;
        this.#hooks.end(
          link.client,
          `upstream ${
            errno === 104
              ? "reset by peer"
              : errno === 32
              ? "broken pipe"
              : errnoText(errno)
          }`,
        );
        return -1;
      }
      written += w;
    }
    return written;
  }

  /** Our half-close to the upstream, once the client's end came and all went. */
  #shutUpstream(link: Link): void {
    if (!link.clientEnded || link.shutUpstream || !link.connected) return;
    if (link.tls !== undefined) {
      if (!link.handshaken) return;
      if (!link.notified) {
        // Our close_notify first: TLS's end of stream.
        link.notified = true;
        link.tls.closeNotify();
        this.#takeWire(link);
        if (!this.#flush(link)) return this.#interest(link);
        if (link.shutUpstream) return;
      }
    }
    if (link.pending.length > 0) return;
    link.shutUpstream = true;
    this.#native.libc.shutdown(link.fd, SHUT_WR);
  }

  /** Both ends came and everything went: the connection is over. */
  #maybeDone(link: Link): void {
    if (link.shutUpstream && link.shutClient) {
      this.#hooks.end(link.client, "closed by client");
    }
  }

  #interest(link: Link): void {
    if (!this.#byFd.has(link.fd)) return;
    let events = 0;
    if (!link.connected || link.pending.length > 0) events |= EPOLLOUT;
    if (
      link.connected && !link.paused && !link.held && !link.upstreamEnded
    ) {
      events |= EPOLLIN | EPOLLRDHUP;
    }
    // Waiting for nothing, a hang-up would be reported again and again.
    if (events === 0) {
      if (!link.detached) this.#hooks.ctl(EPOLL_CTL_DEL, link.fd, 0);
      link.detached = true;
      return;
    }
    if (link.detached) {
      link.detached = false;
      return this.#hooks.ctl(EPOLL_CTL_ADD, link.fd, events);
    }
    this.#hooks.ctl(EPOLL_CTL_MOD, link.fd, events);
  }

  /** A connect failed: counted, the client closed, an outage said once. */
  #failed(link: Link, reason: string): void {
    this.#counters[UPSTREAM_FAILURES]++;
    const news = this.#outage.failed(Date.now(), reason);
    if (news !== undefined) {
      this.#hooks.record(outageRecord(this.#config.address, news));
    }
    if (link.fd >= 0) this.#forget(link);
    if (this.#config.unreachable === "close") {
      this.#hooks.end(link.client, "upstream unreachable");
    } else {
      this.#hooks.reset(link.client, "upstream unreachable");
    }
  }

  #reached(): void {
    const news = this.#outage.reached(Date.now());
    if (news !== undefined) {
      this.#hooks.record(outageRecord(this.#config.address, news));
    }
  }
}
