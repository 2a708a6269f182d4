// Private: a WebSocket a client opened, as the Deno.Conn the engine serves,
// over the TCP (or TLS) connection it was upgraded on. It reads the socket
// only when the engine reads, so a client that sends faster than it reads
// is held back by TCP as a TCP client is; the frames read (FrameReader)
// give the bytes the mode reads through a framing (lib/websocket/
// framing.ts), and the bytes it writes go out as messages. Pings get their
// pongs; a close is answered with its own code and reason once the engine
// has finished writing (echo mode echoes everything first), and a frame
// that breaks the protocol is closed with 1002 or 1007, one over the limit
// with 1009. Closing waits, for a while, for the client's answer to the
// close frame and its end of stream, so that nothing sent is lost to a
// reset. Not exported from mod.ts.

import { readableOf, writableOf, writeAll } from "../_helpers.ts";
import { lingeringClose } from "./linger.ts";
import type { Framing, WsMessage } from "./framing.ts";
import {
  CLOSE_NORMAL,
  CLOSE_TOO_BIG,
  closePayload,
  encodeFrames,
  type FrameEvent,
  FrameReader,
  OP_BINARY,
  OP_CLOSE,
  OP_PONG,
  OP_TEXT,
} from "./frames.ts";

export { CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN } from "./frames.ts";

const READ_BUFFER = 64 * 1024;

/** What a WebSocketConn is made with, besides its socket. */
export interface WebSocketConnOptions {
  framing: Framing;
  /** The client, as the server believes it (X-Forwarded-For). */
  remoteAddr: Deno.Addr;
  maxMessageBytes: number;
  /** Bytes read past the upgrade request: the first frames. */
  rest: Uint8Array;
  /** Told of each close, which is over once `done` resolves. */
  closing(done: Promise<void>): void;
}

/** What reading a closed connection throws, as Deno's TCP does. */
function closedError(): Error {
  return new Deno.errors.BadResource("The WebSocket connection is closed");
}

/** A WebSocket a client opened, as the engine's connection. */
export class WebSocketConn implements Deno.Conn {
  readonly remoteAddr: Deno.Addr;
  #socket: Deno.Conn;
  #framing: Framing;
  #reader: FrameReader;
  #closing: (done: Promise<void>) => void;
  #buffer = new Uint8Array(READ_BUFFER);
  /** Bytes of messages received that the engine has not read yet. */
  #unread: Uint8Array | undefined;
  /** The socket's read in flight, if any. */
  #reading: Promise<number | null> | undefined;
  /** Sends, one after another, whole frames each. */
  #sending: Promise<void> = Promise.resolve();
  /** The client's close frame, once it came. */
  #closeReceived: { code: number | undefined; reason: string } | undefined;
  #closeSent = false;
  /** No more messages: a close came, the protocol broke, or the socket ended. */
  #ended = false;
  #closed = false;
  /** Rejects once this conn closes: a read waiting fails, as on TCP. */
  #stopped = Promise.withResolvers<never>();
  #endedBy: string | undefined;

  constructor(socket: Deno.Conn, options: WebSocketConnOptions) {
    this.#socket = socket;
    this.remoteAddr = options.remoteAddr;
    this.#framing = options.framing;
    this.#reader = new FrameReader(options.maxMessageBytes);
    this.#reader.push(options.rest);
    this.#closing = options.closing;
    this.#stopped.promise.catch(() => {}); // Seen by the reads it ends.
  }

