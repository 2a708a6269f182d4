// Private: the native engine's UDP datagrams, taken and sent in batches:
// one recvmmsg() fills up to BATCH slots, one sendmmsg() sends the replies
// back, as ../shared/bench/servers/c_udp_echo.c does. The message headers,
// their iovecs, the peers' addresses and the slots are one slab of memory
// whose address is known (lib/native/ffi.ts's Slab), laid out once. Not
// exported from mod.ts.

import {
  EAGAIN,
  EINTR,
  fromSockaddr,
  MSG_DONTWAIT,
  type Native,
  Slab,
  SOCKADDR_MAX,
} from "./ffi.ts";

/** Datagrams a call takes or sends, as the C reference does. */
export const BATCH = 64;
/** A slot: more than 65,507 bytes, the largest UDP payload over IPv4. */
const SLOT = 65_536;
/** struct mmsghdr: a msghdr (56 bytes on LP64) and msg_len, padded. */
const HEADER = 64;
/** struct iovec: a pointer and a length. */
const IOVEC = 16;
/** Room for a sockaddr_in6 (28 bytes), aligned. */
const NAME = 32;

const HEADERS_AT = 0;
const IOVECS_AT = BATCH * HEADER;
const NAMES_AT = IOVECS_AT + BATCH * IOVEC;
const SLOTS_AT = NAMES_AT + BATCH * NAME;

/** One socket's batch of datagrams. */
export class DatagramBatch {
  #native: Native;
  #slab: Slab;
  #view: DataView;
  #headers: Uint8Array;
  /** Slots the last receive filled, whose lengths a reply may have set. */
  #used = BATCH;

  constructor(native: Native) {
    this.#native = native;
    this.#slab = new Slab(SLOTS_AT + BATCH * SLOT);
    this.#view = new DataView(this.#slab.bytes.buffer);
    this.#headers = this.#slab.bytes.subarray(HEADERS_AT, IOVECS_AT);
    const base = BigInt(this.#slab.address);
    const view = this.#view;
    for (let i = 0; i < BATCH; i++) {
      const header = HEADERS_AT + i * HEADER;
      const iovec = IOVECS_AT + i * IOVEC;
      view.setBigUint64(header, base + BigInt(NAMES_AT + i * NAME), true);
      view.setBigUint64(header + 16, base + BigInt(iovec), true);
      view.setBigUint64(header + 24, 1n, true); // msg_iovlen
      view.setBigUint64(iovec, base + BigInt(SLOTS_AT + i * SLOT), true);
    }
  }

  /**
   * Takes up to BATCH datagrams waiting on `fd`, without blocking. Returns
   * how many, or -1 with `errno` set (EAGAIN: none waiting).
   */
  receive(fd: number): number {
    const view = this.#view;
    for (let i = 0; i < this.#used; i++) {
      view.setUint32(HEADERS_AT + i * HEADER + 8, SOCKADDR_MAX, true);
      // size_t lengths below 2^32: the low half, little-endian.
      view.setUint32(IOVECS_AT + i * IOVEC + 8, SLOT, true);
    }
    const n = this.#native.libc.recvmmsg(
      fd,
      this.#headers,
      BATCH,
      MSG_DONTWAIT,
      null,
    );
    this.#used = Math.max(n, 0);
    return n;
  }

  /** Datagram `i` of the last receive: a view of its slot. */
  data(i: number): Uint8Array {
    const length = this.#view.getUint32(HEADERS_AT + i * HEADER + 56, true);
    const at = SLOTS_AT + i * SLOT;
    return this.#slab.bytes.subarray(at, at + length);
  }

  /** Who sent datagram `i`: where its reply goes. */
  peer(i: number): Deno.NetAddr {
    const at = NAMES_AT + i * NAME;
    return {
      transport: "udp",
      ...fromSockaddr(this.#native, this.#slab.bytes.subarray(at, at + NAME)),
    };
  }

  /** A copy of datagram `i`'s peer as a `sockaddr`, for sendto(). */
  peerName(i: number): Uint8Array {
    const length = this.#view.getUint32(HEADERS_AT + i * HEADER + 8, true);
    const at = NAMES_AT + i * NAME;
    return this.#slab.bytes.slice(at, at + length);
  }

  /**
   * Sets datagram `i`'s reply: `reply` itself when it is that datagram
   * (echo), a copy into its slot otherwise. Its peer stays the address.
   */
  reply(i: number, reply: Uint8Array): void {
    const at = SLOTS_AT + i * SLOT;
    if (reply.byteOffset !== at || reply.buffer !== this.#slab.bytes.buffer) {
      this.#slab.bytes.set(reply, at);
    }
    this.#view.setUint32(IOVECS_AT + i * IOVEC + 8, reply.length, true);
  }

  /**
   * Makes each of the first `n` datagrams its own reply (echo), without a
   * view of each; returns their bytes in all.
   */
  echoAll(n: number): number {
    const view = this.#view;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const length = view.getUint32(HEADERS_AT + i * HEADER + 56, true);
      view.setUint32(IOVECS_AT + i * IOVEC + 8, length, true);
      bytes += length;
    }
    return bytes;
  }

  /** The bytes of the replies of datagrams `from` to `to` (excluded). */
  bytes(from: number, to: number): number {
    let bytes = 0;
    for (let i = from; i < to; i++) {
      bytes += this.#view.getUint32(IOVECS_AT + i * IOVEC + 8, true);
    }
    return bytes;
  }

  /**
   * Sends the replies of datagrams `from` to `to` (excluded), without
   * blocking. Returns how many went and their bytes. A socket whose
   * buffer is full drops the rest, as a network would; a reply the kernel
   * refuses (an unreachable peer) is skipped.
   */
  send(fd: number, from: number, to: number): [number, number] {
    let at = from;
    let sent = 0;
    let bytes = 0;
    const { libc } = this.#native;
    while (at < to) {
      const n = libc.sendmmsg(
        fd,
        this.#headers.subarray(at * HEADER),
        to - at,
        MSG_DONTWAIT,
      );
      if (n < 0) {
        const errno = this.#native.errno();
        if (errno === EINTR) continue;
        if (errno === EAGAIN) break;
        at++;
        continue;
      }
      if (n === 0) break;
      for (let i = at; i < at + n; i++) {
        bytes += this.#view.getUint32(IOVECS_AT + i * IOVEC + 8, true);
      }
      at += n;
      sent += n;
    }
    return [sent, bytes];
  }
}
