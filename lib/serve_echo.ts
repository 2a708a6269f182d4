import { getLogger } from "@logtape/logtape";
import {
  assertInteger,
  assertLimit,
  assertMilliseconds,
  assertPort,
  describeError,
  formatAddr,
  IdleTimer,
  LOG_CATEGORY,
} from "./_helpers.ts";
import { join, lineContent, LineSplitter } from "./_lines.ts";
import { Outbox } from "./_outbox.ts";
import { MAX_CHAT_OVERHEAD, type Member, Relay } from "./_relay.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

/** First read buffer of a connection: small, so idle connections cost little. */
const INITIAL_BUFFER_SIZE = 1024;
/** A connection's read buffer doubles each time a read fills it, up to this. */
const MAX_BUFFER_SIZE = 256 * 1024;
/** First and last delay between retries when `accept()` keeps failing. */
const ACCEPT_BACKOFF_MIN_MS = 5;
const ACCEPT_BACKOFF_MAX_MS = 1000;
/**
 * When the server ends a connection itself (`exit`, a line too long,
 * `/quit`), how long it waits for what is queued to be sent and for the
 * client to close its side before closing anyway. Reading until the client
 * closes keeps the kernel from answering late bytes with a reset, which
 * would destroy the last lines before the client reads them.
 */
const LINGER_MS = 1000;
/** Largest `maxLineBytes`. */
const MAX_LINE_LIMIT = 16 * 1024 * 1024;

/**
 * What the server does with what a client sends; see
 * {@linkcode ServeEchoOptions.mode}.
 */
export type EchoMode = "echo" | "line" | "broadcast" | "chat";

/** The modes {@linkcode ServeEchoOptions.mode} accepts (for the CLI). */
export const MODES: readonly EchoMode[] = ["echo", "line", "broadcast", "chat"];

const encoder = new TextEncoder();
const EXIT = encoder.encode("exit");
const QUIT = encoder.encode("quit");

/** Options for {@linkcode serveEcho}. */
export interface ServeEchoOptions {
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port to listen on; 0 picks any free port (read it from
   * {@linkcode EchoServer.addr}).
   *
   * @default {9000}
   */
  port?: number;
  /**
   * The most connections served at once. A connection over the limit is
   * closed as soon as it is accepted and counted in
   * {@linkcode EchoServerStats.rejected}.
   *
   * @default {Infinity}
   */
  maxConnections?: number;
  /**
   * Milliseconds a connection may go without a byte moving either way before
   * the server closes it; 0 never closes an idle connection.
   *
   * @default {0}
   */
  idleTimeout?: number;
  /**
   * Milliseconds {@linkcode EchoServer.shutdown} lets open connections finish
   * before it closes them; `Infinity` waits for every client to close.
   *
   * @default {5000}
   */
  gracePeriod?: number;
  /**
   * Aborting this signal is the hard stop: the listener and every connection
   * are closed at once.
   */
  signal?: AbortSignal;
  /**
   * What the server does with what a client sends:
   *
   * - `"echo"`: every byte back, in order (RFC 862).
   * - `"line"`: every newline-terminated line back as sent (`\n` or
   *   `\r\n`; a last line without a newline counts too). A line that is
   *   exactly `exit` or `quit` closes the connection.
   * - `"broadcast"`: every line from any client goes, unchanged, to every
   *   client, the sender included, in the order the server received them.
   * - `"chat"`: named clients in rooms: `<name> text` lines, join and leave
   *   notices, `/nick NAME`, `/join ROOM`, `/who` and `/quit`.
   *
   * In every line mode, a line longer than `maxLineBytes` gets
   * `ERR line too long (max N bytes)` back and its connection is closed.
   *
   * @default {"echo"}
   */
  mode?: EchoMode;
  /**
   * The longest line the line modes accept, in bytes, not counting its
   * `\n` or `\r\n`.
   *
   * @default {8192}
   */
  maxLineBytes?: number;
  /**
   * The most lines that may wait in one client's send queue: lines from
   * other clients and from {@linkcode EchoServer.announce} that its socket
   * has not taken yet. A client whose queue is full is disconnected, so a
   * slow reader never slows the others down. At least 2.
   *
   * @default {100}
   */
  channelCapacity?: number;
  /**
   * The most bytes that may wait in one client's send queue; see
   * `channelCapacity`. At least twice the longest chat line
   * (`2 * (maxLineBytes + 132)`).
   *
   * @default {1048576}
   */
  channelBytes?: number;
  /**
   * How many of its room's last messages a chat newcomer gets, from 0 to
   * half of `channelCapacity`.
   *
   * @default {20}
   */
  history?: number;
}

