// Private: one listener of an echo server, its connections and their loops.
// serveEcho() runs one, or one per worker (see _workers.ts). Not exported
// from mod.ts.

import { getLogger, type Logger } from "@logtape/logtape";
import {
  describeError,
  formatAddr,
  IdleTimer,
  LOG_CATEGORY,
  plural,
} from "./_helpers.ts";
import { join, lineContent, LineSplitter } from "./_lines.ts";
import { Outbox } from "./_outbox.ts";
import { type Member, Relay, type RelayPort } from "./_relay.ts";
import type {
  EchoMode,
  EchoServer,
  EchoServerStats,
  ServeEchoOptions,
} from "./types.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

/** First read buffer of a connection: small, so idle connections cost little. */
const INITIAL_BUFFER_SIZE = 512;
/** A connection's read buffer doubles each time a read fills it, up to this. */
const MAX_BUFFER_SIZE = 256 * 1024;
/**
 * First and last delay between retries while `accept()` fails for want of a
 * resource (see {@linkcode EXHAUSTION}).
 */
const ACCEPT_BACKOFF_MIN_MS = 5;
const ACCEPT_BACKOFF_MAX_MS = 1000;
/**
 * When the server ends a connection itself (`exit`, a line too long,
 * `/quit`, shutdown), how long it waits for what is in flight to be sent
 * and for the client to close its side before closing anyway. Reading until
 * the client closes keeps the kernel from answering late bytes with a
 * reset, which would destroy what was sent before the client reads it.
 */
const LINGER_MS = 1000;
/**
 * The `accept()` errors that say the process or the system ran out of
 * something (descriptors, buffers, memory): accepting again at once would
 * fail the same way, so the accept loop backs off. Every other error belongs
 * to the one connection being accepted (most often a client that reset
 * while it waited in the queue: ENOTCONN, ECONNABORTED, ECONNRESET), and the
 * loop accepts the next one at once.
 */
const EXHAUSTION: ReadonlySet<string> = new Set([
  "EMFILE",
  "ENFILE",
  "ENOBUFS",
  "ENOMEM",
]);

const encoder = new TextEncoder();
const EXIT = encoder.encode("exit");
const QUIT = encoder.encode("quit");

/** The options of one listener, checked and with their defaults filled in. */
export type ServerConfig = Required<
  Omit<ServeEchoOptions, "signal" | "workers">
>;

/** Where each listener keeps its counters: {@linkcode COUNTERS} numbers. */
export const ACCEPTED = 0;
export const REJECTED = 1;
export const BYTES_IN = 2;
export const BYTES_OUT = 3;
export const DROPPED = 4;
export const ACTIVE = 5;
export const ACCEPT_ERRORS = 6;
/**
 * How many numbers one listener's counters take: 7, padded to 128 bytes so
 * that no two listeners write to the same cache line.
 */
export const COUNTERS = 16;

/** What a listener shares with the others of the same server. */
export interface Shared {
  /** Bind with `SO_REUSEPORT`, so that other listeners can share the port. */
  reusePort: boolean;
  /** This listener's counters (see {@linkcode COUNTERS}). */
  counters: Float64Array;
  /** `[0]`: connections open on all listeners, for `maxConnections`. */
  open: Int32Array;
  /** The relay, in broadcast and chat mode, when another thread runs it. */
  relay?: RelayPort;
  /** What goes in every log record of this listener. */
  worker?: number;
}

/** A listener's own counters, for a server that has only one. */
export function localShared(): Shared {
  return {
    reusePort: false,
    counters: new Float64Array(COUNTERS),
    open: new Int32Array(1),
  };
}

/** Adds up the counters of every listener in `counters`. */
export function sumStats(counters: Float64Array): EchoServerStats {
  const total = new Float64Array(COUNTERS);
  const perWorker = [];
  for (let offset = 0; offset < counters.length; offset += COUNTERS) {
    for (let i = 0; i < COUNTERS; i++) total[i] += counters[offset + i];
    perWorker.push(counters[offset + ACCEPTED]);
  }
  return {
    active: total[ACTIVE],
    accepted: total[ACCEPTED],
    rejected: total[REJECTED],
    bytesIn: total[BYTES_IN],
    bytesOut: total[BYTES_OUT],
    dropped: total[DROPPED],
    acceptErrors: total[ACCEPT_ERRORS],
    perWorker,
  };
}

