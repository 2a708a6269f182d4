import {
  assertChoice,
  assertInteger,
  assertLimit,
  assertMilliseconds,
  assertPort,
  optionError,
} from "./_helpers.ts";
import { ChatUsers } from "./relay/chat_users.ts";
import { HISTORY_SYNCS } from "./relay/chat_history.ts";
import {
  certNamesConfig,
  chatLineBytes,
  isChatName,
  MAX_CHAT_OVERHEAD,
} from "./relay/chat.ts";
import { redisConfig } from "./relay/redis_bus.ts";
import { localShared } from "./server/engine.ts";
import { STREAMS_FEATURES } from "./server/features.ts";
import { assertDatagramFaults, checkFaults } from "./faults/spec.ts";
import { upstreamConfig } from "./upstream/config.ts";
import { NATIVE_FEATURES } from "./native/features.ts";
import { assertServed } from "./core/features.ts";
import { assertNativeSupported, NativeServer } from "./native/native_server.ts";
import { assertDatagramsSupported, DatagramEcho } from "./server/datagram.ts";
import { WithDatagrams } from "./server/with_datagrams.ts";
import { listenersFor } from "./server/with_websocket.ts";
import { websocketConfig } from "./websocket/config.ts";
import { type Backend, ServerHandle } from "./core/handle.ts";
import type { ListenConfig, ServerConfig } from "./core/config.ts";
import { accessConfig } from "./rules/access.ts";
import { limitsConfig } from "./rules/limits.ts";
import { proxyConfig } from "./transport/proxied.ts";
import { unixListenConfig } from "./transport/unix.ts";
import { tlsListenConfig } from "./transport/tls.ts";
import { infoHost } from "./modes/info.ts";
import { assertWorkersSupported, WorkerPool } from "./workers/pool.ts";
import {
  type EchoServer,
  MODES,
  type ServeEchoOptions,
  type ServeEchoUnixOptions,
} from "./types.ts";

/**
 * Most `workers`: four per core. A worker costs about 11.5 MB and 65 ms to
 * start, and more threads than cores only take turns.
 */
export const MAX_WORKERS: number = 4 * navigator.hardwareConcurrency;

/** Largest `maxLineBytes`. */
const MAX_LINE_LIMIT = 16 * 1024 * 1024;

/**
 * Starts an echo server on a Unix domain socket: the same server as on TCP
 * (every mode and option but the address and workers), at `options.path`.
 *
 * @example Echo over a Unix socket
 * ```ts
 * import { echoOnce, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile({ suffix: ".sock" });
 * await Deno.remove(path);
 * await using server = serveEcho({ path });
 * await server.ready;
 * assert.equal(await echoOnce("hi", { path }), "hi");
 * ```
 *
 * @param options The socket's path, and how to serve.
 * @returns The running server; its `ready` resolves once it listens.
 * @throws {Deno.errors.AddrInUse} A file that is not a socket is at `path`.
 * @throws {RangeError} An option is out of range (`path` too long for a
 * socket, `workers` more than 1); the error's `option` field names it.
 * @throws {Deno.errors.NotFound} The directory does not exist.
 * @throws {unknown} `options.signal.reason` when the signal is already aborted.
 */
export function serveEcho(
  options: ServeEchoUnixOptions,
): EchoServer<Deno.UnixAddr>;
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
export function serveEcho(options?: ServeEchoOptions): EchoServer;
/**
 * Starts an echo server on TCP or on a Unix domain socket, as the shape of
 * `options` says: with a `path`, on a Unix socket.
 *
 * @param options Where to listen, and how to serve.
 * @returns The running server.
 * @throws {Deno.errors.AddrInUse} The port is taken, or a file that is not
 * a socket is at the path.
 * @throws {RangeError} An option is out of range; the error's `option` field
 * names it.
 */
