// Private: the native load loop on completions: one io_uring for every
// connection (see lib/native/load_loop.ts for the round trips). A round
// trip queues a send of the whole message and a recv into the connection's
// own slot; one io_uring_enter() submits a batch and collects a batch of
// results, so a round trip costs no system call of its own, where epoll's
// costs two (send and recv) plus its share of the wait. With it, our load
// generator keeps up with the C one (docs/native-engine.md). Not
// exported from mod.ts.

import {
  ECANCELED,
  IORING_OP_ASYNC_CANCEL,
  IORING_OP_CONNECT,
  IORING_OP_POLL_ADD,
  IORING_OP_RECV,
  IORING_OP_SEND,
  MSG_NOSIGNAL,
  MSG_WAITALL,
  type Native,
  POLLIN,
  Ring,
  Slab,
} from "./ffi.ts";
import { Conn, type LoadConfig, LoadLoop } from "./load_loop.ts";

// What each operation's user data says: the connection's index times 4,
// plus its kind; the eventfd's poll has a value of its own.
const CONNECT = 0;
const SEND = 1;
const RECV = 2;
const CANCEL = 3;
const WAKE = 0xffffffff;
/** Room for a sockaddr_un (110 bytes) or sockaddr_in6, at the slab's start. */
const ADDRESS_ROOM = 112;
/** A connection's receive slot: at most this, ... */
const SLOT_MAX = 64 * 1024;
/** ... and all of them together not much more than this. */
const SLOTS_TOTAL = 64 * 1024 * 1024;

/** The load loop on io_uring (Linux 6.1+, where the kernel allows it). */
export class UringLoad extends LoadLoop {
  #ring: Ring;
  /** The address, the message and every receive slot, at fixed addresses. */
  #slab: Slab;
  #messageAt = ADDRESS_ROOM;
  #slotsAt: number;
  #slotSize: number;
  /** Each connection's slot, as bytes. */
  #slots: Uint8Array[] = [];
  #wakeBuffer = new Uint8Array(8);
  #polling = false;

  constructor(native: Native, config: LoadConfig) {
    super(native, config);
    const { connections, message } = config;
    this.#slotSize = Math.max(
      256,
      Math.min(
        message.length + 1,
        SLOT_MAX,
        Math.floor(SLOTS_TOTAL / connections),
      ),
    );
    this.#slotsAt = ADDRESS_ROOM + message.length;
    this.#slab = new Slab(this.#slotsAt + connections * this.#slotSize);
    this.#slab.bytes.set(this.address, 0);
    this.#slab.bytes.set(message, this.#messageAt);
    // Two operations in flight per connection, and room for cancels.
    this.#ring = new Ring(
      native,
      Math.min(4096, 2 * connections + 8),
      Math.min(65536, 4 * connections + 16),
    );
    this.#poll();
  }

  protected override open(index: number): void {
    // A blocking socket: io_uring waits for it on its own.
    const fd = this.socket(0, index);
    if (fd < 0) return;
    const conn = new Conn(fd, index);
    const at = this.#slotsAt + index * this.#slotSize;
    this.#slots[index] = this.#slab.bytes.subarray(at, at + this.#slotSize);
    this.added(conn);
    this.#ring.prep(
      IORING_OP_CONNECT,
      fd,
      this.#slab.address,
      0,
      0,
      index * 4 + CONNECT,
      this.address.length,
    );
  }

  protected override wait(timeoutMs: number): void {
    const ring = this.#ring;
    ring.wait(timeoutMs);
    const { message } = this.config;
    const end = ring.tail;
    let at = ring.head;
    let now = 0;
    for (; at !== end; at = (at + 1) >>> 0) {
      const data = ring.userData(at);
      const result = ring.result(at);
      if (data === WAKE) {
        this.#polling = false;
        this.native.libc.read(
          this.config.wakeFd,
          this.#wakeBuffer,
          this.#wakeBuffer.length,
        );
        this.woken();
        this.#poll();
        continue;
      }
      const conn = this.conns[data >>> 2];
      if (conn === undefined || !conn.open) continue;
      switch (data & 3) {
        case CONNECT:
          this.connectDone(conn, result < 0 ? -result : 0);
          break;
        case SEND:
          // With MSG_WAITALL, all of it or an error.
          if (result < 0) this.ioFailed(conn, -result);
          else if (result !== message.length) {
            this.fail("other", `Sent ${result} of ${message.length} bytes`);
            this.close(conn);
          }
          break;
        case RECV:
          conn.reading = false;
          if (result < 0) {
            if (result !== -ECANCELED) this.ioFailed(conn, -result);
            break;
          }
          if (now === 0) now = this.native.now();
          this.echoed(conn, this.#slots[conn.index], result, now);
          // A partial echo: read on.
          if (conn.open && !conn.reading && conn.since > 0) this.#recv(conn);
          break;
      }
    }
    ring.consume(at);
  }

  /** Queues the whole message, and a recv for its echo. */
  protected override send(conn: Conn): void {
    const { message } = this.config;
    conn.sent = message.length;
    this.#ring.prep(
      IORING_OP_SEND,
      conn.fd,
      this.#slab.address + this.#messageAt,
      message.length,
      MSG_NOSIGNAL | MSG_WAITALL,
      conn.index * 4 + SEND,
    );
    this.#recv(conn);
  }

  protected override release(conn: Conn): void {
    // Operations in flight hold the socket open: cancel them (a cancel
    // finding nothing is harmless), then close our descriptor.
    const kinds = conn.connected ? [SEND, RECV] : [CONNECT];
    for (const kind of kinds) {
      this.#ring.prep(
        IORING_OP_ASYNC_CANCEL,
        -1,
        conn.index * 4 + kind,
        0,
        0,
        conn.index * 4 + CANCEL,
      );
    }
    this.native.libc.close(conn.fd);
  }

  protected override end(): void {
    this.#ring.submit();
    this.#ring.close();
  }

  protected override flush(): boolean {
    // chooseIo (lib/native/native_load.ts) sends TLS to epoll.
    throw new Error("The io_uring load loop drives no TLS");
  }

  /** A recv of what is owed and one byte more, into `conn`'s slot. */
  #recv(conn: Conn): void {
    conn.reading = true;
    this.#ring.prep(
      IORING_OP_RECV,
      conn.fd,
      this.#slab.address + this.#slotsAt + conn.index * this.#slotSize,
      Math.min(this.#slotSize, this.owed(conn)),
      0,
      conn.index * 4 + RECV,
    );
  }

  /** Waits for the calling thread's eventfd (one-shot: again after each). */
  #poll(): void {
    if (this.#polling) return;
    this.#polling = true;
    this.#ring.prep(IORING_OP_POLL_ADD, this.config.wakeFd, 0, 0, POLLIN, WAKE);
  }
}
