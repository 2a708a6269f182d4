// Private: a WebSocket upgraded by Deno.serve, as the Deno.Conn the engine
// serves: the messages received become the bytes it reads and the bytes it
// writes become messages, through a framing (lib/websocket/framing.ts).
// Deno's server WebSocket cannot pause its reads and says nothing when its
// send buffer drains, so a write waits while more than HIGH_WATER bytes
// are unsent (looking again every DRAIN_CHECK_MS), and a client whose
// unread messages pile up past a bound is closed (1008), as a TCP client
// that stops reading is dropped. Not exported from mod.ts.

import { type Framing, messageBytes, type WsMessage } from "./framing.ts";

/** Unsent bytes above which a write waits. */
export const HIGH_WATER = 1 << 20;
/** How often a waiting write looks at the send buffer again. */
const DRAIN_CHECK_MS = 5;

/** Close codes (RFC 6455, 7.4.1). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_POLICY = 1008;
export const CLOSE_TOO_BIG = 1009;

/** How a WebSocket connection ended, for the engine's log and counters. */
export interface WsEnding {
  code: number;
  reason: string;
}

/** A WebSocket as a byte stream. */
export class WebSocketConn implements Deno.Conn {
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;
  #socket: WebSocket;
  #framing: Framing;
  #maxMessageBytes: number;
  #maxUnread: number;
  #unread: Uint8Array[] = [];
  #unreadBytes = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  #endedBy: string | undefined;

  constructor(
    socket: WebSocket,
    framing: Framing,
    addrs: { local: Deno.NetAddr; remote: Deno.NetAddr },
    maxMessageBytes: number,
  ) {
    this.#socket = socket;
    this.#framing = framing;
    this.localAddr = addrs.local;
    this.remoteAddr = addrs.remote;
    this.#maxMessageBytes = maxMessageBytes;
    this.#maxUnread = HIGH_WATER + maxMessageBytes;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("message", (event) => this.#received(event.data));
    socket.addEventListener("close", () => this.#end());
    // Deno's server ends a WebSocket that breaks the protocol (a reserved
    // opcode or bit, text that is not UTF-8) with an error, and no close
    // frame.
    socket.addEventListener("error", () => {
      this.#endedBy ??= "protocol error";
      this.#end();
    });
  }

  #received(data: string | ArrayBuffer): void {
    if (this.#ended) return;
    const message: WsMessage = typeof data === "string"
      ? data
      : new Uint8Array(data);
    const size = typeof message === "string"
      ? messageBytes(message).length
      : message.length;
    if (size > this.#maxMessageBytes) {
      return this.#closeWith(
        CLOSE_TOO_BIG,
        `message too big: ${size} bytes, the limit is ${this.#maxMessageBytes}`,
        "message too big",
      );
    }
    if (this.#unreadBytes + size > this.#maxUnread) {
      // As a TCP client whose queue fills is dropped.
      return this.#closeWith(
        CLOSE_POLICY,
        "not reading what it is sent",
        "send queue full",
      );
    }
    const bytes = this.#framing.received(message);
    if (bytes.length === 0) return;
    this.#unread.push(bytes);
    this.#unreadBytes += bytes.length;
    this.#wake?.();
  }

  /**
   * Closes with `code` and `reason`; the connection ended as `ending` says
   * (in lib/core/endings.ts's words).
   */
  #closeWith(code: number, reason: string, ending: string): void {
    this.#endedBy = ending;
    this.#close(code, reason);
    this.#end();
  }

  #end(): void {
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

  async write(p: Uint8Array): Promise<number> {
    const socket = this.#socket;
    if (socket.readyState !== WebSocket.OPEN) {
      throw new Deno.errors.BrokenPipe("The WebSocket is closed");
    }
    for (const message of this.#framing.sent(p)) socket.send(message);
    while (socket.bufferedAmount > HIGH_WATER) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_CHECK_MS));
      if (socket.readyState !== WebSocket.OPEN) {
        throw new Deno.errors.BrokenPipe("The WebSocket is closed");
      }
    }
    return p.length;
  }

  /** The end of what the server sends: a close frame (1000). */
  closeWrite(): Promise<void> {
    this.#close(CLOSE_NORMAL, "");
    return Promise.resolve();
  }

  close(): void {
    this.#close(CLOSE_NORMAL, "");
    this.#end();
  }

  #close(code: number, reason: string): void {
    const state = this.#socket.readyState;
    if (state === WebSocket.CLOSING || state === WebSocket.CLOSED) return;
    try {
      this.#socket.close(code, reason);
    } catch {
      // Closed already.
    }
  }

  /** Closes with `code` and `reason` (a client turned away). */
  closeWith(code: number, reason: string): void {
    this.#close(code, reason);
    this.#end();
  }

  /** Why it ended when this side ended it (too big, not reading). */
  endedBy(): string | undefined {
    return this.#endedBy;
  }

  ref(): void {}
  unref(): void {}

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    const buffer = new Uint8Array(64 * 1024);
    return new ReadableStream({
      pull: async (controller) => {
        const n = await this.read(buffer);
        if (n === null) controller.close();
        else controller.enqueue(buffer.slice(0, n));
      },
    });
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return new WritableStream({
      write: async (chunk) => void await this.write(chunk),
      close: () => this.closeWrite(),
    });
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