/** Counters of an {@linkcode EchoServer}, read at one instant. */
export interface EchoServerStats {
  /** Connections open now. */
  readonly active: number;
  /** Connections accepted since the server started, rejected ones included. */
  readonly accepted: number;
  /** Connections closed at once because `maxConnections` were open. */
  readonly rejected: number;
  /** Bytes received from clients. */
  readonly bytesIn: number;
  /** Bytes sent to clients. */
  readonly bytesOut: number;
  /** Connections closed because their send queue was full. */
  readonly dropped: number;
}

/** A running echo server, as returned by {@linkcode serveEcho}. */
export interface EchoServer extends AsyncDisposable {
  /** The address the server listens on, with the port really bound. */
  readonly addr: Deno.NetAddr;
  /** Resolves once the listener and every connection are closed. */
  readonly finished: Promise<void>;
  /** The server's counters at this instant. */
  readonly stats: EchoServerStats;
  /** What the server does with what clients send. */
  readonly mode: EchoMode;
  /**
   * Sends one line of text to every connected client: as `[server] message`
   * in broadcast and chat mode, as the bare line in echo and line mode. A
   * client whose send queue is full is disconnected.
   *
   * @param message The text, without a line ending.
   * @returns How many clients it was sent to.
   * @throws {TypeError} `message` contains a line break.
   */
  announce(message: string): number;
  /**
   * Stops accepting at once, lets open connections finish for up to
   * `gracePeriod` milliseconds, then closes the rest. Calling it again
   * returns the same promise.
   *
   * @returns A promise that resolves when the server has finished.
   */
  shutdown(): Promise<void>;
}

/**
 * Starts a TCP echo server (RFC 862): every byte a client sends comes back in
 * order, whatever its size or content. When a client half-closes, the server
 * echoes everything still owed and then closes. With
 * {@linkcode ServeEchoOptions.mode} it is instead a line echo, a broadcast
 * relay or a chat.
 *
 * One connection's failure (a reset, a client that stops reading) never
 * affects another; failed accepts (such as too many open files) are logged
 * and retried with backoff.
 *
 * @example A broadcast relay
 * ```ts
 * import { serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0, mode: "broadcast" });
 * using conn = await Deno.connect({ port: server.addr.port });
 * await conn.write(new TextEncoder().encode("hi all\n"));
 * // Every client hears every line, the sender included.
 * const buffer = new Uint8Array(64);
 * const n = await conn.read(buffer);
 * assert.equal(new TextDecoder().decode(buffer.subarray(0, n!)), "hi all\n");
 * ```
 *
 * @example Echo a message
 * ```ts
 * import { echoOnce, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * const reply = await echoOnce("hello", { port: server.addr.port });
 * assert.equal(reply, "hello");
 * ```
 *
 * @param options How and where to listen.
 * @returns The running server.
 * @throws {Deno.errors.AddrInUse} The port is taken.
 * @throws {RangeError} An option is out of range.
 * @throws {unknown} `options.signal.reason` when the signal is already aborted.
 */
export function serveEcho(options: ServeEchoOptions = {}): EchoServer {
  return new Server(options);
}