export function serveEcho(
  options: ServeEchoOptions | ServeEchoUnixOptions,
): EchoServer<Deno.Addr>;
export function serveEcho(
  options: ServeEchoOptions | ServeEchoUnixOptions = {},
): EchoServer<Deno.Addr> {
  const { signal, workers = 1, engine = "default", ...rest } = options;
  const udp = "udp" in options ? options.udp ?? false : false;
  const config = checkOptions(rest);
  const count = workers === "auto" ? navigator.hardwareConcurrency : workers;
  assertInteger("workers", count, 1, MAX_WORKERS, " (4 per core) or auto");
  if (count > 1 && config.listen.transport === "unix") {
    throw optionError("workers", "a Unix socket is served on one thread");
  }
  if (udp !== false) checkDatagrams(config, udp);
  if (config.websocket !== undefined) {
    if (udp === "only") {
      throw optionError("websocket", 'not with udp "only"', TypeError);
    }
  }
  assertDatagramFaults(config.faults, udp !== false);
  const handle = (backend: Backend) =>
    new ServerHandle(backend, config, signal);
  if (engine === "native") {
    assertNativeSupported(config, udp !== false);
    signal?.throwIfAborted();
    return handle(new NativeServer(config, count, udp));
  }
  if (engine !== "default") {
    throw optionError("engine", `must be default or native, got ${engine}`);
  }
  assertServed(
    "default",
    config,
    udp !== false,
    STREAMS_FEATURES,
    { name: "the native engine", served: NATIVE_FEATURES },
  );
  // Deno.listenDatagram: the native engine binds through libc instead.
  if (udp !== false) assertDatagramsSupported();
  signal?.throwIfAborted();
  if (count > 1) assertWorkersSupported();
  const stream = (listen: ListenConfig): Backend => {
    const c = { ...config, listen };
    if (count === 1) return listenersFor(c, localShared());
    return new WorkerPool(c, count);
  };
  if (udp === false) return handle(stream(config.listen));
  return handle(withDatagrams(config, udp, stream));
}

/** Throws unless UDP can be served as `config` says. */
function checkDatagrams(
  config: ServerConfig,
  udp: unknown,
): asserts udp is true | "only" {
  if (udp !== true && udp !== "only") {
    throw optionError("udp", `must be true, false or "only", got ${udp}`);
  }
  if (config.listen.transport !== "tcp") {
    throw optionError(
      "udp",
      config.listen.transport === "tls"
        ? "UDP is not encrypted: not with cert and key"
        : "UDP is served on a host and port, not a Unix socket",
      TypeError,
    );
  }
  if (config.mode !== "echo" && config.mode !== "info") {
    throw optionError("udp", "UDP serves echo and info mode only");
  }
}

/**
 * UDP on the port number TCP gets (RFC 862 defines both on one port), or
 * alone. For port 0, UDP picks the port and TCP takes the same number; if
 * TCP finds it taken, another is tried.
 */
function withDatagrams(
  config: ServerConfig,
  udp: true | "only",
  stream: (listen: ListenConfig) => Backend,
): Backend {
  // checkDatagrams made sure: plain TCP.
  const tcp = config.listen as Extract<ListenConfig, { transport: "tcp" }>;
  const { hostname, port } = tcp;
  for (let attempt = 1;; attempt++) {
    const datagrams = new DatagramEcho(hostname, port, config);
    if (udp === "only") {
      return new WithDatagrams(undefined, datagrams);
    }
    try {
      const streams = stream({ ...tcp, port: datagrams.addr.port });
      return new WithDatagrams(streams, datagrams);
    } catch (error) {
      datagrams.close();
      const retry = port === 0 && attempt < 10 &&
        error instanceof Deno.errors.AddrInUse;
      if (!retry) throw error;
    }
  }
}

/** The options of one listener. */
type ListenerOptions =
  | Omit<ServeEchoOptions, "signal" | "workers" | "udp">
  | Omit<ServeEchoUnixOptions, "signal" | "workers">;

/** Where to listen, from the shape of the options, as Deno.serve does. */
function listenConfig(
  options: ListenerOptions,
): ListenConfig {
  if ("path" in options) return unixListenConfig(options);
  const { hostname = "127.0.0.1", port = 9000, cert, key } = options;
  assertPort(port);
  if (cert === undefined && key === undefined) {
    return { transport: "tcp", hostname, port };
  }
  return tlsListenConfig(options, hostname, port);
}

