// Private: what every engine's connections and server handles share about
// their lifecycle, written once and free of I/O, whichever driver moves the
// bytes (Deno's sockets in lib/server/, libc in lib/native/). Not exported
// from mod.ts.

import type { Ending } from "./endings.ts";
import type { Member } from "../relay/relay.ts";

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

/** What a polite shutdown needs of one listener (see drainPolitely). */
export interface Draining {
  gracePeriod: number;
  /** Connections open on it now. */
  active: number;
  /** Closes the listener: no new connections. */
  stopAccepting(): void;
  /** Ends every connection politely, for `reason`. */
  finishAll(reason: Ending): void;
  /** Broadcast and chat: the relay, and which members are this listener's. */
  relay?: {
    announce(
      text: string,
      only: (member: Member) => boolean,
      last: boolean,
    ): Promise<void>;
  };
  ours(member: Member): boolean;
  /** Resolves once every connection has ended. */
  finished: Promise<void>;
}

/**
 * A listener's polite shutdown, the same on every driver: accepting stops;
 * connections go on until they end or the grace period is over (then each
 * ends politely); relay clients, which never end by themselves, are told
 * `[server] shutting down` as their last line, then ended once it is sent.
 */
export async function drainPolitely(d: Draining): Promise<void> {
  d.stopAccepting();
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (d.active > 0 && d.gracePeriod !== Infinity) {
    timer = setTimeout(() => d.finishAll("grace period over"), d.gracePeriod);
  }
  try {
    if (d.relay !== undefined && d.active > 0) {
      await d.relay.announce("shutting down", d.ours, true);
      d.finishAll("server shutting down");
    }
    await d.finished;
  } finally {
    clearTimeout(timer);
  }
}