/** One client connection, its counters and its writer. */
class Connection implements Member {
  readonly conn: Deno.TcpConn;
  readonly peer: string;
  readonly openedAt: number = Date.now();
  readonly out: Outbox;
  bytesIn = 0;
  bytesOut = 0;
  idle: IdleTimer | undefined;
  /** Why the server closed it, when the server did. */
  closedBecause: string | undefined;
  name = "";
  room = "";
  quitting = false;
  #onDrop: (c: Connection) => void;

  constructor(
    conn: Deno.TcpConn,
    options: Required<
      Pick<ServeEchoOptions, "channelCapacity" | "channelBytes">
    >,
    relay: Relay | undefined,
    onDrop: (c: Connection) => void,
  ) {
    this.conn = conn;
    this.peer = formatAddr(conn.remoteAddr);
    this.#onDrop = onDrop;
    this.out = new Outbox(conn, options.channelCapacity, options.channelBytes, {
      written: (n) => {
        this.bytesOut += n;
        this.idle?.touch();
      },
      failed: (error) => this.close(describeError(error)),
      busy: relay && ((busy) => relay.writerBusy(busy)),
    });
  }

  /** Closes the socket now; pending reads and writes reject. */
  close(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    this.idle?.clear();
    this.out.close();
    try {
      this.conn.close();
    } catch {
      // Already closed by the echo loop.
    }
  }

  dropQueueFull(): void {
    if (this.closedBecause !== undefined) return;
    this.#onDrop(this);
    this.close("send queue full");
  }
}

class Server implements EchoServer {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  readonly mode: EchoMode;
  #listener: Deno.TcpListener;
  #maxConnections: number;
  #idleTimeout: number;
  #gracePeriod: number;
  #maxLineBytes: number;
  #channel: Required<
    Pick<ServeEchoOptions, "channelCapacity" | "channelBytes">
  >;
  #relay: Relay | undefined;
  #signal: AbortSignal | undefined;
  #connections = new Set<Connection>();
  #accepted = 0;
  #rejected = 0;
  #dropped = 0;
  /** Bytes of connections already closed. */
  #closedBytesIn = 0;
  #closedBytesOut = 0;
  #listening = true;
  #acceptLoopDone = false;
  #resolveFinished!: () => void;
  #wakeBackoff: (() => void) | undefined;
  #shutdown: Promise<void> | undefined;

