// Private: serveEcho's native engine on the calling thread. It binds the
// listening sockets here (so that a port in use throws at the call site),
// starts one Web Worker per loop (lib/native/worker.ts), each blocking in
// its own epoll_wait(), and talks to them only through shared memory and an
// eventfd per worker: a command in `control`, then a write to the eventfd
// that wakes the loop. This thread's event loop stays free. Not exported
// from mod.ts.

import { UpstreamFollower } from "../upstream/follow.ts";
import type { Fault } from "../faults/spec.ts";
import { getLogger } from "../_logtape.ts";
import { isIP } from "node:net";
import { formatAddr, LOG_CATEGORY, optionError } from "../_helpers.ts";
import { type ServerConfig, tlsOf, type TlsSettings } from "../core/config.ts";
import { newLimitsTable } from "../rules/limits.ts";
import { COUNTERS, sumStats } from "../core/counters.ts";
import { assertServed } from "../core/features.ts";
import { STREAMS_FEATURES } from "../server/features.ts";
import { NATIVE_FEATURES } from "./features.ts";
import type { ClusterStatus, EchoServerStats } from "../types.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  assertNativeRuns,
  EACCES,
  EADDRINUSE,
  EADDRNOTAVAIL,
  ECONNREFUSED,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  ENOENT,
  errnoText,
  fromSockaddr,
  type Native,
  openLibc,
  resolveName,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  sockaddr,
  SOCKADDR_MAX,
  SOL_SOCKET,
  unixSockaddr,
} from "./ffi.ts";
import { inUse, notASocket, removeStale } from "../transport/unix.ts";
import { openSsl } from "../tls/openssl.ts";
import { TlsContext } from "../tls/context.ts";
import { DRAIN, FINISH, type LoopRecord, STOP } from "./loop.ts";
import type { Relay } from "../relay/relay.ts";
import { RelayBridge } from "../relay/bridge.ts";
import { newRelay } from "../relay/for_mode.ts";
import type {
  FromNativeWorker,
  NativeWorkerInit,
  ToNativeWorker,
} from "./worker.ts";
import type { Backend } from "../core/handle.ts";
import { drainPolitely } from "../core/lifecycle.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);
const encoder = new TextEncoder();
const WORKER_URL = new URL("./worker.ts", import.meta.url);
/** The listen queue; the kernel caps it at `net.core.somaxconn`. */
const BACKLOG = 4096;

/**
 * Throws unless OpenSSL 3 loads and makes the server's contexts of
 * `listen` (an option error naming the one it cannot use).
 */
function checkTls(listen: TlsSettings): void {
  const lib = openSsl();
  try {
    TlsContext.server(lib, listen).free();
  } finally {
    lib.close();
  }
}

/**
 * Throws unless the native engine can serve `config` here: Linux on x86_64
 * or aarch64, `--allow-ffi`, read access to its worker's module, and only
 * the features in {@linkcode NATIVE_FEATURES}.
 */
export function assertNativeSupported(
  config: ServerConfig,
  udp: boolean,
): void {
  assertServed("native", config, udp, NATIVE_FEATURES, {
    name: "the default engine",
    served: STREAMS_FEATURES,
  });
  assertNativeRuns(WORKER_URL);
}

/**
 * `hostname` as an IP address to bind: `localhost` is 127.0.0.1; any other
 * name is refused (the engine binds synchronously, and a name could stand
 * for any address).
 */
function ipAddress(hostname: string): string {
  if (hostname === "localhost") return "127.0.0.1";
  if (isIP(hostname) === 0) {
    throw optionError(
      "hostname",
      `the native engine binds an IP address or localhost, got ${hostname}`,
      TypeError,
    );
  }
  return hostname;
}

/**
 * `config` with its upstream's host name resolved to an IP address, once,
 * here: the loops connect to an address (the default engine resolves at
 * each connect). Logs still name the upstream as given.
 */
function withUpstreamResolved(
  native: Native,
  config: ServerConfig,
): ServerConfig {
  const upstream = config.upstream;
  if (upstream?.to.transport !== "tcp" || isIP(upstream.to.hostname) !== 0) {
    return config;
  }
  let hostname: string;
  try {
    hostname = resolveName(native, upstream.to.hostname);
  } catch (error) {
    throw optionError(
      "upstream",
      (error as Error).message.replace(/^Cannot/, "cannot"),
    );
  }
  return {
    ...config,
    upstream: { ...upstream, to: { ...upstream.to, hostname } },
  };
}

