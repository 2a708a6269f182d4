// Private: what a WebSocket's messages are to the byte streams the modes
// read and write, each way, free of I/O. Echo mode mirrors the messages:
// the bytes written back are cut where the messages received were cut, and
// go back as text or binary as they came. The line modes take each message
// as a line (or several, split on newlines) and send each line written as
// one text message. Not exported from mod.ts.

import { ByteQueue } from "./byte_queue.ts";

/** A WebSocket message: its bytes (UTF-8 when `text`). */
export interface WsMessage {
  text: boolean;
  bytes: Uint8Array;
}

/** How one WebSocket's messages become a byte stream, and back. */
export interface Framing {
  /**
   * The bytes a message received gives the mode, from its own bytes (UTF-8
   * when it was `text`).
   */
  received(bytes: Uint8Array, text: boolean): Uint8Array;
  /** The messages the bytes the mode wrote complete (the rest is kept). */
  sent(bytes: Uint8Array): WsMessage[];
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Echo mode's framing: each message received is remembered (its length,
 * and whether it was text), and the bytes written back are cut into the
 * same messages, each sent once all of its bytes are there.
 */
export function echoFraming(): Framing {
  const shapes: { text: boolean; length: number }[] = [];
  const pending = new ByteQueue();
  return {
    received(bytes, text) {
      shapes.push({ text, length: bytes.length });
      return bytes;
    },
    sent(bytes) {
      pending.push(bytes);
      const out: WsMessage[] = [];
      while (shapes.length > 0 && pending.length >= shapes[0].length) {
        const { text, length } = shapes.shift()!;
        const body = pending.take(length);
        out.push({ text, bytes: body });
      }
      return out;
    },
  };
}

/**
 * The line modes' framing: a message received is a line (a newline is
 * added unless it ends with one; one with newlines inside is several), and
 * each line written goes out as one text message, without its newline.
 */
export function lineFraming(): Framing {
  const pending = new ByteQueue();
  return {
    received(bytes) {
      if (bytes.length > 0 && bytes[bytes.length - 1] === 0x0a) return bytes;
      const line = new Uint8Array(bytes.length + 1);
      line.set(bytes);
      line[bytes.length] = 0x0a;
      return line;
    },
    sent(bytes) {
      pending.push(bytes);
      const out: WsMessage[] = [];
      for (let end = pending.indexOf(0x0a); end !== -1;) {
        const line = pending.take(end + 1);
        // A TCP client's line may not be UTF-8; a text message must be.
        const text = decoder.decode(line.subarray(0, end));
        out.push({ text: true, bytes: encoder.encode(text) });
        end = pending.indexOf(0x0a);
      }
      return out;
    },
  };
}