  constructor(options: ServeEchoOptions) {
    const {
      hostname = "127.0.0.1",
      port = 9000,
      maxConnections = Infinity,
      idleTimeout = 0,
      gracePeriod = 5000,
      signal,
      mode = "echo",
      maxLineBytes = 8192,
      channelCapacity = 100,
      channelBytes = 1024 * 1024,
      history = 20,
    } = options;
    assertPort(port);
    assertLimit("maxConnections", maxConnections);
    assertMilliseconds("idleTimeout", idleTimeout);
    assertMilliseconds("gracePeriod", gracePeriod, true);
    if (!(MODES as readonly string[]).includes(mode)) {
      throw new TypeError(
        `Cannot use mode: must be one of ${MODES.join(", ")}, got ${mode}`,
      );
    }
    assertInteger("maxLineBytes", maxLineBytes, 1, MAX_LINE_LIMIT);
    assertInteger("channelCapacity", channelCapacity, 2, 2 ** 31 - 1);
    const longestLine = maxLineBytes + 2 + MAX_CHAT_OVERHEAD;
    assertInteger("channelBytes", channelBytes, 2 * longestLine, 2 ** 53 - 1);
    assertInteger("history", history, 0, Math.floor(channelCapacity / 2));
    signal?.throwIfAborted();

    this.mode = mode;
    this.#maxConnections = maxConnections;
    this.#idleTimeout = idleTimeout;
    this.#gracePeriod = gracePeriod;
    this.#maxLineBytes = maxLineBytes;
    this.#channel = { channelCapacity, channelBytes };
    if (mode === "broadcast" || mode === "chat") {
      this.#relay = new Relay({
        mode,
        history,
        linesPerRound: Math.floor(channelCapacity / 2),
        bytesPerRound: Math.floor(channelBytes / 2),
        renamed: (member, from) =>
          logger.debug("Renamed {peer} from {from} to {name}", {
            peer: member.peer,
            from,
            name: member.name,
          }),
      });
    }
    this.#listener = Deno.listen({ hostname, port, transport: "tcp" });
    this.addr = this.#listener.addr;
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#signal = signal;
    signal?.addEventListener("abort", this.#abort, { once: true });
    logger.debug("Listening on {address} in {mode} mode", {
      address: formatAddr(this.addr),
      mode,
    });
    this.#acceptLoop();
  }

  get stats(): EchoServerStats {
    let bytesIn = this.#closedBytesIn;
    let bytesOut = this.#closedBytesOut;
    for (const c of this.#connections) {
      bytesIn += c.bytesIn;
      bytesOut += c.bytesOut;
    }
    return {
      active: this.#connections.size,
      accepted: this.#accepted,
      rejected: this.#rejected,
      bytesIn,
      bytesOut,
      dropped: this.#dropped,
    };
  }

  announce(message: string): number {
    if (/[\r\n]/.test(message)) {
      throw new TypeError("Cannot announce: the message contains a line break");
    }
    logger.info("Announcing to {clients} clients: {message}", {
      clients: this.#connections.size,
      message,
    });
    if (this.#relay !== undefined) {
      this.#relay.announce(message);
      return this.#relay.size;
    }
    const line = encoder.encode(`${message}\n`);
    for (const c of this.#connections) {
      if (!c.out.post(line)) c.dropQueueFull();
    }
    return this.#connections.size;
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= this.#drain();
    return this.#shutdown;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  async #drain(): Promise<void> {
    logger.info(
      "Shutting down: {active} connections open, grace period {gracePeriod} ms",
      { active: this.#connections.size, gracePeriod: this.#gracePeriod },
    );
    this.#closeListener();
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (this.#connections.size > 0 && this.#gracePeriod !== Infinity) {
      timer = setTimeout(
        () => this.#closeAll("grace period over"),
        this.#gracePeriod,
      );
    }
    if (this.#relay !== undefined && this.#connections.size > 0) {
      // Relay clients never finish by themselves: tell them, then close each
      // once its queue is sent (or when the grace period is over).
      await this.#relay.announce("shutting down");
      for (const c of this.#connections) {
        c.out.idle().then(() => c.close("server shutting down"));
      }
    }
    await this.finished;
    clearTimeout(timer);
  }

  #abort = (): void => {
    logger.info("Stopping now: {active} connections open", {
      active: this.#connections.size,
    });
    this.#closeListener();
    this.#closeAll("server stopped");
  };

  #closeListener(): void {
    if (!this.#listening) return;
    this.#listening = false;
    this.#listener.close();
    this.#wakeBackoff?.();
  }

  #closeAll(reason: string): void {
    for (const c of this.#connections) c.close(reason);
  }

  #finishIfDone(): void {
    if (!this.#acceptLoopDone || this.#connections.size > 0) return;
    this.#signal?.removeEventListener("abort", this.#abort);
    logger.debug("Finished: {accepted} accepted, {rejected} rejected", {
      accepted: this.#accepted,
      rejected: this.#rejected,
    });
    this.#resolveFinished();
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (this.#listening) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (!this.#listening) break;
        backoff = Math.min(
          Math.max(backoff * 2, ACCEPT_BACKOFF_MIN_MS),
          ACCEPT_BACKOFF_MAX_MS,
        );
        logger.error("Accept failed, retrying in {delayMs} ms: {error}", {
          delayMs: backoff,
          error: describeError(error),
        });
        await this.#backoff(backoff);
        continue;
      }
      backoff = 0;
      this.#accepted++;
      if (this.#connections.size >= this.#maxConnections) {
        this.#reject(conn);
      } else {
        this.#serve(conn);
      }
    }
    this.#acceptLoopDone = true;
    logger.debug("Stopped accepting on {address}", {
      address: formatAddr(this.addr),
    });
    this.#finishIfDone();
  }

  /** Waits `ms`, or less if the listener is closed meanwhile. */
  #backoff(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      this.#wakeBackoff = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  #reject(conn: Deno.TcpConn): void {
    this.#rejected++;
    logger.warning(
      "Rejected {peer}: {active} connections open, the maximum is {maxConnections}",
      {
        peer: formatAddr(conn.remoteAddr),
        active: this.#connections.size,
        maxConnections: this.#maxConnections,
      },
    );
    conn.close();
  }

  #drop = (c: Connection): void => {
    this.#dropped++;
    logger.warning(
      "Dropping {peer}: its send queue is full ({lines} lines, {bytes} bytes waiting)",
      { peer: c.peer, lines: c.out.queuedLines, bytes: c.out.queuedBytes },
    );
  };

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const c = new Connection(conn, this.#channel, this.#relay, this.#drop);
    this.#connections.add(c);
    logger.info("Opened {peer} ({active} open)", {
      peer: c.peer,
      active: this.#connections.size,
    });
    if (this.#idleTimeout > 0) {
      c.idle = new IdleTimer(this.#idleTimeout, () => c.close("idle timeout"));
    }
    let reason = "closed by client";
    try {
      conn.setNoDelay(true);
      if (this.mode === "echo") {
        await echo(c);
      } else if (this.#relay === undefined) {
        reason = await echoLines(c, this.#maxLineBytes);
      } else {
        reason = await relayLines(c, this.#relay, this.#maxLineBytes);
      }
    } catch (error) {
      reason = c.closedBecause ?? describeError(error);
    } finally {
      this.#relay?.leave(c);
      c.close(reason);
      this.#connections.delete(c);
      this.#closedBytesIn += c.bytesIn;
      this.#closedBytesOut += c.bytesOut;
      logger.info(
        "Closed {peer} after {durationMs} ms: {bytesIn} bytes in, {bytesOut} bytes out ({reason})",
        {
          peer: c.peer,
          durationMs: Date.now() - c.openedAt,
          bytesIn: c.bytesIn,
          bytesOut: c.bytesOut,
          reason,
        },
      );
      this.#finishIfDone();
    }
  }
}

/**
 * Reads the next chunk into `buffer`, counting it. Returns the bytes read
 * (a view of `buffer`), or `null` at end of stream.
 */
async function readChunk(
  c: Connection,
  buffer: Uint8Array,
): Promise<Uint8Array | null> {
  const n = await c.conn.read(buffer);
  if (n === null) return null;
  c.bytesIn += n;
  c.idle?.touch();
  return buffer.subarray(0, n);
}

/** A read buffer twice as big when a read filled this one, up to the limit. */
function grown(
  buffer: Uint8Array<ArrayBuffer>,
  filled: number,
): Uint8Array<ArrayBuffer> {
  return filled === buffer.length && filled < MAX_BUFFER_SIZE
    ? new Uint8Array(filled * 2)
    : buffer;
}

/**
 * Echoes until the client half-closes; the caller's close then sends our FIN
 * after everything echoed. Reads into a buffer that starts small and doubles
 * whenever a read fills it.
 */
async function echo(c: Connection): Promise<void> {
  const { conn, out } = c;
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) break;
    c.bytesIn += n;
    c.idle?.touch();
    if (out.free) {
      // The hot path: write straight to the socket.
      out.claim();
      try {
        for (let written = 0; written < n;) {
          const w = await conn.write(buffer.subarray(written, n));
          written += w;
          c.bytesOut += w;
          c.idle?.touch();
        }
      } finally {
        out.release();
      }
    } else {
      // An operator line is queued or being sent: go after it.
      await out.send(buffer.subarray(0, n));
    }
    buffer = grown(buffer, n);
  }
  await out.idle();
}

