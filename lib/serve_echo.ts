import { getLogger } from "@logtape/logtape";
import {
  assertLimit,
  assertMilliseconds,
  assertPort,
  describeError,
  formatAddr,
  IdleTimer,
  LOG_CATEGORY,
} from "./_helpers.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

/** First read buffer of a connection: small, so idle connections cost little. */
const INITIAL_BUFFER_SIZE = 1024;
/** A connection's read buffer doubles each time a read fills it, up to this. */
const MAX_BUFFER_SIZE = 256 * 1024;
/** First and last delay between retries when `accept()` keeps failing. */
const ACCEPT_BACKOFF_MIN_MS = 5;
const ACCEPT_BACKOFF_MAX_MS = 1000;

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
  /** Bytes echoed back to clients. */
  readonly bytesOut: number;
}

/** A running echo server, as returned by {@linkcode serveEcho}. */
export interface EchoServer extends AsyncDisposable {
  /** The address the server listens on, with the port really bound. */
  readonly addr: Deno.NetAddr;
  /** Resolves once the listener and every connection are closed. */
  readonly finished: Promise<void>;
  /** The server's counters at this instant. */
  readonly stats: EchoServerStats;
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
 * echoes everything still owed and then closes.
 *
 * One connection's failure (a reset, a client that stops reading) never
 * affects another; failed accepts (such as too many open files) are logged
 * and retried with backoff.
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

/** One client connection and its counters. */
class Connection {
  readonly conn: Deno.TcpConn;
  readonly peer: string;
  readonly openedAt: number = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  idle: IdleTimer | undefined;
  /** Why the server closed it, when the server did. */
  closedBecause: string | undefined;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.peer = formatAddr(conn.remoteAddr);
  }

  /** Closes the socket now; pending reads and writes reject. */
  close(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    this.idle?.clear();
    try {
      this.conn.close();
    } catch {
      // Already closed by the echo loop.
    }
  }
}

class Server implements EchoServer {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  #listener: Deno.TcpListener;
  #maxConnections: number;
  #idleTimeout: number;
  #gracePeriod: number;
  #signal: AbortSignal | undefined;
  #connections = new Set<Connection>();
  #accepted = 0;
  #rejected = 0;
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
    } = options;
    assertPort(port);
    assertLimit("maxConnections", maxConnections);
    assertMilliseconds("idleTimeout", idleTimeout);
    assertMilliseconds("gracePeriod", gracePeriod, true);
    signal?.throwIfAborted();

    this.#maxConnections = maxConnections;
    this.#idleTimeout = idleTimeout;
    this.#gracePeriod = gracePeriod;
    this.#listener = Deno.listen({ hostname, port, transport: "tcp" });
    this.addr = this.#listener.addr;
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#signal = signal;
    signal?.addEventListener("abort", this.#abort, { once: true });
    logger.debug("Listening on {address}", { address: formatAddr(this.addr) });
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
    };
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

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const c = new Connection(conn);
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
      await echo(c);
    } catch (error) {
      reason = c.closedBecause ?? describeError(error);
    } finally {
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
 * Echoes until the client half-closes; the caller's close then sends our FIN
 * after everything echoed. Reads into a buffer that starts small and doubles
 * whenever a read fills it.
 */
async function echo(c: Connection): Promise<void> {
  const conn = c.conn;
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) break;
    c.bytesIn += n;
    c.idle?.touch();
    for (let written = 0; written < n;) {
      const w = await conn.write(buffer.subarray(written, n));
      written += w;
      c.bytesOut += w;
      c.idle?.touch();
    }
    if (n === buffer.length && n < MAX_BUFFER_SIZE) {
      buffer = new Uint8Array(n * 2);
    }
  }
}
