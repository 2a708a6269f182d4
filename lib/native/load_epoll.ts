// Private: the native load loop on readiness: one epoll set over every
// connection's non-blocking socket, and send() and recv() when the kernel
// says they can go on (see lib/native/load_loop.ts for the round trips).
// Where io_uring is not allowed (older kernels, seccomp in containers).
// Not exported from mod.ts.

import {
  EAGAIN,
  EINPROGRESS,
  EINTR,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_MOD,
  EPOLL_EVENT_SIZE,
  EPOLLERR,
  epollEvents,
  epollFd,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  errnoText,
  MSG_NOSIGNAL,
  type Native,
  setEpollEvent,
  SO_ERROR,
  SOCK_NONBLOCK,
  SOL_SOCKET,
} from "./ffi.ts";
import { Conn, type LoadConfig, LoadLoop } from "./load_loop.ts";

const MAX_EVENTS = 256;

/** The load loop on epoll. */
export class EpollLoad extends LoadLoop {
  #epoll: number;
  #events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  #eventsView = new DataView(this.#events.buffer);
  #one = new Uint8Array(EPOLL_EVENT_SIZE);
  #oneView = new DataView(this.#one.buffer);
  /** One byte more than the message: an echo longer than it shows. */
  #buffer: Uint8Array;
  #int = new Int32Array(1);
  #intLength = new Uint32Array(1);
  #wakeBuffer = new Uint8Array(8);
  /** Open connections by file descriptor. */
  #byFd: (Conn | undefined)[] = [];

