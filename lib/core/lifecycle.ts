// Private: what every engine's connections and server handles share about
// their lifecycle, written once and free of I/O, whichever driver moves the
// bytes (Deno's sockets in lib/server/, libc in lib/native/). Not exported
// from mod.ts.

/**
 * How long a connection the server ends politely (`exit`, a line too long,
 * `/quit`, a shutdown) waits for what is in flight to be sent and for the
 * client to close its side before closing anyway. Reading until the client
 * closes keeps the kernel from answering late bytes with a reset, which
 * would destroy what was sent before the client reads it.
 */
export const LINGER_MS = 1000;

/**
 * Throws the `TypeError` every server handle's `announce` gives for a
 * message that is not one line.
 */
export function assertAnnouncement(message: string): void {
  if (/[\r\n]/.test(message)) {
    throw new TypeError("Cannot announce: the message contains a line break");
  }
}

/**
 * The `accept()` errors (by code name, as Deno and `errno` name them) that
 * say the process or the system ran out of something (descriptors,
 * buffers, memory): accepting again at once would fail the same way, so the
 * accept loop backs off. Every other error belongs to the one connection
 * being accepted (most often a client that reset while it waited in the
 * queue: ENOTCONN, ECONNABORTED, ECONNRESET), and the loop accepts the next
 * one at once.
 */
const EXHAUSTION: ReadonlySet<string> = new Set([
  "EMFILE",
  "ENFILE",
  "ENOBUFS",
  "ENOMEM",
]);

/** Whether an accept() that failed with `code` should back off. */
export function acceptExhausted(code: string | undefined): boolean {
  return code !== undefined && EXHAUSTION.has(code);
}
