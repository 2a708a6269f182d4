// Private: the client's side of a WebSocket (`websocket: "ws://…/ws"`), as
// the Deno.Conn every client uses, spoken over a TCP (or TLS) connection of
// its own with this project's RFC 6455 parts (lib/websocket/: the opening
// handshake, frames masked as a client's must be). Each write is one
// message (text, or binary with `websocketBinary`), done once the socket
// has taken it, so TCP holds back a client that sends faster than the
// server reads, as over TCP; the messages received are the bytes read,
// and the socket is read only when the reader reads. `closeWrite()` sends
// a close frame, WebSocket's half-close: the server answers what it still
// owes, then its own close frame, which ends the stream. Pings get their
// pongs. Not exported from mod.ts.

import { optionError, readableOf, writableOf, writeAll } from "../_helpers.ts";
import { AnswerReader, openingRequest } from "../websocket/client_handshake.ts";
import {
  CLOSE_NORMAL,
  closePayload,
  encodeFrames,
  FrameReader,
  OP_BINARY,
  OP_CLOSE,
  OP_PONG,
  OP_TEXT,
} from "../websocket/frames.ts";

/** The largest message taken from a server. */
const MAX_MESSAGE_BYTES = 1 << 30;
/** How much one read of the socket takes. */
const READ_BUFFER = 64 * 1024;

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** Checks a WebSocket URL: `ws://` or `wss://`. */
export function websocketUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw optionError(
      "websocket",
      `must be a ws:// or wss:// URL, got ${text}`,
    );
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw optionError(
      "websocket",
      `must be a ws:// or wss:// URL, got ${text}`,
    );
  }
  return url;
}

/**
 * Opens a WebSocket to `url`, trusting `caCerts` (PEM) besides the
 * system's store for `wss://`.
 *
 * @throws {Deno.errors.ConnectionRefused} It could not be opened: no
 * connection, a failed TLS handshake, or an answer that is not an upgrade.
 * @throws {unknown} `signal.reason`, when the signal aborts first.
 */