/** The error Deno itself throws for a failed bind or listen. */
function bindError(what: string, errno: number, address: string): Error {
  const message = `${what} ${address}: ${errnoText(errno)}`;
  if (errno === EADDRINUSE) return new Deno.errors.AddrInUse(message);
  if (errno === EADDRNOTAVAIL) return new Deno.errors.AddrNotAvailable(message);
  if (errno === EACCES) return new Deno.errors.PermissionDenied(message);
  if (errno === ENOENT) return new Deno.errors.NotFound(message);
  return new Error(message);
}

/**
 * A listening Unix socket at `path`. A socket file nothing answers on (a
 * server killed left it) is replaced, as the default engine does; a live
 * server there, or a file that is not a socket, is `AddrInUse`.
 */
function listenUnixSocket(native: Native, path: string): number {
  const { libc } = native;
  const address = unixSockaddr(path);
  const open = () =>
    libc.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  for (let attempt = 0;; attempt++) {
    const fd = open();
    if (fd < 0) {
      throw bindError("Cannot open a socket for", native.errno(), path);
    }
    if (libc.bind(fd, address, address.length) === 0) {
      if (libc.listen(fd, BACKLOG) === 0) return fd;
      const errno = native.errno();
      libc.close(fd);
      throw bindError("Cannot listen on", errno, path);
    }
    const errno = native.errno();
    libc.close(fd);
    if (errno !== EADDRINUSE || attempt > 0) {
      throw bindError("Cannot bind", errno, path);
    }
    if (!Deno.lstatSync(path).isSocket) throw notASocket(path);
    // Does a server answer there? A blocking connect, on this thread.
    const probe = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const answered = libc.connect(probe, address, address.length) === 0;
    const refused = !answered && native.errno() === ECONNREFUSED;
    libc.close(probe);
    if (!refused) throw inUse(path);
    removeStale(path);
  }
}

/**
 * One socket bound to `hostname:port` (`port` 0 takes any), listening if it
 * is a stream (`type` SOCK_STREAM; SOCK_DGRAM for UDP). Returns fd and port.
 */
function listenSocket(
  native: Native,
  hostname: string,
  port: number,
  reusePort: boolean,
  type = SOCK_STREAM,
): { fd: number; port: number } {
  const { libc } = native;
  const address = sockaddr(native, hostname, port);
  const family = hostname.includes(":") ? AF_INET6 : AF_INET;
  const fd = libc.socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const shown = formatAddr({ hostname, port });
  if (fd < 0) {
    throw bindError("Cannot open a socket for", native.errno(), shown);
  }
  const one = new Int32Array([1]);
  libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4);
  if (reusePort) libc.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, one, 4);
  if (libc.bind(fd, address, address.length) < 0) {
    const errno = native.errno();
    libc.close(fd);
    throw bindError("Cannot bind", errno, shown);
  }
  if (type === SOCK_STREAM && libc.listen(fd, BACKLOG) < 0) {
    const errno = native.errno();
    libc.close(fd);
    throw bindError("Cannot listen on", errno, shown);
  }
  const bound = new Uint8Array(SOCKADDR_MAX);
  const length = new Uint32Array([bound.length]);
  libc.getsockname(fd, bound, length);
  return { fd, port: fromSockaddr(native, bound).port };
}

/**
 * The sockets of `workers` loops on `hostname:port`: each loop's own (with
 * SO_REUSEPORT when there are several), for TCP unless `udp` is `"only"`,
 * and for UDP with `udp`, on the same port number (RFC 862 defines both on
 * one). For port 0, UDP picks the port and TCP takes the same number; if
 * TCP finds it taken, another is tried.
 */