  get localAddr(): Deno.Addr {
    return this.#socket.localAddr;
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (true) {
      const unread = this.#unread;
      if (unread !== undefined) {
        const n = Math.min(p.length, unread.length);
        p.set(unread.subarray(0, n));
        this.#unread = n < unread.length ? unread.subarray(n) : undefined;
        return n;
      }
      if (this.#closed) throw closedError();
      if (this.#ended) return null;
      const event = this.#reader.next();
      if (event !== undefined) {
        this.#received(event);
        continue;
      }
      const n = await this.#readSocket();
      if (n === null) {
        // The client ended its stream without a close frame (1006).
        this.#ended = true;
        return null;
      }
      this.#reader.push(this.#buffer.subarray(0, n));
    }
  }

  /** A read of the socket; it fails once this conn closes. */
  #readSocket(): Promise<number | null> {
    const reading = this.#socket.read(this.#buffer);
    this.#reading = reading;
    reading.catch(() => {}).finally(() => {
      if (this.#reading === reading) this.#reading = undefined;
    });
    return Promise.race([reading, this.#stopped.promise]);
  }

  #received(event: FrameEvent): void {
    switch (event.kind) {
      case "message": {
        const bytes = this.#framing.received(event.bytes, event.text);
        if (bytes.length > 0) this.#unread = bytes;
        // An empty message has no bytes to be echoed by: its echo goes
        // now, or once the messages before it have been echoed.
        else this.#sendMessages(this.#framing.sent(bytes)).catch(() => {});
        return;
      }
      case "ping":
        if (!this.#closeSent) {
          this.#send(
            encodeFrames([{ opcode: OP_PONG, payload: event.payload }]),
          )
            .catch(() => {});
        }
        return;
      case "pong":
        return;
      case "close":
        this.#closeReceived = { code: event.code, reason: event.reason };
        this.#ended = true;
        return;
      case "fail":
        this.#endedBy = event.code === CLOSE_TOO_BIG
          ? "message too big"
          : "protocol error";
        this.#ended = true;
        this.#sendClose(event.code, event.reason).catch(() => {});
    }
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closeSent || this.#closed) {
      throw new Deno.errors.BrokenPipe("The WebSocket is closed");
    }
    await this.#sendMessages(this.#framing.sent(p));
    return p.length;
  }

  #sendMessages(messages: WsMessage[]): Promise<void> {
    if (messages.length === 0) return Promise.resolve();
    return this.#send(encodeFrames(messages.map(({ text, bytes }) => ({
      opcode: text ? OP_TEXT : OP_BINARY,
      payload: bytes,
    }))));
  }

  /** Sends `bytes` after whatever is being sent. */
  #send(bytes: Uint8Array): Promise<void> {
    const sent = this.#sending.then(() => writeAll(this.#socket, bytes));
    this.#sending = sent.catch(() => {});
    return sent;
  }

  /** Sends a close frame, once. */
  #sendClose(code: number | undefined, reason: string): Promise<void> {
    if (this.#closeSent) return this.#sending;
    this.#closeSent = true;
    return this.#send(
      encodeFrames([{ opcode: OP_CLOSE, payload: closePayload(code, reason) }]),
    );
  }

  /**
   * The end of what the server sends: a close frame, with the client's
   * code and reason when it closed first (1000 otherwise).
   */
  closeWrite(): Promise<void> {
    const received = this.#closeReceived;
    return received === undefined
      ? this.#sendClose(CLOSE_NORMAL, "")
      : this.#sendClose(received.code, received.reason);
  }

  close(): void {
    if (this.#closed) return;
    this.closeWrite().catch(() => {});
    this.#closed = true;
    this.#stopped.reject(closedError());
    // Once the close frame is sent; the client answers with its own.
    this.#closing(
      lingeringClose(this.#socket, {
        after: this.#sending,
        reading: this.#reading,
      }),
    );
  }

  /** Closes with `code` and `reason` (a client turned away, say). */
  closeWith(code: number, reason: string): void {
    this.#sendClose(code, reason).catch(() => {});
    this.close();
  }

  /** Why it ended when this side ended it (too big, a protocol error). */
  endedBy(): string | undefined {
    return this.#endedBy;
  }

  ref(): void {
    this.#socket.ref();
  }

  unref(): void {
    this.#socket.unref();
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return readableOf(this);
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return writableOf(this);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
