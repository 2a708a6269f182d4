// Private: the client's side of a WebSocket (`websocket: "ws://…/ws"`), as
// the Deno.Conn every client uses: each write is one message (text, or
// binary with `websocketBinary`) and the messages received are the bytes
// read. A WebSocket cannot half-close, and one that closes drops what is
// still on its way, so `closeWrite()` closes once as many messages have come
// back as were sent (an echo answers each message with one). Deno's
// WebSocket says nothing when its send buffer drains, so a write that waits
// for room looks again every DRAIN_CHECK_MS. Not exported from mod.ts.

import { optionError, readableOf, writableOf } from "../_helpers.ts";

/** Unsent bytes above which a write waits. */
const HIGH_WATER = 1 << 20;
/** How often a waiting write looks at the send buffer again. */
const DRAIN_CHECK_MS = 5;

/** A WebSocket as a byte stream; WebSocketClientConn below sends and closes. */
abstract class SocketConn implements Deno.Conn {
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

const encoder = new TextEncoder();
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
 * @throws {Deno.errors.ConnectionRefused} It could not be opened.
 * @throws {unknown} `signal.reason`, when the signal aborts first.
 */
export async function openWebSocket(
  url: URL,
  binary: boolean,
  caCerts: readonly string[] | undefined,
  signal?: AbortSignal,
): Promise<Deno.Conn> {
  signal?.throwIfAborted();
  const client = caCerts === undefined
    ? undefined
    : Deno.createHttpClient({ caCerts: [...caCerts] });
  const socket = new WebSocket(url, client && { client });
  socket.binaryType = "arraybuffer";
  const conn = new WebSocketClientConn(socket, url, binary, client);
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      socket.addEventListener("open", () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, { once: true });
      socket.addEventListener("error", (event) => {
        signal?.removeEventListener("abort", onAbort);
        reject(
          new Deno.errors.ConnectionRefused(
            `Cannot open ${url}: ${(event as ErrorEvent).message}`,
          ),
        );
      }, { once: true });
    });
  } catch (error) {
    conn.close();
    throw error;
  }
  return conn;
}

/** A WebSocket as a client's byte stream. */
class WebSocketClientConn extends SocketConn {
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;
  #binary: boolean;
  #client: Deno.HttpClient | undefined;
  #sent = 0;
  #received = 0;
  #closing = false;

  constructor(
    socket: WebSocket,
    url: URL,
    binary: boolean,
    client: Deno.HttpClient | undefined,
  ) {
    super(socket);
    this.#binary = binary;
    this.#client = client;
    const port = Number(url.port || (url.protocol === "wss:" ? 443 : 80));
    const hostname = url.hostname.replace(/^\[|\]$/g, "");
    this.remoteAddr = { transport: "tcp", hostname, port };
    this.localAddr = { transport: "tcp", hostname: "", port: 0 };
    socket.addEventListener("message", (event) => {
      const data = event.data as string | ArrayBuffer;
      this.#received++;
      this.push(
        typeof data === "string" ? encoder.encode(data) : new Uint8Array(data),
      );
      this.#closeIfAnswered();
    });
    socket.addEventListener("close", () => this.#end());
    socket.addEventListener("error", () => this.#end());
  }

  #end(): void {
    this.#client?.close();
    this.#client = undefined;
    this.end();
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closing) {
      throw new Deno.errors.BrokenPipe("The WebSocket is closing");
    }
    this.assertOpen();
    if (this.#binary) this.socket.send(p.slice());
    else {
      let text: string;
      try {
        text = strictDecoder.decode(p);
      } catch {
        throw new TypeError(
          "Cannot send this as a text message: it is not UTF-8 (send it as binary: websocketBinary, --ws-binary)",
        );
      }
      this.socket.send(text);
    }
    this.#sent++;
    await this.drained();
    return p.length;
  }

  /** Closes once every message sent has been answered (see the top). */
  closeWrite(): Promise<void> {
    this.#closing = true;
    this.#closeIfAnswered();
    return Promise.resolve();
  }

  #closeIfAnswered(): void {
    if (this.#closing && this.#received >= this.#sent) this.closeSocket(1000);
  }

  close(): void {
    this.closeSocket(1000);
    this.#end();
  }
}
