// Private: every foreign call of the native engine, in this one file: the
// libc symbols it uses, the constants and struct layouts they take, and how
// errno is read. Linux only, x86_64 and aarch64. Not exported from mod.ts.
//
// Signatures take `i32`/`u32` integers and `buffer` pointers only, so that
// V8 calls them on its fast path (a `read` costs about 0.22 µs here, the
// system call included; declared with `usize`/`isize` it costs 0.43 µs).
// `size_t` lengths are declared `u32`: both ABIs pass a 32-bit value
// zero-extended in a 64-bit register, and every length we pass comes from
// the JavaScript buffer it describes (`buffer.length`), which is far below
// 2^32. `ssize_t` results are read as `i32`: counts here never reach 2^31,
// and -1 stays -1.

import { isIP } from "node:net";
import { optionError } from "../_helpers.ts";

/**
 * Throws unless the native engine can run here with its Web Worker module
 * `worker`: Linux on x86_64 or aarch64, `--allow-ffi`, and read access to
 * the module when it is on disk. The errors name the `engine` option.
 */
export function assertNativeRuns(worker: URL): void {
  const unsupported = nativeSupport();
  if (unsupported !== undefined) {
    throw optionError(
      "engine",
      `native ${unsupported}`,
      Deno.errors.NotSupported,
    );
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw optionError(
      "engine",
      "native needs --allow-ffi (full access to this process: the default engine does not)",
      Deno.errors.NotCapable,
    );
  }
  if (worker.protocol !== "file:") return;
  const path = decodeURIComponent(worker.pathname);
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") {
    throw optionError(
      "engine",
      `native needs read access to ${path} (--allow-read)`,
      Deno.errors.NotCapable,
    );
  }
}

/** Whether this machine can run the native engine, and if not, why. */
export function nativeSupport(): string | undefined {
  if (Deno.build.os !== "linux") {
    return `it runs on Linux only, not on ${Deno.build.os}`;
  }
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") {
    return `it runs on x86_64 and aarch64 only, not on ${Deno.build.arch}`;
  }
  return undefined;
}

// Linux's numbers: the same on x86_64 and aarch64 (asm-generic).
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_REUSEPORT = 15;
export const SO_ERROR = 4;
export const SO_LINGER = 13;
export const IPPROTO_TCP = 6;
export const IPPROTO_IP = 0;
/** Linux: bind() picks no port; connect() does, per destination. */
export const IP_BIND_ADDRESS_NO_PORT = 24;
export const TCP_NODELAY = 1;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const SHUT_WR = 1;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_DONTWAIT = 0x40;
export const EPOLL_CLOEXEC = 0o2000000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EFD_NONBLOCK = 0o4000;
export const CLOCK_MONOTONIC = 1;
export const EFD_CLOEXEC = 0o2000000;

/** errno values the engine tells apart, and their names for messages. */
export const EINTR = 4;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const ENFILE = 23;
export const EMFILE = 24;
export const EPIPE = 32;
export const ECONNRESET = 104;
export const ENOBUFS = 105;
export const EADDRINUSE = 98;
export const ECONNREFUSED = 111;
export const ENOENT = 2;
export const EADDRNOTAVAIL = 99;
export const EACCES = 13;
export const EINPROGRESS = 115;
export const ETIME = 62;
export const ECANCELED = 125;
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM: operation not permitted",
  2: "ENOENT: no such file or directory",
  4: "EINTR: interrupted system call",
  9: "EBADF: bad file descriptor",
  11: "EAGAIN: resource temporarily unavailable",
  12: "ENOMEM: out of memory",
  13: "EACCES: permission denied",
  22: "EINVAL: invalid argument",
  23: "ENFILE: too many open files in system",
  24: "EMFILE: too many open files",
  32: "EPIPE: broken pipe",
  38: "ENOSYS: function not implemented",
  62: "ETIME: timer expired",
  97: "EAFNOSUPPORT: address family not supported",
  98: "EADDRINUSE: address already in use",
  99: "EADDRNOTAVAIL: cannot assign requested address",
  103: "ECONNABORTED: connection aborted",
  104: "ECONNRESET: connection reset by peer",
  105: "ENOBUFS: no buffer space available",
  107: "ENOTCONN: not connected",
  110: "ETIMEDOUT: connection timed out",
  111: "ECONNREFUSED: connection refused",
  113: "EHOSTUNREACH: no route to host",
  115: "EINPROGRESS: operation now in progress",
  125: "ECANCELED: operation canceled",
};

