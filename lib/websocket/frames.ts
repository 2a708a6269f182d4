// Private: RFC 6455 frames, free of I/O. A FrameReader takes the bytes a
// client sends, cut anywhere, and gives what they make as a server must
// read them (masked, no extension agreed), or a server's bytes as a client
// must (unmasked): messages whole (fragments joined, text checked to be
// UTF-8), pings, pongs, the close, or the first break of the protocol with
// the close code it calls for (1002, 1007, or 1009 for a message over the
// limit, said as soon as a frame's header shows it). encodeFrames makes
// what a server sends, or, masked, what a client sends. Not exported from
// mod.ts.

import { join } from "../_lines.ts";
import { ByteQueue } from "./byte_queue.ts";

/** Opcodes (RFC 6455, 5.2). */
export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/** Close codes (RFC 6455, 7.4.1). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_INVALID_DATA = 1007;
export const CLOSE_POLICY = 1008;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_TRY_AGAIN = 1013;

/** What the bytes received make, one at a time. */
export type FrameEvent =
  | { kind: "message"; text: boolean; bytes: Uint8Array }
  | { kind: "ping"; payload: Uint8Array }
  | { kind: "pong" }
  /** `code` is undefined when the close frame had none (1005). */
  | { kind: "close"; code: number | undefined; reason: string }
  /** The protocol was broken: close with `code` and `reason`. */
  | { kind: "fail"; code: number; reason: string };

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Whether `bytes` are UTF-8. */
export function isUtf8(bytes: Uint8Array): boolean {
  // Short ASCII, the common case, is looked at here; the rest decoded.
  if (bytes.length <= 256) {
    let high = 0;
    for (let i = 0; i < bytes.length; i++) high |= bytes[i];
    if (high < 0x80) return true;
  }
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** A close code a peer may send in a close frame (RFC 6455, 7.4). */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * Reads a client's frames from its bytes (or, made with `from: "server"`,
 * a server's), in whatever pieces they come.
 */
export class FrameReader {
  #maxMessageBytes: number;
  /** Whether frames come masked: from a client. */
  #masked: boolean;
  #received = new ByteQueue();
  /** The fragments of a message not finished yet, and whether it is text. */
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #fragmentText: boolean | undefined;
  #failed = false;

  /** A message (all its fragments) over `maxMessageBytes` fails with 1009. */
  constructor(
    maxMessageBytes: number,
    from: "client" | "server" = "client",
  ) {
    this.#maxMessageBytes = maxMessageBytes;
    this.#masked = from === "client";
  }

  /** Bytes held that make no event yet (a frame not complete). */
  get buffered(): number {
    return this.#received.length + this.#fragmentBytes;
  }

  /** Takes bytes received; they are copied (the buffer may be reused). */
  push(bytes: Uint8Array): void {
    if (!this.#failed) this.#received.push(bytes);
  }

  /**
   * The next event the bytes received make, or undefined until more come.
   * After a `fail`, nothing more.
   */
  next(): FrameEvent | undefined {
    while (!this.#failed) {
      const head = this.#received.peek(2);
      if (head === undefined) return undefined;
      const fin = (head[0] & 0x80) !== 0;
      const opcode = head[0] & 0x0f;
      if ((head[0] & 0x70) !== 0) {
        return this.#fail(
          CLOSE_PROTOCOL_ERROR,
          "reserved bits set, and no extension was agreed",
        );
      }
      if ((head[1] & 0x80) === 0 && this.#masked) {
        return this.#fail(
          CLOSE_PROTOCOL_ERROR,
          "an unmasked frame: a client must mask what it sends",
        );
      }
      if ((head[1] & 0x80) !== 0 && !this.#masked) {
        return this.#fail(
          CLOSE_PROTOCOL_ERROR,
          "a masked frame: a server must not mask what it sends",
        );
      }
      let length = head[1] & 0x7f;
      let at = 2;
      if (length === 126) {
        const long = this.#received.peek(4);
        if (long === undefined) return undefined;
        length = (long[2] << 8) | long[3];
        at = 4;
      } else if (length === 127) {
        const long = this.#received.peek(10);
        if (long === undefined) return undefined;
        const view = new DataView(long.buffer, long.byteOffset, 10);
        const high = view.getUint32(2);
        if (high > 0x1fffff) {
          return this.#fail(CLOSE_TOO_BIG, this.#tooBig(Infinity));
        }
        length = high * 2 ** 32 + view.getUint32(6);
        at = 10;
      }
      const problem = this.#check(opcode, fin, length);
      if (problem !== undefined) return problem;
      const keyBytes = this.#masked ? 4 : 0;
      const size = at + keyBytes + length;
      if (this.#received.length < size) return undefined;
      const frame = this.#received.take(size);
      const payload = this.#masked
        ? unmask(frame.subarray(at + 4), frame.subarray(at, at + 4))
        : frame.subarray(at);
      if (opcode >= OP_CLOSE) return this.#control(opcode, payload);
      if (opcode !== OP_CONTINUATION) this.#fragmentText = opcode === OP_TEXT;
      this.#fragments.push(payload);
      this.#fragmentBytes += length;
      if (!fin) continue;
      const text = this.#fragmentText!;
      const bytes = this.#fragments.length === 1
        ? this.#fragments[0]
        : join(this.#fragments, this.#fragmentBytes);
      this.#fragments = [];
      this.#fragmentBytes = 0;
      this.#fragmentText = undefined;
      if (text && !isUtf8(bytes)) {
        return this.#fail(
          CLOSE_INVALID_DATA,
          "a text message that is not UTF-8",
        );
      }
      return { kind: "message", text, bytes };
    }
    return undefined;
  }

  /** What is wrong with a frame's header, before its payload is read. */
  #check(opcode: number, fin: boolean, length: number): FrameEvent | undefined {
    if (opcode >= OP_CLOSE) {
      if (opcode > OP_PONG) {
        return this.#fail(CLOSE_PROTOCOL_ERROR, `reserved opcode ${opcode}`);
      }
      if (!fin) {
        return this.#fail(CLOSE_PROTOCOL_ERROR, "a fragmented control frame");
      }
      if (length > 125) {
        return this.#fail(
          CLOSE_PROTOCOL_ERROR,
          `a control frame of ${length} bytes (125 at most)`,
        );
      }
      return undefined;
    }
    if (opcode > OP_BINARY) {
      return this.#fail(CLOSE_PROTOCOL_ERROR, `reserved opcode ${opcode}`);
    }
    const continuing = this.#fragmentText !== undefined;
    if (opcode === OP_CONTINUATION && !continuing) {
      return this.#fail(
        CLOSE_PROTOCOL_ERROR,
        "a continuation frame with no message to continue",
      );
    }
    if (opcode !== OP_CONTINUATION && continuing) {
      return this.#fail(
        CLOSE_PROTOCOL_ERROR,
        "a new message before the last one's final fragment",
      );
    }
    const size = this.#fragmentBytes + length;
    if (size > this.#maxMessageBytes) {
      return this.#fail(CLOSE_TOO_BIG, this.#tooBig(size));
    }
    return undefined;
  }

  #tooBig(size: number): string {
    const bytes = size === Infinity ? "over 2^53" : `${size}`;
    return `message too big: ${bytes} bytes, the limit is ${this.#maxMessageBytes}`;
  }

  #control(opcode: number, payload: Uint8Array): FrameEvent {
    if (opcode === OP_PING) return { kind: "ping", payload };
    if (opcode === OP_PONG) return { kind: "pong" };
    if (payload.length === 0) {
      return { kind: "close", code: undefined, reason: "" };
    }
    if (payload.length === 1) {
      return this.#fail(CLOSE_PROTOCOL_ERROR, "a close frame of 1 byte");
    }
    const code = (payload[0] << 8) | payload[1];
    if (!isSendableCloseCode(code)) {
      return this.#fail(
        CLOSE_PROTOCOL_ERROR,
        `close code ${code} is not one a peer may send`,
      );
    }
    const reason = payload.subarray(2);
    if (!isUtf8(reason)) {
      return this.#fail(CLOSE_INVALID_DATA, "a close reason that is not UTF-8");
    }
    return { kind: "close", code, reason: utf8.decode(reason) };
  }

  #fail(code: number, reason: string): FrameEvent {
    this.#failed = true;
    this.#received.clear();
    this.#fragments = [];
    this.#fragmentBytes = 0;
    return { kind: "fail", code, reason };
  }
}