function bindAll(
  native: Native,
  hostname: string,
  port: number,
  workers: number,
  udp: boolean | "only",
): { tcp: number[]; udp: number[]; port: number } {
  for (let attempt = 1;; attempt++) {
    const fds = { tcp: [] as number[], udp: [] as number[], port };
    try {
      for (
        const [kind, type] of [["udp", SOCK_DGRAM], [
          "tcp",
          SOCK_STREAM,
        ]] as const
      ) {
        if (kind === "udp" ? udp === false : udp === "only") continue;
        if (workers > 1) {
          // Claimed alone first: a port another server holds, even one that
          // shares it (SO_REUSEPORT), is AddrInUse, not joined.
          const claim = listenSocket(native, hostname, fds.port, false, type);
          native.libc.close(claim.fd);
          fds.port = claim.port;
        }
        for (let i = 0; i < workers; i++) {
          const socket = listenSocket(
            native,
            hostname,
            fds.port,
            workers > 1,
            type,
          );
          fds[kind].push(socket.fd);
          fds.port = socket.port;
        }
      }
      return fds;
    } catch (error) {
      for (const fd of [...fds.tcp, ...fds.udp]) native.libc.close(fd);
      const retry = port === 0 && udp !== false && attempt < 10 &&
        error instanceof Deno.errors.AddrInUse;
      if (!retry) throw error;
    }
  }
}

/** One loop's worker, seen from here. */
interface Loop {
  /** Its place among the loops: its slot in `#mail`. */
  index: number;
  worker: Worker;
  wakeFd: number;
  started: Promise<void>;
  done: Promise<void>;
  /** Its clients' side of the relay, in broadcast and chat mode. */
  bridge: RelayBridge | undefined;
}

/** serveEcho with `engine: "native"`: echo loops over libc in workers. */
export class NativeServer implements Backend {
  readonly addr: Deno.NetAddr | Deno.UnixAddr;
  readonly finished: Promise<void>;
  readonly ready: Promise<void>;
  readonly engine = "native" as const;
  readonly transport: "tcp" | "tls" | "unix" | "udp" | "websocket";
  #native: Native;
  #config: ServerConfig;
  readonly datagrams: boolean;
  #loops: Loop[] = [];
  #control = new Int32Array(new SharedArrayBuffer(4));
  #counters: Float64Array;
  #open = new Int32Array(new SharedArrayBuffer(4));
  /** Operator lines posted to each loop (see LoopConfig.mail). */
  #mail!: Int32Array;
  #done = false;
  #wake = new BigUint64Array([1n]);
  /** The relay, in broadcast and chat mode: here, for every loop. */
  #relay: Relay | undefined;
  /** Reloads under way, by id: each loop's answer, an error if it failed. */
  #reloads = new Map<number, (error?: string) => void>();
  #nextReload = 1;
  /** Proxy mode to an upstream named by a host name: its name, followed. */
  #follower: UpstreamFollower | undefined;

