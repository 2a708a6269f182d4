import {
  assertInteger,
  assertLimit,
  assertMilliseconds,
  assertPort,
  optionError,
} from "./_helpers.ts";
import { MAX_CHAT_OVERHEAD } from "./relay/chat.ts";
import { localShared, Server } from "./server/engine.ts";
import type { ServerConfig } from "./server/config.ts";
import { assertWorkersSupported, WorkerPool } from "./workers/pool.ts";
import { type EchoServer, MODES, type ServeEchoOptions } from "./types.ts";

/**
 * Most `workers`: four per core. A worker costs about 11.5 MB and 65 ms to
 * start, and more threads than cores only take turns.
 */
export const MAX_WORKERS: number = 4 * navigator.hardwareConcurrency;

/** Largest `maxLineBytes`. */
const MAX_LINE_LIMIT = 16 * 1024 * 1024;

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
 * @throws {RangeError} An option is out of range; the error's `option` field
 * names it and its `reason` field says what is wrong.
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
  assertInteger("workers", count, 1, MAX_WORKERS, " (4 per core) or auto");
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
  } = options;
  assertPort(port);
  assertLimit("maxConnections", maxConnections);
  assertMilliseconds("idleTimeout", idleTimeout);
  assertMilliseconds("gracePeriod", gracePeriod, true);
  if (!(MODES as readonly string[]).includes(mode)) {
    throw optionError(
      "mode",
      `must be one of ${MODES.join(", ")}, got ${mode}`,
    );
  }
  assertInteger("maxLineBytes", maxLineBytes, 1, MAX_LINE_LIMIT);
  assertInteger("channelCapacity", channelCapacity, 2, 2 ** 31 - 1);
  const longestLine = (mode === "chat" ? 3 : 1) * maxLineBytes + 2 +
    MAX_CHAT_OVERHEAD;
  assertInteger("channelBytes", channelBytes, 2 * longestLine, 2 ** 53 - 1);
  const { history = Math.min(20, Math.floor(channelCapacity / 2)) } = options;
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
