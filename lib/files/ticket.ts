// Private: what lets a chat client onto the file listener: a ticket for one
// side of one transfer (send, or get, the bytes of an offer from an offset
// to its size, until a moment), signed by the server so that the listener
// checks it without keeping any state, on any instance of a cluster that
// shares the secret. The first line of a transfer connection carries it.
// Free of I/O. Not exported from mod.ts.

import { createHmac, timingSafeEqual } from "node:crypto";

/** The sender's connection puts the bytes; the receiver's gets them. */
export type Side = "put" | "get";

/** One side of one attempt at a transfer, as its ticket says. */
export interface Transfer {
  /** The offer's id (`f1`). */
  id: string;
  /** Which `/accept` of the offer this is (resumes count up). */
  attempt: number;
  side: Side;
  /** The first byte sent. */
  offset: number;
  /** The file's size: the last byte sent is `size - 1`. */
  size: number;
  /** Until when (milliseconds since the epoch) the ticket lets one in. */
  until: number;
}

/** What chat gives a side of a transfer: where to go, and its ticket. */
export interface Ticket {
  port: number;
  until: number;
  token: string;
}

/** The first word of a transfer connection's first line. */
export const PREFACE = "tcp-echo-file/1";
/** The longest first line a transfer connection may send. */
export const MAX_PREFACE_BYTES = 256;
/** How long a ticket lets its holder in. */
export const TICKET_MS = 10 * 60_000;

const ID = /^f[1-9]\d{0,15}$/;
const NUMBER = /^(0|[1-9]\d{0,15})$/;

/** Whether `id` may be an offer's id. */
export function isOfferId(id: string): boolean {
  return ID.test(id);
}

/** The fields a ticket signs, in order. */
function fieldsOf(t: Transfer): string {
  return [t.id, t.attempt, t.side, t.offset, t.size, t.until].join(" ");
}

/** The token of `transfer`: 128 bits of HMAC-SHA-256 under `secret`. */
export function sign(secret: Uint8Array, transfer: Transfer): string {
  return createHmac("sha256", secret).update(fieldsOf(transfer)).digest(
    "base64url",
  ).slice(0, 22);
}

/** The first line a client sends for `transfer` (without its newline). */
export function prefaceOf(transfer: Transfer, token: string): string {
  return `${PREFACE} ${fieldsOf(transfer)} ${token}`;
}

/**
 * A transfer connection's first line (without its newline) read: the
 * transfer and its token, or why not.
 */
export function parsePreface(
  line: string,
): { transfer: Transfer; token: string } | { error: string } {
  const words = line.split(" ");
  if (words[0] !== PREFACE) return { error: "not a file transfer" };
  if (words.length !== 8) return { error: "a malformed ticket" };
  const [, id, attempt, side, offset, size, until, token] = words;
  if (
    !ID.test(id) || !NUMBER.test(attempt) || (side !== "put" &&
      side !== "get") ||
    !NUMBER.test(offset) || !NUMBER.test(size) || !NUMBER.test(until) ||
    !/^[A-Za-z0-9_-]{22}$/.test(token)
  ) {
    return { error: "a malformed ticket" };
  }
  const transfer: Transfer = {
    id,
    attempt: Number(attempt),
    side,
    offset: Number(offset),
    size: Number(size),
    until: Number(until),
  };
  if (transfer.offset > transfer.size) {
    return { error: "a malformed ticket" };
  }
  return { transfer, token };
}

/** Why `token` does not let `transfer` in at `now`; undefined if it does. */
export function refusal(
  secret: Uint8Array,
  transfer: Transfer,
  token: string,
  now: number,
): string | undefined {
  const expected = new TextEncoder().encode(sign(secret, transfer));
  const given = new TextEncoder().encode(token);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return "a ticket this server did not sign";
  }
  if (now > transfer.until) return "an expired ticket: /accept again";
  return undefined;
}
