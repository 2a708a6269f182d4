import {
  assertInteger,
  assertLimit,
  assertMilliseconds,
  assertPort,
} from "./_helpers.ts";
import { MAX_CHAT_OVERHEAD } from "./_relay.ts";
import { localShared, Server, type ServerConfig } from "./_server.ts";
import { assertWorkersSupported, WorkerPool } from "./_workers.ts";

/**
 * Most `workers`: four per core. A worker costs about 11.5 MB and 65 ms to
 * start, and more threads than cores only take turns.
 */
export const MAX_WORKERS: number = 4 * navigator.hardwareConcurrency;

/** Largest `maxLineBytes`. */
const MAX_LINE_LIMIT = 16 * 1024 * 1024;

/**
 * What the server does with what a client sends; see
 * {@linkcode ServeEchoOptions.mode}.
 */
export type EchoMode = "echo" | "line" | "broadcast" | "chat";

/** The modes {@linkcode ServeEchoOptions.mode} accepts (for the CLI). */
export const MODES: readonly EchoMode[] = ["echo", "line", "broadcast", "chat"];

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
   * before it ends them; `Infinity` waits for every client to close. Ending
   * is polite: the server stops reading, sends what it has in flight,
   * half-closes, and closes once the client closes or after one more
   * second, so a client sees a clean end of stream and an exact prefix of
   * its echo.
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
   *   notices, `/nick NAME`, `/join ROOM`, `/who` and `/quit` (in any
   *   case). Text is for people's terminals: invalid UTF-8 and every control
   *   character but TAB (a bare CR, escape sequences) become U+FFFD, and a
   *   name cannot pass for the server's text or another user's prefix.
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
   * `channelCapacity`. At least twice the longest line the server may send:
   * `2 * (maxLineBytes + 134)`, or in chat mode, where each control
   * character or invalid UTF-8 byte becomes the 3-byte U+FFFD,
   * `2 * (3 * maxLineBytes + 134)`.
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
  /**
   * How many threads serve connections: the calling thread and
   * `workers - 1` Web Workers, each with its own listener on the same port
   * (`SO_REUSEPORT`), so that the kernel spreads new connections over them.
   * `"auto"` is one per core (`navigator.hardwareConcurrency`); at most
   * four per core (a worker costs about 11.5 MB). Counters,
   * limits, shutdown, the signal and every mode span all workers: a
   * broadcast or chat line reaches the clients of every worker, through a
   * relay that runs on the calling thread.
   *
   * More than one needs Linux, Deno's `--unstable-net` flag, and read
   * access to this package's worker module when it is loaded from disk. A
   * port that another process listens on is refused
   * (`Deno.errors.AddrInUse`), as without workers: the listeners only share
   * the port among themselves.
   *
   * @default {1}
   */
  workers?: number | "auto";
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
  /**
   * Connections lost before they could be served: `accept()` failed for
   * that one connection, most often because the client reset it while it
   * waited to be accepted. Not in `accepted`.
   */
  readonly acceptErrors: number;
  /**
   * Connections accepted by each worker, the calling thread's first (one
   * number without workers).
   */
  readonly perWorker: readonly number[];
}

/** A running echo server, as returned by {@linkcode serveEcho}. */
export interface EchoServer extends AsyncDisposable {
  /** The address the server listens on, with the port really bound. */
  readonly addr: Deno.NetAddr;
  /** Resolves once the listener and every connection are closed. */
  readonly finished: Promise<void>;
  /**
   * Resolves once every worker listens (at once without workers); until
   * then, the calling thread's listener takes every connection. Rejects if
   * a worker failed to start.
   */
  readonly ready: Promise<void>;
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
   * `gracePeriod` milliseconds, then ends the rest politely (see
   * {@linkcode ServeEchoOptions.gracePeriod}). Calling it again returns the
   * same promise.
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
 * One connection's failure (a reset, even before it was accepted; a client
 * that stops reading) never affects another. When accepting fails for want
 * of a resource (too many open files, no buffers or memory), the failure is
 * logged and accepting retried with backoff.
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
 * @throws {Deno.errors.NotSupported} `workers` is more than 1, and this is not
 * Linux or Deno runs without `--unstable-net`.
 * @throws {Deno.errors.NotCapable} `workers` is more than 1 and Deno may not
 * read the worker module (`--allow-read`).
 * @throws {unknown} `options.signal.reason` when the signal is already aborted.
 */
export function serveEcho(options: ServeEchoOptions = {}): EchoServer {
  const { signal, workers = 1, ...rest } = options;
  const config = checkOptions(rest);
  const count = workers === "auto" ? navigator.hardwareConcurrency : workers;
  assertInteger("workers", count, 1, MAX_WORKERS);
  signal?.throwIfAborted();
  if (count === 1) return new Server(config, localShared(), signal);
  assertWorkersSupported();
  return new WorkerPool(config, count, signal);
}

/** Checks every option and fills in the defaults. */
function checkOptions(
  options: Omit<ServeEchoOptions, "signal" | "workers">,
): ServerConfig {
  const {
    hostname = "127.0.0.1",
    port = 9000,
    maxConnections = Infinity,
    idleTimeout = 0,
    gracePeriod = 5000,
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
  const longestLine = (mode === "chat" ? 3 : 1) * maxLineBytes + 2 +
    MAX_CHAT_OVERHEAD;
  assertInteger("channelBytes", channelBytes, 2 * longestLine, 2 ** 53 - 1);
  assertInteger("history", history, 0, Math.floor(channelCapacity / 2));
  return {
    hostname,
    port,
    maxConnections,
    idleTimeout,
    gracePeriod,
    mode,
    maxLineBytes,
    channelCapacity,
    channelBytes,
    history,
  };
}
