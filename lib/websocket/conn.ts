// Private: a WebSocket upgraded by Deno.serve, as the Deno.Conn the engine
// serves: the messages received become the bytes it reads and the bytes it
// writes become messages, through a framing (lib/websocket/framing.ts).
// Deno's server WebSocket cannot pause its reads, so a client whose unread
// messages pile up past a bound is closed (1008), as a TCP client that
// stops reading is dropped; a message over the limit is closed with 1009.
// Not exported from mod.ts.

import type { Framing } from "./framing.ts";
import { HIGH_WATER, SocketConn } from "./socket_conn.ts";

const encoder = new TextEncoder();

/** Close codes (RFC 6455, 7.4.1). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_POLICY = 1008;
export const CLOSE_TOO_BIG = 1009;

/** A WebSocket a client opened, as the engine's connection. */
export class WebSocketConn extends SocketConn {
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;
  #framing: Framing;
  #maxMessageBytes: number;
  #maxUnread: number;
  #endedBy: string | undefined;

  constructor(
    socket: WebSocket,
    framing: Framing,
    addrs: { local: Deno.NetAddr; remote: Deno.NetAddr },
    maxMessageBytes: number,
  ) {
    super(socket);
    this.#framing = framing;
    this.localAddr = addrs.local;
    this.remoteAddr = addrs.remote;
    this.#maxMessageBytes = maxMessageBytes;
    this.#maxUnread = HIGH_WATER + maxMessageBytes;
    socket.addEventListener("message", (event) => this.#received(event.data));
    socket.addEventListener("close", () => this.end());
    // Deno's server ends a WebSocket that breaks the protocol (a reserved
    // opcode or bit, text that is not UTF-8) with an error, and no close
    // frame.
    socket.addEventListener("error", () => {
      this.#endedBy ??= "protocol error";
      this.end();
    });
  }

  #received(data: string | ArrayBuffer): void {
    if (this.ended) return;
    const text = typeof data === "string";
    // Text is encoded once: its size is its UTF-8 bytes'.
    const message = text ? encoder.encode(data) : new Uint8Array(data);
    const size = message.length;
    if (size > this.#maxMessageBytes) {
      return this.#closeWith(
        CLOSE_TOO_BIG,
        `message too big: ${size} bytes, the limit is ${this.#maxMessageBytes}`,
        "message too big",
      );
    }
    if (this.unreadBytes + size > this.#maxUnread) {
      // As a TCP client whose queue fills is dropped.
      return this.#closeWith(
        CLOSE_POLICY,
        "not reading what it is sent",
        "send queue full",
      );
    }
    const bytes = this.#framing.received(message, text);
    if (bytes.length > 0) return this.push(bytes);
    // An empty message has no bytes to be echoed by: its echo goes now, or
    // once the messages before it have been echoed.
    if (this.socket.readyState !== WebSocket.OPEN) return;
    for (const echo of this.#framing.sent(bytes)) this.socket.send(echo);
  }

  /**
   * Closes with `code` and `reason`; the connection ended as `ending` says
   * (in lib/core/endings.ts's words).
   */
  #closeWith(code: number, reason: string, ending: string): void {
    this.#endedBy = ending;
    this.closeWith(code, reason);
  }

  async write(p: Uint8Array): Promise<number> {
    this.assertOpen();
    for (const message of this.#framing.sent(p)) this.socket.send(message);
    await this.drained();
    return p.length;
  }

  /** The end of what the server sends: a close frame (1000). */
  closeWrite(): Promise<void> {
    this.closeSocket(CLOSE_NORMAL);
    return Promise.resolve();
  }

  close(): void {
    this.closeWith(CLOSE_NORMAL, "");
  }

  /** Closes with `code` and `reason` (a client turned away, say). */
  closeWith(code: number, reason: string): void {
    this.closeSocket(code, reason);
    this.end();
  }

  /** Why it ended when this side ended it (too big, not reading). */
  endedBy(): string | undefined {
    return this.#endedBy;
  }
}