  constructor(
    config: ServerConfig,
    workers: number,
    udp: boolean | "only",
  ) {
    const { listen } = config;
    // OpenSSL is there and takes the certificate and key, or this throws
    // now rather than in every loop.
    const tls = tlsOf(listen);
    if (tls !== undefined) checkTls(tls);
    this.#config = config;
    this.datagrams = udp !== false;
    this.transport = listen.transport;
    const hostname = listen.transport === "unix"
      ? ""
      : ipAddress(listen.hostname);
    this.#native = openLibc();
    let fds: { tcp: number[]; udp: number[] };
    try {
      this.#config = withUpstreamResolved(this.#native, config);
      if (listen.transport === "unix") {
        fds = { tcp: [listenUnixSocket(this.#native, listen.path)], udp: [] };
        this.addr = { transport: "unix", path: listen.path };
      } else {
        const bound = bindAll(
          this.#native,
          hostname,
          listen.port,
          workers,
          udp,
        );
        fds = bound;
        this.addr = {
          transport: udp === "only" ? "udp" : "tcp",
          hostname,
          port: bound.port,
        };
        if (udp === "only") this.transport = "udp";
      }
    } catch (error) {
      this.#native.close();
      throw error;
    }
    this.#counters = new Float64Array(
      new SharedArrayBuffer(workers * COUNTERS * 8),
    );
    this.#mail = new Int32Array(new SharedArrayBuffer(workers * 4));
    // It counts in the first loop's counters.
    this.#relay = newRelay(config, this.#counters.subarray(0, COUNTERS));
    const log = {
      logInfo: logger.isEnabledFor("info"),
      logDebug: logger.isEnabledFor("debug"),
    };
    const udpTable = newLimitsTable();
    for (
      let index = 0;
      index < Math.max(fds.tcp.length, fds.udp.length);
      index++
    ) {
      const sockets = {
        listenFd: fds.tcp[index] ?? -1,
        udpFd: fds.udp[index] ?? -1,
        udpTable,
      };
      this.#loops.push(this.#startLoop(index, workers, sockets, log));
    }
    this.#follower = this.#followUpstream(config);
    this.ready = Promise.all([
      ...this.#loops.map((l) => l.started),
      this.#relay?.ready,
    ]).then(() => {});
    this.ready.catch(() => {}); // Whoever awaits it sees the error.
    this.finished = Promise.all(this.#loops.map((l) => l.done)).then(
      async () => {
        this.#done = true;
        await this.#follower?.stop();
        for (const loop of this.#loops) loop.bridge?.close(false);
        // The loops' last leave notices may still be on their way.
        await this.#relay?.close();
        // As Deno's own listener does on an orderly close.
        if (this.addr.transport === "unix") removeSocketFile(this.addr.path);
        for (const loop of this.#loops) {
          this.#native.libc.close(loop.wakeFd);
          loop.worker.terminate();
        }
        this.#native.close();
      },
    );
    logger.debug("Listening on {address} in {mode} mode (native engine)", {
      address: formatAddr(this.addr),
      mode: config.mode,
    });
  }

  /**
   * Follows the upstream's host name (`config` has it as given; this
   * server's config, the address it gave at the start): when it gives
   * another address, every loop connects there from then on.
   */
  #followUpstream(config: ServerConfig): UpstreamFollower | undefined {
    const named = config.upstream?.to;
    const resolved = this.#config.upstream?.to;
    if (
      named?.transport !== "tcp" || resolved?.transport !== "tcp" ||
      isIP(named.hostname) !== 0
    ) {
      return undefined;
    }
    const upstream = config.upstream!.address;
    return new UpstreamFollower(named.hostname, resolved.hostname, {
      moved: async (address, was) => {
        await this.#everyLoop((id) => ({
          t: "upstreamAddress",
          id,
          hostname: address,
        }));
        // Said once every loop connects there.
        if (this.#done) return;
        logger.info(
          "Upstream {upstream} now resolves to {address} (was {was}): new connections go there",
          { upstream, address, was },
        );
      },
      failed: (reason) => {
        logger.warn(
          "Cannot look up upstream {upstream} again: {reason}; connections go to {address} meanwhile",
          {
            upstream,
            reason,
            address: this.#follower?.address ?? resolved.hostname,
          },
        );
      },
    });
  }