  constructor(native: Native, config: LoadConfig) {
    super(native, config);
    this.#buffer = new Uint8Array(
      Math.max(64 * 1024, config.message.length + 1),
    );
    const epoll = native.libc.epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) throw new Error(`epoll_create1: ${this.#errno()}`);
    this.#epoll = epoll;
    this.#ctl(EPOLL_CTL_ADD, config.wakeFd, EPOLLIN);
  }

  protected override open(index: number, reuse?: Conn): void {
    const { libc } = this.native;
    const address = this.address;
    const fd = this.socket(SOCK_NONBLOCK, index);
    if (fd < 0) return;
    if (libc.connect(fd, address, address.length) < 0) {
      const errno = this.native.errno();
      if (errno !== EINPROGRESS) {
        libc.close(fd);
        this.fail("connect", errnoText(errno));
        return;
      }
    }
    // A slot's connection again (a reconnect), once its socket connects.
    reuse?.reset(fd);
    const conn = reuse ?? new Conn(fd, index);
    this.added(conn);
    this.#byFd[fd] = conn;
    conn.events = EPOLLOUT;
    this.#ctl(EPOLL_CTL_ADD, fd, EPOLLOUT);
  }

  protected override wait(timeoutMs: number): void {
    const n = this.native.libc.epoll_wait(
      this.#epoll,
      this.#events,
      MAX_EVENTS,
      Math.ceil(timeoutMs),
    );
    if (n < 0) {
      const errno = this.native.errno();
      if (errno === EINTR) return;
      throw new Error(`epoll_wait: ${errnoText(errno)}`);
    }
    for (let i = 0; i < n; i++) {
      const fd = epollFd(this.#eventsView, i);
      if (fd === this.config.wakeFd) {
        this.native.libc.read(fd, this.#wakeBuffer, this.#wakeBuffer.length);
        this.woken();
        continue;
      }
      const conn = this.#byFd[fd];
      if (conn === undefined) continue;
      const events = epollEvents(this.#eventsView, i);
      if (!conn.connected && !conn.handshaking) this.#connectDone(conn);
      else if (conn.tls !== undefined) this.#tlsEvents(conn, events);
      else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) this.#readable(conn);
      else if (events & EPOLLOUT) this.send(conn);
    }
  }

  /** Writes what is left of the message; waits for EPOLLOUT if need be. */
  protected override send(conn: Conn): void {
    const message = this.messageOf(conn);
    while (conn.sent < message.length) {
      const rest = conn.sent === 0 ? message : message.subarray(conn.sent);
      const w = this.native.libc.send(
        conn.fd,
        rest,
        rest.length,
        MSG_NOSIGNAL,
      );
      if (w < 0) {
        const errno = this.native.errno();
        if (errno === EINTR) continue;
        if (errno === EAGAIN) return this.#watch(conn, EPOLLIN | EPOLLOUT);
        return this.ioFailed(conn, errno);
      }
      conn.sent += w;
      if (this.config.udp) break; // One datagram, whole.
    }
    this.#watch(conn, EPOLLIN);
  }

  protected override release(conn: Conn): void {
    // TLS: our close_notify, if the socket takes it now.
    if (conn.tls !== undefined && conn.unsent === undefined) {
      const n = conn.tls.take(this.#buffer);
      if (n > 0) {
        this.native.libc.send(conn.fd, this.#buffer, n, MSG_NOSIGNAL);
      }
    }
    this.#byFd[conn.fd] = undefined;
    this.native.libc.close(conn.fd);
  }

  protected override flush(conn: Conn): boolean {
    const session = conn.tls!;
    const buffer = this.#buffer;
    while (true) {
      let bytes = conn.unsent;
      if (bytes === undefined) {
        const n = session.take(buffer);
        if (n === 0) break;
        bytes = buffer.subarray(0, n);
      }
      const w = this.native.libc.send(
        conn.fd,
        bytes,
        bytes.length,
        MSG_NOSIGNAL,
      );
      if (w < 0) {
        const errno = this.native.errno();
        if (errno === EINTR) continue;
        if (errno !== EAGAIN) {
          this.ioFailed(conn, errno);
          return false;
        }
        // The socket is full: the rest waits for room.
        conn.unsent = bytes.buffer === buffer.buffer ? bytes.slice() : bytes;
        this.#watch(conn, EPOLLIN | EPOLLOUT);
        return true;
      }
      conn.unsent = w === bytes.length
        ? undefined
        : (bytes.buffer === buffer.buffer ? bytes.slice(w) : bytes.subarray(w));
    }
    this.#watch(conn, EPOLLIN);
    return true;
  }

  /** A TLS connection's events: ciphertext in, room for what waits. */
  #tlsEvents(conn: Conn, events: number): void {
    if (events & EPOLLOUT && conn.unsent !== undefined) {
      if (!this.flush(conn)) return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    const buffer = this.#buffer;
    while (true) {
      const r = this.native.libc.recv(conn.fd, buffer, buffer.length, 0);
      if (r < 0) {
        const errno = this.native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        return this.ioFailed(conn, errno);
      }
      return this.tlsArrived(conn, buffer, r, this.native.now());
    }
  }

  protected override end(): void {
    this.native.libc.close(this.#epoll);
  }

  #errno(): string {
    return errnoText(this.native.errno());
  }

  #ctl(op: number, fd: number, events: number): void {
    setEpollEvent(this.#oneView, 0, events, fd);
    this.native.libc.epoll_ctl(this.#epoll, op, fd, this.#one);
  }

  /** Registers `conn` for `events`, unless it is already (a system call). */
  #watch(conn: Conn, events: number): void {
    if (conn.events === events) return;
    conn.events = events;
    this.#ctl(EPOLL_CTL_MOD, conn.fd, events);
  }

  /** The connect finished, one way or the other. */
  #connectDone(conn: Conn): void {
    this.#intLength[0] = 4;
    this.native.libc.getsockopt(
      conn.fd,
      SOL_SOCKET,
      SO_ERROR,
      this.#int,
      this.#intLength,
    );
    const errno = this.#int[0];
    // Connected: writable matters only while a send waits. A level-
    // triggered EPOLLOUT left on would fire at every wait, and send a round
    // trip not yet due in the rate's schedule.
    if (errno === 0) this.#watch(conn, EPOLLIN);
    this.connectDone(conn, errno);
  }

  #readable(conn: Conn): void {
    const buffer = this.#buffer;
    if (this.config.udp) return this.#datagrams(conn);
    while (true) {
      // What is owed and one byte more (an echo longer than the message
      // shows): a read sized to the echo costs the kernel less than 64 KiB,
      // and recv() skips read()'s file layer (faster in 3 of 3 pairs here).
      const want = Math.min(buffer.length, this.owed(conn));
      const r = this.native.libc.recv(conn.fd, buffer, want, 0);
      if (r < 0) {
        const errno = this.native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        return this.ioFailed(conn, errno);
      }
      // A partial echo: the rest comes with the next readiness event (a
      // read now would most likely find nothing).
      return this.echoed(conn, buffer, r, this.native.now());
    }
  }

  /** Takes the datagrams waiting on `conn`'s socket, one reply each. */
  #datagrams(conn: Conn): void {
    const buffer = this.#buffer;
    while (conn.open) {
      const r = this.native.libc.recv(conn.fd, buffer, buffer.length, 0);
      if (r < 0) {
        const errno = this.native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        // An ICMP error for a datagram (no one listens): that one is lost.
        return;
      }
      this.datagramEchoed(conn, buffer, r, this.native.now());
    }
  }
}