/** The relay for broadcast and chat mode; `undefined` in the other modes. */
export function newRelay(config: ServerConfig): Relay | undefined {
  if (config.mode !== "broadcast" && config.mode !== "chat") return undefined;
  return new Relay({
    mode: config.mode,
    history: config.history,
    linesPerRound: Math.floor(config.channelCapacity / 2),
    bytesPerRound: Math.floor(config.channelBytes / 2),
    renamed: (member, from) =>
      logger.debug("Renamed {peer} from {from} to {name}", {
        peer: member.peer,
        from,
        name: member.name,
      }),
  });
}

/** What every connection of one listener shares: one object per listener. */
interface Listener {
  readonly config: ServerConfig;
  readonly counters: Float64Array;
  readonly relay: RelayPort | undefined;
  /** A connection is being dropped because its send queue is full. */
  dropped(c: Connection): void;
  /** A connection has ended (called once), and why. */
  ended(c: Connection, reason: string): void;
}

/**
 * One client connection: its counters, its writer, and in echo mode its
 * read/write loop. The loop runs on callbacks rather than an async function,
 * so that an idle connection holds only this object, its buffer and one
 * pending read.
 */
class Connection implements Member {
  readonly conn: Deno.TcpConn;
  readonly openedAt: number = Date.now();
  readonly counters: Float64Array;
  bytesIn = 0;
  bytesOut = 0;
  idle: IdleTimer | undefined;
  /** Why the server closed it, when the server did. */
  closedBecause: string | undefined;
  name = "";
  room = "";
  quitting = false;
  /** Why the server is ending it politely (see {@linkcode finish}). */
  finishing: string | undefined;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #listener: Listener;
  /** Made on first use: most echo connections never need one. */
  #out: Outbox | undefined;
  /** The echo loop is writing to the socket itself. */
  #writing = false;
  #ended = false;
  #buffer: Uint8Array<ArrayBuffer> | undefined;
  /** Bytes in `#buffer` to echo, and how many of them are written. */
  #length = 0;
  #offset = 0;

  constructor(conn: Deno.TcpConn, listener: Listener) {
    this.conn = conn;
    this.#listener = listener;
    this.counters = listener.counters;
  }

  get peer(): string {
    return formatAddr(this.conn.remoteAddr);
  }