/** `payload` unmasked in place (the reader owns its copy). */
function unmask(payload: Uint8Array, mask: Uint8Array): Uint8Array {
  const m0 = mask[0], m1 = mask[1], m2 = mask[2], m3 = mask[3];
  const n = payload.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    payload[i] ^= m0;
    payload[i + 1] ^= m1;
    payload[i + 2] ^= m2;
    payload[i + 3] ^= m3;
  }
  for (; i < n; i++) payload[i] ^= mask[i & 3];
  return payload;
}

/** A frame to send: its opcode and payload. */
export interface OutFrame {
  opcode: number;
  payload: Uint8Array;
}

/**
 * `frames` as a server sends them (final, unmasked), in one buffer; or,
 * `masked`, as a client does, each with a key of its own from
 * crypto.getRandomValues.
 */
export function encodeFrames(
  frames: readonly OutFrame[],
  masked = false,
): Uint8Array {
  const keyBytes = masked ? 4 : 0;
  let size = 0;
  for (const { payload } of frames) {
    size += headerSize(payload.length) + keyBytes + payload.length;
  }
  const out = new Uint8Array(size);
  const keys = masked ? maskKeys(frames.length) : undefined;
  let at = 0;
  const maskBit = masked ? 0x80 : 0;
  for (let index = 0; index < frames.length; index++) {
    const { opcode, payload } = frames[index];
    const length = payload.length;
    out[at] = 0x80 | opcode;
    if (length < 126) {
      out[at + 1] = maskBit | length;
      at += 2;
    } else if (length < 65536) {
      out[at + 1] = maskBit | 126;
      out[at + 2] = length >>> 8;
      out[at + 3] = length & 0xff;
      at += 4;
    } else {
      out[at + 1] = maskBit | 127;
      const view = new DataView(out.buffer, at + 2, 8);
      view.setUint32(0, Math.floor(length / 2 ** 32));
      view.setUint32(4, length >>> 0);
      at += 10;
    }
    if (keys === undefined) out.set(payload, at);
    else {
      const key = keys.subarray(4 * index, 4 * index + 4);
      out.set(key, at);
      at += 4;
      out.set(payload, at);
      // Masking is its own inverse.
      unmask(out.subarray(at, at + length), key);
    }
    at += length;
  }
  return out;
}

