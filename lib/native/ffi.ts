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
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_REUSEPORT = 15;
export const SO_ERROR = 4;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const SHUT_WR = 1;
export const MSG_NOSIGNAL = 0x4000;
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
export const ENOBUFS = 105;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const EACCES = 13;
export const EINPROGRESS = 115;
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM: operation not permitted",
  4: "EINTR: interrupted system call",
  9: "EBADF: bad file descriptor",
  11: "EAGAIN: resource temporarily unavailable",
  12: "ENOMEM: out of memory",
  13: "EACCES: permission denied",
  22: "EINVAL: invalid argument",
  23: "ENFILE: too many open files in system",
  24: "EMFILE: too many open files",
  32: "EPIPE: broken pipe",
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
};

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
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
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
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  inet_pton: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  inet_ntop: {
    parameters: ["i32", "buffer", "buffer", "u32"],
    result: "pointer",
  },
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
