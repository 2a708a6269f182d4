// Private: the client's WebSocket (lib/client/websocket.ts, over Deno's
// WebSocket) as a Deno.Conn: its messages queued as the bytes read, the end
// of stream once it closes, and writes that wait while the socket holds
// more than HIGH_WATER unsent bytes. Deno's WebSocket says nothing when its
// send buffer drains, so a waiting write looks again every DRAIN_CHECK_MS.
// Not exported from mod.ts.

import { readableOf, writableOf } from "../_helpers.ts";

/** Unsent bytes above which a write waits. */
export const HIGH_WATER = 1 << 20;
/** How often a waiting write looks at the send buffer again. */
const DRAIN_CHECK_MS = 5;

/** A WebSocket as a byte stream; a subclass sends and closes. */
export abstract class SocketConn implements Deno.Conn {
  abstract readonly localAddr: Deno.NetAddr;
  abstract readonly remoteAddr: Deno.NetAddr;
  protected readonly socket: WebSocket;
  #unread: Uint8Array[] = [];
  #unreadBytes = 0;
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(socket: WebSocket) {
    this.socket = socket;
    socket.binaryType = "arraybuffer";
  }

  /** Bytes received and not read yet. */
  protected get unreadBytes(): number {
    return this.#unreadBytes;
  }

  /** Whether the stream has ended (closed, failed, or ended here). */
  protected get ended(): boolean {
    return this.#ended;
  }

  /** Queues `bytes` for the reader. */
  protected push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#unread.push(bytes);
    this.#unreadBytes += bytes.length;
    this.#wake?.();
  }

  /** The end of stream: the reader gets null once the queue is read. */
  protected end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#unread.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const first = this.#unread[0];
    const n = Math.min(p.length, first.length);
    p.set(first.subarray(0, n));
    if (n === first.length) this.#unread.shift();
    else this.#unread[0] = first.subarray(n);
    this.#unreadBytes -= n;
    return n;
  }

  /** Throws unless the socket is open for sending. */
  protected assertOpen(): void {
    if (this.socket.readyState !== WebSocket.OPEN) {
      throw new Deno.errors.BrokenPipe("The WebSocket is closed");
    }
  }

  /** Resolves once the socket holds at most HIGH_WATER unsent bytes. */
  protected async drained(): Promise<void> {
    while (this.socket.bufferedAmount > HIGH_WATER) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_CHECK_MS));
      this.assertOpen();
    }
  }

  /** Sends a close frame, unless one is on its way already. */
  protected closeSocket(code: number, reason = ""): void {
    const state = this.socket.readyState;
    if (state === WebSocket.CLOSING || state === WebSocket.CLOSED) return;
    try {
      this.socket.close(code, reason);
    } catch {
      // Closed already.
    }
  }

  abstract write(p: Uint8Array): Promise<number>;
  abstract closeWrite(): Promise<void>;
  abstract close(): void;

  ref(): void {}
  unref(): void {}

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