/** `errno`'s name (`EMFILE`), or undefined for one not in the table. */
export function errnoName(errno: number): string | undefined {
  return ERRNO_NAMES[errno]?.split(":")[0];
}

/** `errno`'s name and meaning, as logs and errors show it. */
export function errnoText(errno: number): string {
  return `${ERRNO_NAMES[errno] ?? "error"} (os error ${errno})`;
}

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  memcmp: { parameters: ["buffer", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  accept4: {
    parameters: ["i32", "buffer", "buffer", "i32"],
    result: "i32",
  },
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "u32", "i32", "buffer", "u32"],
    result: "i32",
  },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  recvmmsg: {
    parameters: ["i32", "buffer", "u32", "i32", "pointer"],
    result: "i32",
  },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: {
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  /** glibc: gives free heap pages back to the kernel (pad: 0). */
  malloc_trim: { parameters: ["u32"], result: "i32" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  inet_pton: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  inet_ntop: {
    parameters: ["i32", "buffer", "buffer", "u32"],
    result: "pointer",
  },
  // io_uring has no libc wrapper: syscall(2) with its number, 425 and 426
  // on both architectures (asm-generic). syscall() reads every argument as
  // a long: the number and io_uring_enter's last (argsz, which x86_64
  // passes on the stack, where a u32 would leave the upper half undefined)
  // are 64-bit; the others are 32-bit in the kernel too. Called once a
  // batch, not per byte.
  io_uring_setup: {
    name: "syscall",
    parameters: ["i64", "u32", "buffer"],
    result: "i32",
  },
  io_uring_enter: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "u32", "u32", "buffer", "u64"],
    result: "i32",
  },
  mmap: {
    parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"],
    result: "pointer",
  },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // Once, when a native server with an upstream by name starts: it blocks.
  getaddrinfo: {
    parameters: ["buffer", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  freeaddrinfo: { parameters: ["pointer"], result: "void" },
  gai_strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libc's functions, as JavaScript calls them. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * libc, opened for this thread, and this thread's `errno` (errno is per
 * thread: each worker opens its own).
 */
export interface Native {
  readonly libc: Libc;
  /** The calling thread's `errno`, read right after a call returned -1. */
  errno(): number;
  /**
   * Milliseconds on CLOCK_MONOTONIC, to the nanosecond: about 50 ns a call
   * here, against 130 ns for `performance.now()`, which a load generator
   * calls once a round trip.
   */
  now(): number;
  close(): void;
}

/**
 * Opens libc. Throws `Deno.errors.NotCapable` without `--allow-ffi`, and an
 * Error when this machine cannot run the engine (see {@linkcode nativeSupport}).
 */
export function openLibc(): Native {
  const unsupported = nativeSupport();
  if (unsupported !== undefined) {
    throw new Error(`The native engine cannot run here: ${unsupported}`);
  }
  const library = Deno.dlopen("libc.so.6", SYMBOLS);
  const location = library.symbols.__errno_location();
  if (location === null) {
    library.close();
    throw new Error("The native engine cannot run here: no errno");
  }
  const view = new Deno.UnsafePointerView(location);
  // A struct timespec: tv_sec and tv_nsec, 64 bits each, little-endian on
  // both architectures; seconds since boot fit in the low 32 bits.
  const timespec = new Uint32Array(4);
  const { clock_gettime } = library.symbols;
  return {
    libc: library.symbols,
    errno: () => view.getInt32(),
    now: () => {
      clock_gettime(CLOCK_MONOTONIC, timespec);
      return timespec[0] * 1000 + timespec[2] / 1e6;
    },
    close: () => library.close(),
  };
}

/**
 * An `epoll_event`: `events` (u32), then `data` (u64), packed on x86_64 (12
 * bytes) and aligned on aarch64 (16 bytes). We keep a file descriptor in
 * `data`'s low 32 bits.
 */
export const EPOLL_EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;
const EPOLL_DATA_OFFSET = Deno.build.arch === "x86_64" ? 4 : 8;

/** Writes event `i` of `view` (little-endian on both architectures). */
export function setEpollEvent(
  view: DataView,
  i: number,
  events: number,
  fd: number,
): void {
  const at = i * EPOLL_EVENT_SIZE;
  view.setUint32(at, events, true);
  view.setUint32(at + EPOLL_DATA_OFFSET, fd, true);
  view.setUint32(at + EPOLL_DATA_OFFSET + 4, 0, true);
}

/** The `events` of event `i` in `view`. */
export function epollEvents(view: DataView, i: number): number {
  return view.getUint32(i * EPOLL_EVENT_SIZE, true);
}

/** The file descriptor kept in event `i` of `view`. */
export function epollFd(view: DataView, i: number): number {
  return view.getInt32(i * EPOLL_EVENT_SIZE + EPOLL_DATA_OFFSET, true);
}

/** The largest address accept4() may return here: a `sockaddr_in6`. */
export const SOCKADDR_MAX = 28;
/** `INET6_ADDRSTRLEN`: room for any address inet_ntop() writes, and its NUL. */
const ADDRESS_TEXT = 46;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A `sockaddr_in` (16 bytes: family, port big-endian, address) or
 * `sockaddr_in6` (28 bytes: family, port, flow info, address, scope id)
 * for `hostname` (an IP address) and `port`; libc's inet_pton() reads the
 * address.
 */
export function sockaddr(
  native: Native,
  hostname: string,
  port: number,
): Uint8Array {
  const family = isIP(hostname);
  if (family === 0) throw new TypeError(`Not an IP address: ${hostname}`);
  const out = new Uint8Array(family === 6 ? SOCKADDR_MAX : 16);
  const view = new DataView(out.buffer);
  view.setUint16(0, family === 6 ? AF_INET6 : AF_INET, true);
  view.setUint16(2, port, false);
  const text = encoder.encode(`${hostname}\0`);
  const address = out.subarray(family === 6 ? 8 : 4);
  native.libc.inet_pton(family === 6 ? AF_INET6 : AF_INET, text, address);
  return out;
}

/**
 * The first IP address libc's getaddrinfo() gives for `name` (from
 * /etc/hosts or DNS, in the order it ranks them), for a stream socket. It
 * blocks: for a server's start, not its loops.
 *
 * @throws {Deno.errors.NotFound} The name does not resolve (the message
 * says why, in gai_strerror()'s words).
 */
export function resolveName(native: Native, name: string): string {
  if (isIP(name) !== 0) return name;
  const { libc } = native;
  // struct addrinfo on LP64 (x86_64 and aarch64): ai_flags, ai_family,
  // ai_socktype, ai_protocol (i32 each), ai_addrlen (u32, padded to 8),
  // then the pointers ai_addr, ai_canonname, ai_next.
  const hints = new Uint8Array(48);
  new DataView(hints.buffer).setInt32(8, SOCK_STREAM, true);
  const result = new BigUint64Array(1);
  const status = libc.getaddrinfo(
    encoder.encode(`${name}\0`),
    null,
    hints,
    new Uint8Array(result.buffer),
  );
  if (status !== 0) {
    const why = libc.gai_strerror(status);
    throw new Deno.errors.NotFound(
      `Cannot resolve ${name}: ${
        why === null
          ? `error ${status}`
          : Deno.UnsafePointerView.getCString(why)
      }`,
    );
  }
  const first = Deno.UnsafePointer.create(result[0]);
  try {
    const info = new Deno.UnsafePointerView(first!);
    const length = info.getUint32(16);
    const address = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(info.getPointer(24)!, length),
    ).slice();
    return fromSockaddr(native, address).hostname;
  } finally {
    libc.freeaddrinfo(first);
  }
}

/** A `sockaddr_un` for `path` (at most 107 bytes), and its length. */
export function unixSockaddr(path: string): Uint8Array {
  const bytes = encoder.encode(path);
  const out = new Uint8Array(2 + bytes.length + 1);
  new DataView(out.buffer).setUint16(0, AF_UNIX, true);
  out.set(bytes, 2);
  return out;
}

/**
 * The address (as libc's inet_ntop() writes it) and port in a `sockaddr`
 * that the kernel filled in.
 */
export function fromSockaddr(
  native: Native,
  bytes: Uint8Array,
): { hostname: string; port: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const family = view.getUint16(0, true);
  const text = new Uint8Array(ADDRESS_TEXT);
  native.libc.inet_ntop(
    family,
    bytes.subarray(family === AF_INET6 ? 8 : 4),
    text,
    text.length,
  );
  return {
    hostname: decoder.decode(text.subarray(0, text.indexOf(0))),
    port: view.getUint16(2, false),
  };
}

/**
 * Memory whose address the kernel may keep while an operation is in
 * flight: an `ArrayBuffer` of its own, which V8 keeps off its heap and
 * never moves, with its address as a number (below 2^53 on both
 * architectures' user space).
 */
export class Slab {
  readonly bytes: Uint8Array;
  readonly address: number;
  constructor(size: number) {
    this.bytes = new Uint8Array(new ArrayBuffer(size));
    this.address = Number(
      Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.bytes)),
    );
  }
}