  /** The one writer of this connection; see {@linkcode Outbox}. */
  get out(): Outbox {
    if (this.#out !== undefined) return this.#out;
    const { config, counters, relay } = this.#listener;
    const out = new Outbox(
      this.conn,
      config.channelCapacity,
      config.channelBytes,
      {
        written: (n) => {
          this.bytesOut += n;
          counters[BYTES_OUT] += n;
          this.idle?.touch();
        },
        failed: (error) => this.close(describeError(error)),
        busy: relay && ((busy) => relay.writerBusy(out, busy)),
        progress: relay && (() => relay.writerProgress()),
      },
    );
    // Made while the echo loop writes: it holds the socket until done.
    if (this.#writing) out.claim();
    this.#out = out;
    return out;
  }

  /** Closes the socket now; pending reads and writes reject. */
  close(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    this.idle?.clear();
    clearTimeout(this.#linger);
    this.#out?.close();
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * Ends the connection politely: what the client still sends is read and
   * discarded, what is in flight or queued is sent, then the server
   * half-closes, and the connection closes once the client closes too or
   * after {@linkcode LINGER_MS}. The client sees a clean end of stream after
   * everything sent before it. Whoever reads the connection must check
   * `finishing` after each read.
   */
  finish(reason: string): void {
    if (this.closedBecause !== undefined || this.finishing !== undefined) {
      return;
    }
    this.finishing = reason;
    this.#linger = setTimeout(() => this.close(reason), LINGER_MS);
    // The echo loop's own write in flight half-closes when done.
    if (!this.#writing) this.#halfClose();
  }

  #halfClose(): void {
    (this.#out?.end() ?? Promise.resolve()).then(() => {
      if (this.closedBecause === undefined) return this.conn.closeWrite();
    }).catch(() => {
      // The socket failed: its reader ends the connection.
    });
  }

  dropQueueFull(): void {
    if (this.closedBecause !== undefined) return;
    this.#listener.dropped(this);
    this.close("send queue full");
  }

  /** Ends the connection's life in the listener, once. */
  end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#listener.ended(this, reason);
  }

  /**
   * Echo mode: echoes until the client half-closes, then ends (the
   * listener's close sends our FIN after everything echoed). Reads into a
   * buffer that starts small and doubles whenever a read fills it.
   */
  echo(): void {
    this.#buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
    this.#read();
  }

  #read(): void {
    this.conn.read(this.#buffer!).then(this.#onRead, this.#onError);
  }

  #onRead = (n: number | null): void => {
    try {
      if (this.finishing !== undefined) {
        // Ending: what the client still sends is not echoed.
        if (n === null) return this.end(this.finishing);
        this.bytesIn += n;
        this.counters[BYTES_IN] += n;
        return this.#read();
      }
      if (n === null) {
        if (this.#out === undefined) return this.end("closed by client");
        this.#out.idle().then(() => this.end("closed by client"));
        return;
      }
      this.bytesIn += n;
      this.counters[BYTES_IN] += n;
      this.idle?.touch();
      this.#length = n;
      this.#offset = 0;
      const out = this.#out;
      if (out === undefined || out.free) {
        // The hot path: write straight to the socket.
        this.#writing = true;
        out?.claim();
        this.#write();
      } else {
        // An operator line is queued or being sent: go after it.
        out.send(this.#buffer!.subarray(0, n)).then(
          () => this.#next(),
          this.#onError,
        );
      }
    } catch (error) {
      this.#onError(error);
    }
  };

  #write(): void {
    this.conn.write(this.#buffer!.subarray(this.#offset, this.#length))
      .then(this.#onWritten, this.#onError);
  }

  #onWritten = (w: number): void => {
    try {
      this.#offset += w;
      this.bytesOut += w;
      this.counters[BYTES_OUT] += w;
      this.idle?.touch();
      if (this.#offset < this.#length) return this.#write();
      this.#writing = false;
      this.#out?.release();
      if (this.finishing !== undefined) this.#halfClose();
      this.#next();
    } catch (error) {
      this.#onError(error);
    }
  };

  /** Reads on, into a buffer twice as big if the last read filled this one. */
  #next(): void {
    this.#buffer = grown(this.#buffer!, this.#length);
    this.#read();
  }

  #onError = (error: unknown): void => {
    if (this.#writing) {
      this.#writing = false;
      this.#out?.release();
    }
    this.end(this.closedBecause ?? describeError(error));
  };
}

/**
 * One listener and its connections: the whole server, or one of its workers.
 * Its counters live in {@linkcode Shared.counters}, so that a server with
 * workers can add them up from another thread.
 */
export class Server implements EchoServer {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  readonly ready: Promise<void> = Promise.resolve();
  readonly mode: EchoMode;
  #config: ServerConfig;
  #listener: Deno.TcpListener;
  #counters: Float64Array;
  #open: Int32Array;
  #relay: RelayPort | undefined;
  /** What this listener's connections share (see {@linkcode Listener}). */
  #shared: Listener;
  #signal: AbortSignal | undefined;
  #log: Logger;
  #worker: number | undefined;
  #connections = new Set<Connection>();
  #listening = true;
  #acceptLoopDone = false;
  #resolveFinished!: () => void;
  #wakeBackoff: (() => void) | undefined;
  #shutdown: Promise<void> | undefined;