export async function openWebSocket(
  url: URL,
  binary: boolean,
  caCerts: readonly string[] | undefined,
  signal?: AbortSignal,
): Promise<Deno.Conn> {
  signal?.throwIfAborted();
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (url.protocol === "wss:" ? 443 : 80));
  let socket: Deno.TcpConn | Deno.TlsConn | undefined;
  const onAbort = () => {
    try {
      socket?.close();
    } catch {
      // startTls has it: the abort is seen once startTls returns.
    }
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const tcp = await Deno.connect({ hostname, port, signal });
    socket = tcp;
    tcp.setNoDelay(true);
    if (url.protocol === "wss:") {
      socket = await Deno.startTls(tcp, {
        hostname,
        ...(caCerts === undefined ? {} : { caCerts: [...caCerts] }),
      });
      signal?.throwIfAborted();
      await socket.handshake();
    }
    const { bytes, key } = openingRequest(url);
    await writeAll(socket, bytes);
    const answer = new AnswerReader(key);
    const buffer = new Uint8Array(READ_BUFFER);
    for (;;) {
      const n = await socket.read(buffer);
      if (n === null) {
        throw new Error("the server closed the connection before answering");
      }
      const step = answer.push(buffer.subarray(0, n));
      if (step.state === "refused") throw new Error(step.reason);
      if (step.state === "open") {
        return new WebSocketClientConn(socket, binary, step.rest);
      }
    }
  } catch (error) {
    try {
      socket?.close();
    } catch {
      // Closed by the abort, or by a failed startTls.
    }
    if (signal?.aborted) throw signal.reason;
    throw new Deno.errors.ConnectionRefused(
      `Cannot open ${url}: ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** A WebSocket as a client's byte stream (see the top). */
class WebSocketClientConn implements Deno.Conn {
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;
  #socket: Deno.TcpConn | Deno.TlsConn;
  #binary: boolean;
  #frames = new FrameReader(MAX_MESSAGE_BYTES, "server");
  #buffer = new Uint8Array(READ_BUFFER);
  #unread: Uint8Array[] = [];
  /** Read to its end: a close frame, the socket's end, or an error. */
  #ended = false;
  #error: Error | undefined;
  /** Our close frame is sent (or on its way). */
  #closeSent = false;
  #closed = false;
  /** Writes, one after another: messages, pongs, the close. */
  #writes: Promise<unknown> = Promise.resolve();
  /** Writes started and not finished. */
  #writing = 0;

  constructor(
    socket: Deno.TcpConn | Deno.TlsConn,
    binary: boolean,
    first: Uint8Array,
  ) {
    this.#socket = socket;
    this.#binary = binary;
    this.localAddr = socket.localAddr;
    this.remoteAddr = socket.remoteAddr;
    if (first.length > 0) this.#take(first);
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#unread.length === 0) {
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return null;
      }
      let n: number | null;
      try {
        n = await this.#socket.read(this.#buffer);
      } catch (error) {
        this.#ended = true;
        throw error;
      }
      // The end without a close frame: as TCP's end.
      if (n === null) this.#ended = true;
      else this.#take(this.#buffer.subarray(0, n));
    }
    const first = this.#unread[0];
    const n = Math.min(p.length, first.length);
    p.set(first.subarray(0, n));
    if (n === first.length) this.#unread.shift();
    else this.#unread[0] = first.subarray(n);
    return n;
  }

  /** Takes bytes received, and acts on the frames they make. */
  #take(bytes: Uint8Array): void {
    this.#frames.push(bytes);
    for (let event; (event = this.#frames.next()) !== undefined;) {
      switch (event.kind) {
        case "message":
          if (event.bytes.length > 0) this.#unread.push(event.bytes);
          break;
        case "ping":
          this.#send([{ opcode: OP_PONG, payload: event.payload }]).catch(
            () => {},
          );
          break;
        case "pong":
          break;
        case "close":
          // The server's close: the end of what it sends. Answered with
          // its code (unless ours went first), and then the socket closes.
          this.#ended = true;
          this.#sendClose(event.code ?? CLOSE_NORMAL);
          this.#closeSocket();
          return;
        case "fail":
          this.#ended = true;
          this.#error = new Deno.errors.InvalidData(
            `The server broke the WebSocket protocol: ${event.reason}`,
          );
          this.#sendClose(event.code, event.reason);
          this.#closeSocket();
          return;
      }
    }
  }

  /** Sends `frames`, masked, after what was sent before. */
  #send(frames: Parameters<typeof encodeFrames>[0]): Promise<void> {
    const bytes = encodeFrames(frames, true);
    // Nothing on its way: straight to the socket (most writes, in turn).
    const sent = this.#writing === 0
      ? writeAll(this.#socket, bytes)
      : this.#writes.then(() => writeAll(this.#socket, bytes));
    this.#writing++;
    const done = sent.finally(() => this.#writing--);
    this.#writes = done.catch(() => {});
    return done;
  }

  /** Sends our close frame, once. */
  #sendClose(code: number, reason = ""): Promise<void> {
    if (this.#closeSent || this.#closed) return this.#writes.then(() => {});
    this.#closeSent = true;
    return this.#send([{
      opcode: OP_CLOSE,
      payload: closePayload(code, reason),
    }]);
  }

  /** Closes the socket once what is on its way is written. */
  #closeSocket(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writes.finally(() => {
      try {
        this.#socket.close();
      } catch {
        // Closed already.
      }
    });
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closeSent || this.#closed) {
      throw new Deno.errors.BrokenPipe("The WebSocket is closing");
    }
    if (!this.#binary) {
      try {
        strictDecoder.decode(p);
      } catch {
        throw new TypeError(
          "Cannot send this as a text message: it is not UTF-8 (send it as binary: websocketBinary, --ws-binary)",
        );
      }
    }
    await this.#send([{
      opcode: this.#binary ? OP_BINARY : OP_TEXT,
      payload: p,
    }]);
    return p.length;
  }

  /** Sends a close frame: the server answers what it owes, then closes. */
  closeWrite(): Promise<void> {
    return this.#sendClose(CLOSE_NORMAL);
  }

  /**
   * Closes: with a close frame when none has gone yet, written before the
   * socket closes, so that the server sees a clean close.
   */
  close(): void {
    this.#ended = true;
    this.#sendClose(CLOSE_NORMAL).catch(() => {});
    this.#closeSocket();
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