/** Checks every option and fills in the defaults. */
function checkOptions(
  options: ListenerOptions,
): ServerConfig {
  const listen = listenConfig(options);
  const {
    maxConnections = Infinity,
    idleTimeout = 0,
    gracePeriod = 5000,
    drainDelay = 0,
    mode = "echo",
    maxLineBytes = 8192,
    channelCapacity = 100,
    channelBytes = 1024 * 1024,
  } = options;
  assertLimit("maxConnections", maxConnections);
  assertMilliseconds("idleTimeout", idleTimeout);
  assertMilliseconds("gracePeriod", gracePeriod, true);
  assertMilliseconds("drainDelay", drainDelay);
  if (!(MODES as readonly string[]).includes(mode)) {
    throw optionError(
      "mode",
      `must be one of ${MODES.join(", ")}, got ${mode}`,
    );
  }
  assertInteger("maxLineBytes", maxLineBytes, 1, MAX_LINE_LIMIT);
  assertInteger("channelCapacity", channelCapacity, 2, 2 ** 31 - 1);
  const longestLine = mode === "chat"
    ? chatLineBytes(maxLineBytes)
    : maxLineBytes + 2 + MAX_CHAT_OVERHEAD;
  assertInteger("channelBytes", channelBytes, 2 * longestLine, 2 ** 53 - 1);
  const { history = Math.min(20, Math.floor(channelCapacity / 2)) } = options;
  assertInteger("history", history, 0, Math.floor(channelCapacity / 2));
  const { id = "" } = options;
  if (typeof id !== "string" || /[\r\n]/.test(id)) {
    throw optionError("id", "must be text without line breaks", TypeError);
  }
  const { maxBytesPerSecond = Infinity } = options;
  assertLimit("maxBytesPerSecond", maxBytesPerSecond);
  const { udpRate = 1000 } = options as ServeEchoOptions;
  assertLimit("udpRate", udpRate);
  const { chatRate = Infinity } = options;
  assertLimit("chatRate", chatRate);
  if (chatRate !== Infinity && mode !== "chat") {
    throw optionError("chatRate", "limits chat mode's lines only", TypeError);
  }
  const { chatUsers, chatRequireLogin = false } = options;
  if (chatUsers !== undefined) {
    if (typeof chatUsers !== "string") {
      throw optionError("chatUsers", "must be a users file's text", TypeError);
    }
    if (mode !== "chat") {
      throw optionError("chatUsers", "registers chat users only", TypeError);
    }
  }
  if (chatRequireLogin && chatUsers === undefined) {
    throw optionError("chatRequireLogin", "needs chatUsers", TypeError);
  }
  const { chatProtocol = "text" } = options;
  assertChoice("chatProtocol", chatProtocol, ["text", "json"] as const);
  if (chatProtocol !== "text" && mode !== "chat") {
    throw optionError("chatProtocol", "is chat mode's", TypeError);
  }
  const { historyFile, historySync = "second" } = options;
  if (historyFile !== undefined) {
    if (typeof historyFile !== "string" || historyFile === "") {
      throw optionError("historyFile", "must be a file's path", TypeError);
    }
    if (mode !== "chat") {
      throw optionError("historyFile", "keeps chat history only", TypeError);
    }
  }
  assertChoice("historySync", historySync, HISTORY_SYNCS);
  const { filePort = 0 } = options;
  assertInteger("filePort", filePort, 0, 65535);
  const { maxFileBytes = mode === "chat" ? 2 ** 30 : 0 } = options;
  assertInteger("maxFileBytes", maxFileBytes, 0, 2 ** 53 - 1);
  if (maxFileBytes > 0 && mode !== "chat") {
    throw optionError("maxFileBytes", "is chat mode's", TypeError);
  }
  if (options.filePort !== undefined && maxFileBytes === 0) {
    throw optionError(
      "filePort",
      "needs file transfer: chat mode with maxFileBytes above 0",
      TypeError,
    );
  }
  return {
    listen,
    proxy: proxyConfig(options),
    access: accessConfig(options),
    limits: limitsConfig(options),
    maxBytesPerSecond,
    faults: options.faults === undefined ? [] : checkFaults(options.faults),
    liveFaults: options.liveFaults ?? false,
    upstream: upstreamConfig(options),
    websocket: websocketConfig(options as ServeEchoOptions, mode),
    udpRate,
    redis: redisConfig(options, mode),
    host: mode === "info"
      ? infoHost()
      : options.websocket !== undefined
      ? infoHost("websocket")
      : "",
    id,
    maxConnections,
    idleTimeout,
    gracePeriod,
    drainDelay,
    mode,
    maxLineBytes,
    channelCapacity,
    channelBytes,
    history,
    certNames: certNamesConfig(options, mode),
    chatRate,
    chatUsers: chatUsers === undefined
      ? undefined
      : new ChatUsers(chatUsers, isChatName),
    chatRequireLogin,
    historyFile,
    historySync,
    chatProtocol,
    maxFileBytes,
    filePort,
  };
}