/** Whether `line` is exactly `exit` or `quit`, with or without its ending. */
function isExit(line: Uint8Array): boolean {
  const text = lineContent(line);
  return text.length === 4 &&
    (equal(text, EXIT) || equal(text, QUIT));
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function lineTooLong(maxLineBytes: number): Uint8Array {
  return encoder.encode(`ERR line too long (max ${maxLineBytes} bytes)\n`);
}

/**
 * Line mode: echoes each line as sent until the client half-closes, sends
 * `exit` or `quit`, or sends a line over the limit. Returns why it ended.
 */
async function echoLines(c: Connection, maxLineBytes: number): Promise<string> {
  const splitter = new LineSplitter(maxLineBytes);
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const chunk = await readChunk(c, buffer);
    const lines = chunk === null ? [splitter.end()] : splitter.push(chunk);
    let replies = lines.filter((line) => line !== undefined);
    const exit = replies.findIndex(isExit);
    if (exit !== -1) replies = replies.slice(0, exit);
    if (replies.length > 0) {
      await c.out.send(
        replies.length === 1
          ? replies[0]
          : join(replies, replies.reduce((sum, l) => sum + l.length, 0)),
      );
    }
    if (exit !== -1) return await closeGently(c, "exit command");
    if (splitter.tooLong) {
      await c.out.send(lineTooLong(maxLineBytes));
      return await closeGently(c, "line too long");
    }
    if (chunk === null) return await closeGently(c, "closed by client");
    buffer = grown(buffer, chunk.length);
  }
}