  #startLoop(
    index: number,
    count: number,
    sockets: Pick<NativeWorkerInit, "listenFd" | "udpFd" | "udpTable">,
    log: { logInfo: boolean; logDebug: boolean },
  ): Loop {
    const wakeFd = this.#native.libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const worker = new Worker(WORKER_URL, { type: "module" });
    const workerLogger = count > 1 ? logger.with({ worker: index }) : logger;
    let started!: () => void;
    let failed!: (error: Error) => void;
    let done!: () => void;
    const loop: Loop = {
      index,
      worker,
      wakeFd,
      started: new Promise((resolve, reject) => {
        started = resolve;
        failed = reject;
      }),
      done: new Promise((resolve) => done = resolve),
      bridge: this.#relay &&
        new RelayBridge(this.#relay, (message) => this.#mailTo(loop, message)),
    };
    loop.started.catch(() => {});
    worker.onmessage = (event: MessageEvent<FromNativeWorker>) => {
      const message = event.data;
      switch (message.t) {
        case "started":
          return started();
        case "records":
          for (const r of message.records) emit(workerLogger, r);
          return;
        case "failed":
          logger.error("Native loop {index} failed: {error}", {
            index,
            error: message.message,
          });
          return failed(new Error(message.message));
        case "done":
          return done();
        case "reloaded":
          return this.#reloads.get(message.id)?.(message.error);
        default:
          loop.bridge?.receive(message);
      }
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      failed(new Error(event.message));
      done();
    };
    const init: NativeWorkerInit = {
      t: "init",
      ...sockets,
      wakeFd,
      control: this.#control.buffer as SharedArrayBuffer,
      counters: this.#counters.buffer as SharedArrayBuffer,
      offset: index * COUNTERS,
      length: COUNTERS,
      open: this.#open.buffer as SharedArrayBuffer,
      mail: this.#mail.buffer as SharedArrayBuffer,
      index,
      server: this.#config,
      address: formatAddr(this.addr),
      ...log,
    };
    worker.postMessage(init satisfies ToNativeWorker);
    return loop;
  }

  get stats(): EchoServerStats {
    return sumStats(this.#counters);
  }

  clusterStatus(): Promise<ClusterStatus | undefined> {
    return this.#relay?.status() ?? Promise.resolve(undefined);
  }

  announce(message: string): number {
    if (this.#relay !== undefined) {
      const clients = this.#relay.size;
      this.#relay.announce(message);
      return clients;
    }
    const clients = Atomics.load(this.#open, 0);
    const line = encoder.encode(`${message}\n`);
    for (const loop of this.#loops) this.#mailTo(loop, { t: "announce", line });
    return clients;
  }

  /**
   * New TLS handshakes on every loop use `listen`'s certificates, once
   * OpenSSL here has taken them.
   *
   * @throws {TypeError} One is not usable: no loop changes.
   */
  /**
   * Connections accepted from now on, on every loop, get `faults`, once
   * each loop has taken them; open ones keep theirs. What this engine
   * cannot act out is refused, naming the engine that can.
   */
  async setFaults(faults: Fault[]): Promise<void> {
    assertServed(
      "native",
      { ...this.#config, faults },
      this.datagrams,
      NATIVE_FEATURES,
      { name: "the default engine", served: STREAMS_FEATURES },
    );
    this.#config = { ...this.#config, faults };
    if (this.#done) return;
    await this.#everyLoop((id) => ({ t: "setFaults", id, faults }));
  }

  async reloadTls(listen: TlsSettings): Promise<void> {
    checkTls(listen);
    await this.#everyLoop((id) => ({ t: "reloadTls", id, listen }));
  }

  /**
   * Mails every loop a change (`change(id)`) and resolves once each has
   * answered that it took it.
   *
   * @throws {Error} A loop could not take it (its answer says why).
   */
  #everyLoop(
    change: (id: number) => Extract<ToNativeWorker, { id: number }>,
  ): Promise<void> {
    // Finished loops take no mail.
    if (this.#done) return Promise.resolve();
    return Promise.all(
      this.#loops.map((loop) =>
        new Promise<void>((resolve, reject) => {
          const id = this.#nextReload++;
          this.#reloads.set(id, (error) => {
            this.#reloads.delete(id);
            if (error === undefined) resolve();
            else reject(new Error(`Native loop ${loop.index}: ${error}`));
          });
          this.#mailTo(loop, change(id));
        })
      ),
    ).then(() => {});
  }

  /**
   * Posts `message` to `loop`'s worker, and has the loop take it: posted
   * first, counted second, so that a loop that sees the count ahead
   * returns to its worker's event loop, where the message is waiting.
   */
  #mailTo(loop: Loop, message: ToNativeWorker): void {
    if (this.#done) return;
    loop.worker.postMessage(message);
    Atomics.add(this.#mail, loop.index, 1);
    this.#wakeLoop(loop);
  }

  /** Tells every loop `command`, unless a later one was told already. */
  #tell(command: number): void {
    if (Atomics.load(this.#control, 0) >= command) return;
    Atomics.store(this.#control, 0, command);
    for (const loop of this.#loops) this.#wakeLoop(loop);
  }

  /** Wakes `loop` from epoll_wait(), to look at what changed. */
  #wakeLoop(loop: Loop): void {
    // Once finished, the eventfd is closed and its number may be reused.
    if (this.#done) return;
    this.#native.libc.write(loop.wakeFd, this.#wake, this.#wake.byteLength);
  }

  drain(): Promise<void> {
    const loops = this.#loops;
    return drainPolitely({
      gracePeriod: this.#config.gracePeriod,
      active: Atomics.load(this.#open, 0),
      stopAccepting: () => this.#tell(DRAIN),
      finishAll: (reason) => {
        if (reason === "grace period over") return this.#tell(FINISH);
        // After the relay's notice, in the same order: as a message.
        for (const loop of loops) this.#mailTo(loop, { t: "finish", reason });
      },
      relay: this.#relay,
      ours: (m) => loops.some((loop) => loop.bridge?.has(m)),
      finished: this.finished,
    });
  }

  stop(): void {
    this.#tell(STOP);
  }
}

/** Removes the socket file this server made, unless someone else did. */
function removeSocketFile(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** Logs a loop's record here, at its level. */
function emit(
  to: ReturnType<typeof getLogger>,
  record: LoopRecord,
): void {
  to[record.level](record.message, record.properties);
}
