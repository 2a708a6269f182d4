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