  constructor(
    config: ServerConfig,
    shared: Shared,
    signal: AbortSignal | undefined,
  ) {
    signal?.throwIfAborted();
    this.mode = config.mode;
    this.#config = config;
    this.#counters = shared.counters;
    this.#open = shared.open;
    this.#worker = shared.worker;
    this.#log = shared.worker === undefined
      ? logger
      : logger.with({ worker: shared.worker });
    this.#relay = shared.relay ?? newRelay(config);
    this.#shared = {
      config,
      counters: shared.counters,
      relay: this.#relay,
      dropped: (c) => this.#drop(c),
      ended: (c, reason) => this.#ended(c, reason),
    };
    this.#listener = Deno.listen({
      hostname: config.hostname,
      port: config.port,
      transport: "tcp",
      ...(shared.reusePort ? { reusePort: true } : {}),
    });
    this.addr = this.#listener.addr;
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#signal = signal;
    signal?.addEventListener("abort", this.#abort, { once: true });
    this.#log.debug("Listening on {address} in {mode} mode", {
      address: formatAddr(this.addr),
      mode: config.mode,
    });
    this.#acceptLoop();
  }

  get stats(): EchoServerStats {
    return sumStats(this.#counters);
  }

  /** The relay this listener uses, in broadcast and chat mode. */
  get relay(): RelayPort | undefined {
    return this.#relay;
  }

  announce(message: string): number {
    if (/[\r\n]/.test(message)) {
      throw new TypeError("Cannot announce: the message contains a line break");
    }
    const clients = this.#relay?.size ?? this.#connections.size;
    this.#log.info(
      `Announcing to {clients} ${plural(clients, "client")}: {message}`,
      { clients, message },
    );
    if (this.#relay !== undefined) {
      this.#relay.announce(message);
      return this.#relay.size;
    }
    return this.announceHere(message);
  }

  /** Sends `message` as a bare line to this listener's clients (no relay). */
  announceHere(message: string): number {
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
    const gracePeriod = this.#config.gracePeriod;
    this.#logStopping(
      "Shutting down",
      `, grace period ${
        gracePeriod === Infinity ? "unlimited" : "{gracePeriod} ms"
      }`,
      { gracePeriod },
    );
    this.#closeListener();
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (this.#connections.size > 0 && gracePeriod !== Infinity) {
      timer = setTimeout(
        () => this.#finishAll("grace period over"),
        gracePeriod,
      );
    }
    if (this.#relay !== undefined && this.#connections.size > 0) {
      // Relay clients never finish by themselves: tell them, then close each
      // once its queue is sent (or when the grace period is over). The notice
      // is their last line: what other clients' leaving causes is not sent.
      const connections = this.#connections as Set<Member>;
      await this.#relay.announce(
        "shutting down",
        (m) => connections.has(m),
        true,
      );
      this.#finishAll("server shutting down");
    }
    await this.finished;
    clearTimeout(timer);
  }

  #abort = (): void => {
    this.#logStopping("Stopping now", "", {});
    this.#closeListener();
    this.#closeAll("server stopped");
  };

  /**
   * Logs that the server stops, once: by the calling thread, with the
   * connections open on every worker; a worker logs its own at debug.
   */
  #logStopping(
    what: string,
    more: string,
    properties: Record<string, unknown>,
  ): void {
    const worker = this.#worker !== undefined && this.#worker > 0;
    const active = worker
      ? this.#connections.size
      : Atomics.load(this.#open, 0);
    const template = `${what}: {active} ${
      plural(active, "connection")
    } open${more}`;
    const record = { ...properties, active };
    if (worker) this.#log.debug(template, record);
    else this.#log.info(template, record);
  }

  #closeListener(): void {
    if (!this.#listening) return;
    this.#listening = false;
    this.#listener.close();
    this.#wakeBackoff?.();
  }

  #finishAll(reason: string): void {
    for (const c of this.#connections) c.finish(reason);
  }

  #closeAll(reason: string): void {
    for (const c of this.#connections) c.close(reason);
  }

  #finishIfDone(): void {
    if (!this.#acceptLoopDone || this.#connections.size > 0) return;
    this.#signal?.removeEventListener("abort", this.#abort);
    this.#log.debug("Finished: {accepted} accepted, {rejected} rejected", {
      accepted: this.#counters[ACCEPTED],
      rejected: this.#counters[REJECTED],
    });
    // The last leave notices may still be on their way through the relay.
    if (this.#relay === undefined) this.#resolveFinished();
    else this.#relay.idle().then(this.#resolveFinished);
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (this.#listening) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (!this.#listening) break;
        if (!EXHAUSTION.has((error as { code?: string }).code ?? "")) {
          // This one connection is gone; the listener is fine.
          this.#counters[ACCEPT_ERRORS]++;
          this.#log.debug("Accept failed for one connection: {error}", {
            error: describeError(error),
          });
          continue;
        }
        backoff = Math.min(
          Math.max(backoff * 2, ACCEPT_BACKOFF_MIN_MS),
          ACCEPT_BACKOFF_MAX_MS,
        );
        this.#log.error("Accept failed, retrying in {delayMs} ms: {error}", {
          delayMs: backoff,
          error: describeError(error),
        });
        await this.#backoff(backoff);
        continue;
      }
      backoff = 0;
      this.#counters[ACCEPTED]++;
      // The limit counts the connections of every listener of this server.
      if (Atomics.add(this.#open, 0, 1) >= this.#config.maxConnections) {
        Atomics.sub(this.#open, 0, 1);
        this.#reject(conn);
      } else {
        this.#serve(conn);
      }
    }
    this.#acceptLoopDone = true;
    this.#log.debug("Stopped accepting on {address}", {
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
    this.#counters[REJECTED]++;
    const active = Atomics.load(this.#open, 0);
    this.#log.warning(
      `Rejected {peer}: {active} ${
        plural(active, "connection")
      } open, the maximum is {maxConnections}`,
      {
        peer: formatAddr(conn.remoteAddr),
        active,
        maxConnections: this.#config.maxConnections,
      },
    );
    conn.close();
  }

  #drop(c: Connection): void {
    this.#counters[DROPPED]++;
    const lines = c.out.queuedLines;
    const bytes = c.out.queuedBytes;
    this.#log.warning(
      `Dropping {peer}: its send queue is full ({lines} ${
        plural(lines, "line")
      }, {bytes} ${plural(bytes, "byte")} waiting)`,
      { peer: c.peer, lines, bytes },
    );
  }

  #serve(conn: Deno.TcpConn): void {
    const config = this.#config;
    const c = new Connection(conn, this.#shared);
    this.#connections.add(c);
    this.#counters[ACTIVE]++;
    // Joined before it is logged: in a worker, the relay (on the calling
    // thread) hears of the member before anyone reads that record.
    this.#relay?.join(c);
    // Guarded: formatting the peer costs, per connection, even unlogged.
    if (this.#log.isEnabledFor("info")) {
      this.#log.info("Opened {peer} ({active} open)", {
        peer: c.peer,
        active: this.#connections.size,
      });
    }
    if (config.idleTimeout > 0) {
      c.idle = new IdleTimer(config.idleTimeout, () => c.close("idle timeout"));
    }
    try {
      conn.setNoDelay(true);
    } catch (error) {
      return c.end(describeError(error));
    }
    if (this.mode === "echo") return c.echo();
    const lines = this.#relay === undefined
      ? echoLines(c, config.maxLineBytes)
      : relayLines(c, this.#relay, config.maxLineBytes);
    lines.then(
      (reason) => c.end(reason),
      (error) => c.end(c.closedBecause ?? describeError(error)),
    );
  }

  #ended(c: Connection, reason: string): void {
    this.#relay?.leave(c);
    c.close(reason);
    this.#connections.delete(c);
    this.#counters[ACTIVE]--;
    Atomics.sub(this.#open, 0, 1);
    if (this.#log.isEnabledFor("info")) {
      this.#log.info(
        `Closed {peer} after {durationMs} ms: {bytesIn} ${
          plural(c.bytesIn, "byte")
        } in, {bytesOut} ${plural(c.bytesOut, "byte")} out ({reason})`,
        {
          peer: c.peer,
          durationMs: Date.now() - c.openedAt,
          bytesIn: c.bytesIn,
          bytesOut: c.bytesOut,
          reason,
        },
      );
    }
    this.#finishIfDone();
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
  c.counters[BYTES_IN] += n;
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
    if (c.finishing !== undefined) return await discardRest(c);
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
  relay: RelayPort,
  maxLineBytes: number,
): Promise<string> {
  const splitter = new LineSplitter(maxLineBytes);
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const chunk = await readChunk(c, buffer);
    if (c.finishing !== undefined) return await discardRest(c);
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

/** Ends `c` politely (see `Connection.finish`); returns why it ended. */
function closeGently(c: Connection, reason: string): Promise<string> {
  c.finish(reason);
  return discardRest(c);
}

/**
 * Reads and discards what a finishing connection still receives, until the
 * client closes or the linger closes it; returns why it ended.
 */
async function discardRest(c: Connection): Promise<string> {
  const buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  try {
    while (await readChunk(c, buffer) !== null) {
      // Discard.
    }
  } catch (error) {
    if (c.closedBecause === undefined) throw error;
  }
  return c.finishing!;
}