/**
 * Broadcast and chat modes: hands each line to the relay, waiting for it to
 * be delivered before reading on, until the client half-closes, quits or
 * sends a line over the limit. Returns why it ended.
 */
async function relayLines(
  c: Connection,
  relay: Relay,
  maxLineBytes: number,
): Promise<string> {
  relay.join(c);
  const splitter = new LineSplitter(maxLineBytes);
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const chunk = await readChunk(c, buffer);
    // Lines are kept by the relay; a last line without a newline gets one,
    // so it cannot run into the next client's line.
    const lines = chunk === null
      ? [withNewline(splitter.end())]
      : splitter.push(chunk).map((line) => line.slice());
    await relay.submit(c, lines.filter((line) => line !== undefined));
    if (c.quitting) return await closeGently(c, "quit command");
    if (splitter.tooLong) {
      relay.leave(c);
      c.out.post(lineTooLong(maxLineBytes));
      return await closeGently(c, "line too long");
    }
    if (chunk === null) {
      relay.leave(c);
      return await closeGently(c, "closed by client");
    }
    buffer = grown(buffer, chunk.length);
  }
}

function withNewline(line: Uint8Array | undefined): Uint8Array | undefined {
  if (line === undefined) return undefined;
  const out = new Uint8Array(line.length + 1);
  out.set(line);
  out[line.length] = 0x0a;
  return out;
}

/**
 * Ends a connection the polite way: waits for its queue to be sent, sends
 * FIN, and reads (discarding) until the client closes too, all within
 * {@linkcode LINGER_MS}; then returns `reason`.
 */
async function closeGently(c: Connection, reason: string): Promise<string> {
  const timer = setTimeout(() => c.close(reason), LINGER_MS);
  try {
    await c.out.idle();
    await c.conn.closeWrite();
    const buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
    while (await readChunk(c, buffer) !== null) {
      // Discard what the client still sends.
    }
  } catch (error) {
    if (c.closedBecause === undefined) throw error;
  } finally {
    clearTimeout(timer);
  }
  return reason;
}