// io_uring's numbers (include/uapi/linux/io_uring.h), the same everywhere.
const SYS_IO_URING_SETUP = 425n;
const SYS_IO_URING_ENTER = 426n;
const IORING_SETUP_CQSIZE = 1 << 3;
const IORING_SETUP_SINGLE_ISSUER = 1 << 12;
const IORING_SETUP_DEFER_TASKRUN = 1 << 13;
const IORING_ENTER_GETEVENTS = 1;
const IORING_ENTER_EXT_ARG = 1 << 3;
const IORING_OFF_SQES = 0x10000000n;
const IORING_FEAT_SINGLE_MMAP = 1;
const IORING_FEAT_NODROP = 1 << 1;
const IORING_FEAT_EXT_ARG = 1 << 8;
const PROT_READ_WRITE = 3;
const MAP_SHARED_POPULATE = 0x01 | 0x8000;
export const IORING_OP_POLL_ADD = 6;
export const IORING_OP_ASYNC_CANCEL = 14;
export const IORING_OP_CONNECT = 16;
export const IORING_OP_SEND = 26;
export const IORING_OP_RECV = 27;
export const MSG_WAITALL = 0x100;
export const POLLIN = 1;

/**
 * An io_uring: submission and completion queues shared with the kernel, so
 * that one system call submits a batch of operations and collects a batch
 * of results. For one thread (`SINGLE_ISSUER`, and `DEFER_TASKRUN`:
 * completions are posted only when this thread waits for them, so the
 * queues change only inside {@linkcode Ring.wait}, and plain typed-array
 * reads and writes of them need no barrier). Needs Linux 6.1.
 *
 * Layouts: `io_uring_params` is 120 bytes (ten u32, then the submission
 * queue's offsets at 40 and the completion queue's at 80, ten u32 each); a
 * submission queue entry (SQE) is 64 bytes: opcode u8 at 0, flags u8 at 1,
 * ioprio u16 at 2, fd i32 at 4, off u64 at 8, addr u64 at 16, len u32 at
 * 24, op flags u32 at 28, user_data u64 at 32, and 24 bytes we keep zero; a
 * completion (CQE) is 16 bytes: user_data u64, res i32 (a count, or
 * -errno), flags u32. We keep user data in its low 32 bits.
 */