/** Random bytes for masks, drawn from crypto.getRandomValues in batches. */
const keyPool = new Uint8Array(4096);
let keyAt = keyPool.length;

/** `count` masking keys, 4 bytes each, unpredictable (RFC 6455, 5.3). */
function maskKeys(count: number): Uint8Array {
  const bytes = 4 * count;
  if (bytes > keyPool.length) {
    return crypto.getRandomValues(new Uint8Array(bytes));
  }
  if (keyAt + bytes > keyPool.length) {
    crypto.getRandomValues(keyPool);
    keyAt = 0;
  }
  keyAt += bytes;
  return keyPool.subarray(keyAt - bytes, keyAt);
}

function headerSize(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

/**
 * A close frame's payload: `code` and as much of `reason` as fits in a
 * control frame (123 bytes of UTF-8, cut between characters); empty for no
 * code.
 */
export function closePayload(
  code: number | undefined,
  reason = "",
): Uint8Array {
  if (code === undefined) return new Uint8Array(0);
  let text = encoder.encode(reason);
  if (text.length > 123) {
    let cut = 123;
    while (cut > 0 && (text[cut] & 0xc0) === 0x80) cut--;
    text = text.subarray(0, cut);
  }
  const out = new Uint8Array(2 + text.length);
  out[0] = code >>> 8;
  out[1] = code & 0xff;
  out.set(text, 2);
  return out;
}