export class Ring {
  #native: Native;
  #fd: number;
  #rings: Deno.PointerObject;
  #ringsSize: number;
  #sqes: Deno.PointerObject;
  #sqesSize: number;
  /** The mapped queues, as u32 words, and the entries. */
  #q: Uint32Array;
  #qi: Int32Array;
  #sqe: Uint32Array;
  #sqTail: number;
  #sqMask: number;
  #sqEntries: number;
  #cqHead: number;
  #cqTail: number;
  #cqMask: number;
  #cqes: number;
  /** Our copy of the submission tail, and entries not yet submitted. */
  #tail: number;
  #pending = 0;
  /** `io_uring_getevents_arg` (24 bytes) and the timespec it points to. */
  #arg = new Uint32Array(6);
  #argBytes = new Uint8Array(this.#arg.buffer);
  #timespec = new Slab(16);
  #timespecWords = new Uint32Array(this.#timespec.bytes.buffer);
  #nothing = new Uint8Array(0);

  /**
   * A ring for about `entries` operations in flight at once (completions:
   * room for `completions`; more wait in the kernel, which keeps them).
   * Throws an Error that says why when the kernel refuses.
   */
  constructor(native: Native, entries: number, completions: number) {
    this.#native = native;
    const { libc } = native;
    const params = new Uint32Array(30);
    params[0] = 0;
    params[1] = completions;
    params[2] = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
      IORING_SETUP_DEFER_TASKRUN;
    const fd = libc.io_uring_setup(SYS_IO_URING_SETUP, entries, params);
    if (fd < 0) throw new Error(`io_uring_setup: ${errnoText(native.errno())}`);
    this.#fd = fd;
    const features = params[5];
    const needed = IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP |
      IORING_FEAT_EXT_ARG;
    if ((features & needed) !== needed) {
      libc.close(fd);
      throw new Error("io_uring: this kernel is too old (Linux 6.1 needed)");
    }
    const sqEntries = params[0];
    const cqEntries = params[1];
    const sq = params.subarray(10, 20);
    const cq = params.subarray(20, 30);
    // One mapping holds both queues (FEAT_SINGLE_MMAP): the submission
    // queue's index array ends it, or the completions do.
    this.#ringsSize = Math.max(sq[6] + sqEntries * 4, cq[5] + cqEntries * 16);
    this.#sqesSize = sqEntries * 64;
    const rings = libc.mmap(
      null,
      BigInt(this.#ringsSize),
      PROT_READ_WRITE,
      MAP_SHARED_POPULATE,
      fd,
      0n,
    );
    const sqes = libc.mmap(
      null,
      BigInt(this.#sqesSize),
      PROT_READ_WRITE,
      MAP_SHARED_POPULATE,
      fd,
      IORING_OFF_SQES,
    );
    // mmap() fails with MAP_FAILED, (void *) -1.
    const failed = (p: Deno.PointerValue) =>
      p === null || Deno.UnsafePointer.value(p) === 0xffffffffffffffffn;
    if (failed(rings) || failed(sqes)) {
      const why = errnoText(native.errno());
      if (!failed(rings)) libc.munmap(rings, BigInt(this.#ringsSize));
      if (!failed(sqes)) libc.munmap(sqes, BigInt(this.#sqesSize));
      libc.close(fd);
      throw new Error(`io_uring mmap: ${why}`);
    }
    this.#rings = rings!;
    this.#sqes = sqes!;
    const q = Deno.UnsafePointerView.getArrayBuffer(rings!, this.#ringsSize);
    const e = Deno.UnsafePointerView.getArrayBuffer(sqes!, this.#sqesSize);
    this.#q = new Uint32Array(q);
    this.#qi = new Int32Array(q);
    this.#sqe = new Uint32Array(e);
    this.#sqTail = sq[1] / 4;
    this.#sqMask = this.#q[sq[2] / 4];
    this.#sqEntries = sqEntries;
    this.#cqHead = cq[0] / 4;
    this.#cqTail = cq[1] / 4;
    this.#cqMask = this.#q[cq[2] / 4];
    this.#cqes = cq[5] / 4;
    this.#tail = this.#q[this.#sqTail];
    // Entry i of the submission queue is always SQE i.
    const array = sq[6] / 4;
    for (let i = 0; i < sqEntries; i++) this.#q[array + i] = i;
    this.#arg[4] = this.#timespec.address % 2 ** 32;
    this.#arg[5] = Math.floor(this.#timespec.address / 2 ** 32);
  }

  /**
   * Queues an operation: `op` on `fd` over `length` bytes at `address`,
   * with `flags` (MSG_* for send and recv) and `offset` (a connect's
   * address length; 0 otherwise); `userData` comes back with its result.
   */
  prep(
    op: number,
    fd: number,
    address: number,
    length: number,
    flags: number,
    userData: number,
    offset = 0,
  ): void {
    if (this.#pending === this.#sqEntries) this.#enter(0, 0);
    const i = (this.#tail & this.#sqMask) * 16;
    const sqe = this.#sqe;
    sqe[i] = op; // The opcode; flags and ioprio 0.
    sqe[i + 1] = fd;
    sqe[i + 2] = offset;
    sqe[i + 3] = 0;
    sqe[i + 4] = address % 2 ** 32;
    sqe[i + 5] = Math.floor(address / 2 ** 32);
    sqe[i + 6] = length;
    sqe[i + 7] = flags;
    sqe[i + 8] = userData;
    sqe[i + 9] = 0;
    sqe[i + 10] = 0;
    sqe[i + 11] = 0;
    sqe[i + 12] = 0;
    sqe[i + 13] = 0;
    sqe[i + 14] = 0;
    sqe[i + 15] = 0;
    this.#tail = (this.#tail + 1) >>> 0;
    this.#pending++;
  }

  /**
   * Submits what is queued and waits until at least one result is in, or
   * `timeoutMs` has passed (-1: no limit). Then {@linkcode Ring.head} to
   * {@linkcode Ring.tail} are the results to read; mark them read with
   * {@linkcode Ring.consume}.
   */
  wait(timeoutMs: number): void {
    if (timeoutMs < 0) return this.#enter(1, IORING_ENTER_GETEVENTS);
    const ns = Math.round(timeoutMs * 1e6);
    const words = this.#timespecWords;
    words[0] = Math.floor(ns / 1e9);
    words[1] = 0;
    words[2] = ns % 1e9;
    words[3] = 0;
    this.#enter(1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG);
  }

  #enter(min: number, flags: number): void {
    this.#q[this.#sqTail] = this.#tail;
    const ext = (flags & IORING_ENTER_EXT_ARG) !== 0;
    const n = this.#native.libc.io_uring_enter(
      SYS_IO_URING_ENTER,
      this.#fd,
      this.#pending,
      min,
      flags,
      ext ? this.#argBytes : this.#nothing,
      ext ? 24n : 0n,
    );
    if (n >= 0) {
      this.#pending -= n;
      return;
    }
    const errno = this.#native.errno();
    // Timed out, or a signal: the caller looks at the clock and the queue.
    if (errno === ETIME || errno === EINTR) return;
    throw new Error(`io_uring_enter: ${errnoText(errno)}`);
  }

  /** Submits what is queued, without waiting. */
  submit(): void {
    if (this.#pending > 0) this.#enter(0, 0);
  }

  /** The first result not read yet. */
  get head(): number {
    return this.#q[this.#cqHead];
  }

  /** One past the last result in. */
  get tail(): number {
    return this.#q[this.#cqTail];
  }

  /** The user data of result `at` (from head to tail). */
  userData(at: number): number {
    return this.#q[this.#cqes + (at & this.#cqMask) * 4];
  }

  /** The result of result `at`: a count, or -errno. */
  result(at: number): number {
    return this.#qi[this.#cqes + (at & this.#cqMask) * 4 + 2];
  }

  /** Results up to `at` (not included) are read: their room is free. */
  consume(at: number): void {
    this.#q[this.#cqHead] = at >>> 0;
  }

  /**
   * Closes the ring; the kernel cancels what is still in flight and lets
   * go of its files.
   */
  close(): void {
    const { libc } = this.#native;
    libc.munmap(this.#sqes, BigInt(this.#sqesSize));
    libc.munmap(this.#rings, BigInt(this.#ringsSize));
    libc.close(this.#fd);
  }
}

/** Whether this kernel lets us use io_uring, and if not, why. */
export function ioUringSupport(native: Native): string | undefined {
  try {
    new Ring(native, 2, 4).close();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
