// Private: serveEcho's `workers` option, on the calling thread. Not exported
// from mod.ts.
//
// The calling thread runs one listener (a Server) and starts `workers - 1`
// Web Workers (worker.ts), each with its own listener bound to the same
// address with SO_REUSEPORT; the kernel spreads new connections over them.
// The listeners share nothing on the hot path: each writes its counters into
// its own slice of one SharedArrayBuffer, which `stats` adds up, and the
// connection limit is one shared atomic counter. In broadcast and chat mode
// the one Relay runs here; a worker's clients are members whose lines arrive
// and leave as messages (see WorkerHandle and worker.ts's RelayLink).

import type { Fault } from "../faults/spec.ts";
import { getLogger, type LogLevel, type LogRecord } from "../_logtape.ts";
import type { TlsSettings } from "../core/config.ts";
import { LOG_CATEGORY, optionError } from "../_helpers.ts";
import type { Relay } from "../relay/relay.ts";
import {
  type DeliverMessage,
  RelayBridge,
  type RelayMessage,
} from "../relay/bridge.ts";
import type { Server } from "../server/engine.ts";
import { listenersFor, type WithWebSocket } from "../server/with_websocket.ts";
import { newRelay } from "../relay/for_mode.ts";
import type { ServerConfig } from "../core/config.ts";
import { ACTIVE, COUNTERS, sumStats } from "../core/counters.ts";
import { claim } from "../transport/choose.ts";
import { claimPort } from "../transport/tcp.ts";
import type { ClusterStatus, EchoServerStats } from "../types.ts";
import type { Backend } from "../core/handle.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);
const WORKER_URL = new URL("./worker.ts", import.meta.url);

const LEVELS: readonly LogLevel[] = [
  "trace",
  "debug",
  "info",
  "warning",
  "error",
  "fatal",
];

/** A record as it crosses from a worker: what `Logger.emit` takes. */
export type WorkerRecord = Pick<
  LogRecord,
  "category" | "level" | "message" | "rawMessage" | "timestamp" | "properties"
>;

/** Messages from the calling thread to a worker. */
export type ToWorker =
  | {
    t: "start";
    index: number;
    config: ServerConfig;
    counters: SharedArrayBuffer;
    open: SharedArrayBuffer;
    /** Lowest level to forward; none when logging is off here. */
    logLevel: LogLevel | undefined;
  }
  | DeliverMessage
  | { t: "announce"; text: string }
  | { t: "reloadTls"; id: number; listen: TlsSettings }
  | { t: "setFaults"; id: number; faults: Fault[] }
  | { t: "shutdown" }
  | { t: "unready" }
  | { t: "abort" };

/** Messages from a worker to the calling thread. */
export type FromWorker =
  | { t: "listening" }
  | { t: "failed"; error: string }
  | { t: "finished" }
  /** A reload is done, or failed (`error`). */
  | { t: "reloaded"; id: number; error?: string }
  | { t: "log"; record: WorkerRecord }
  | RelayMessage;

/**
 * Throws `Deno.errors.NotSupported` unless listeners can share a port here:
 * Linux (where `SO_REUSEPORT` spreads connections) and `--unstable-net`
 * (without which `reusePort` would end the process).
 */
export function assertWorkersSupported(): void {
  if (Deno.build.os !== "linux") {
    throw optionError(
      "workers",
      `sharing a port (SO_REUSEPORT) needs Linux, this is ${Deno.build.os}`,
      Deno.errors.NotSupported,
    );
  }
  // Deno defines Deno.listenDatagram only under --unstable-net.
  if (!("listenDatagram" in Deno)) {
    throw optionError(
      "workers",
      "run Deno with --unstable-net (SO_REUSEPORT is unstable in Deno)",
      Deno.errors.NotSupported,
    );
  }
  // A worker loads its module from disk when this package is on disk.
  if (WORKER_URL.protocol === "file:") {
    const path = decodeURIComponent(WORKER_URL.pathname);
    const { state } = Deno.permissions.querySync({ name: "read", path });
    if (state !== "granted") {
      throw optionError(
        "workers",
        `they need read access to ${path} (--allow-read)`,
        Deno.errors.NotCapable,
      );
    }
  }
}

/** A server made of a listener here and `count - 1` in Web Workers. */
export class WorkerPool implements Backend {
  readonly addr: Deno.Addr;
  readonly finished: Promise<void>;
  readonly ready: Promise<void>;
  readonly engine = "default" as const;
  readonly transport: "tcp" | "tls" | "unix" | "websocket";
  readonly websocketAddr: Deno.NetAddr | undefined;
  #main: Server | WithWebSocket;
  #handles: WorkerHandle[] = [];
  #counters: Float64Array;
  #relay: Relay | undefined;

  constructor(config: ServerConfig, count: number) {
    const countersBuffer = new SharedArrayBuffer(
      count * COUNTERS * Float64Array.BYTES_PER_ELEMENT,
    );
    const openBuffer = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    this.#counters = new Float64Array(countersBuffer);
    const open = new Int32Array(openBuffer);
    // The relay runs here: it counts in the calling thread's counters.
    this.#relay = newRelay(config, this.#counters.subarray(0, COUNTERS));
    // Only this server's listeners may share the port.
    config = {
      ...config,
      listen: claim(config.listen),
      websocket: config.websocket && {
        ...config.websocket,
        port: claimPort(config.websocket.hostname, config.websocket.port).port,
      },
    };
    this.#main = listenersFor(config, {
      reusePort: true,
      counters: this.#counters.subarray(0, COUNTERS),
      open,
      relay: this.#relay,
      worker: 0,
    });
    this.addr = this.#main.addr;
    this.transport = this.#main.transport as WorkerPool["transport"];
    this.websocketAddr = (this.#main as Partial<WithWebSocket>).websocketAddr;
    // Workers bind the address claimed, port 0 resolved.
    const workerConfig = config;
    const logLevel = LEVELS.find((level) => logger.isEnabledFor(level));
    for (let index = 1; index < count; index++) {
      const handle = new WorkerHandle(
        index,
        this.#relay,
        this.#counters,
        open,
      );
      this.#handles.push(handle);
      handle.post({
        t: "start",
        index,
        config: workerConfig,
        counters: countersBuffer,
        open: openBuffer,
        logLevel,
      });
    }
    this.ready = Promise.all([
      this.#main.ready,
      ...this.#handles.map((h) => h.listening),
      this.#relay?.ready,
    ]).then(() => {});
    // A worker that fails to start is logged; `ready` reports it to whoever
    // awaits it, and it must not end the process otherwise.
    this.ready.catch(() => {});
    this.finished = Promise.all([
      this.#main.finished,
      ...this.#handles.map((h) => h.finished),
    ]).then(async () => {
      for (const handle of this.#handles) handle.terminate();
      // Workers' last leave notices may still be on their way.
      await this.#relay?.close();
    });
  }

  get stats(): EchoServerStats {
    return sumStats(this.#counters);
  }

  clusterStatus(): Promise<ClusterStatus | undefined> {
    return this.#relay?.status() ?? Promise.resolve(undefined);
  }

  announce(message: string): number {
    if (this.#relay !== undefined) return this.#main.announce(message);
    const clients = this.stats.active;
    this.#main.announceHere(message);
    for (const handle of this.#handles) {
      handle.post({ t: "announce", text: message });
    }
    return clients;
  }

  unready(): void {
    this.#main.unready();
    for (const handle of this.#handles) handle.post({ t: "unready" });
  }

  async drain(): Promise<void> {
    for (const handle of this.#handles) handle.post({ t: "shutdown" });
    await this.#main.drain();
    await this.finished;
  }

  stop(): void {
    this.#main.stop();
    for (const handle of this.#handles) handle.post({ t: "abort" });
  }

  /**
   * New TLS handshakes use `listen`'s certificates here and in every
   * worker, once this thread's listener has taken them.
   */
  async reloadTls(listen: TlsSettings): Promise<void> {
    await this.#main.reloadTls(listen);
    await Promise.all(this.#handles.map((h) => h.reloadTls(listen)));
  }

  /**
   * Connections accepted from now on get `faults`, here and in every
   * worker, once this thread's listener has taken them (or refused them).
   */
  async setFaults(faults: Fault[]): Promise<void> {
    await this.#main.setFaults(faults);
    await Promise.all(this.#handles.map((h) => h.setFaults(faults)));
  }
}

/**
 * One Web Worker and its side of the protocol: its log records, its relay
 * members, and the deliveries and acknowledgements batched for it.
 */
class WorkerHandle {
  readonly index: number;
  readonly listening: Promise<void>;
  readonly finished: Promise<void>;
  #worker: Worker;
  #bridge: RelayBridge | undefined;
  #counters: Float64Array;
  #open: Int32Array;
  #done = false;
  #resolveListening!: () => void;
  #rejectListening!: (error: Error) => void;
  #resolveFinished!: () => void;
  /** Reloads under way, by id: the worker's answer. */
  #reloads = new Map<number, (error?: string) => void>();
  #nextReload = 1;

  constructor(
    index: number,
    relay: Relay | undefined,
    counters: Float64Array,
    open: Int32Array,
  ) {
    this.index = index;
    this.#bridge = relay && new RelayBridge(relay, (m) => this.post(m));
    this.#counters = counters;
    this.#open = open;
    this.listening = new Promise((resolve, reject) => {
      this.#resolveListening = resolve;
      this.#rejectListening = reject;
    });
    this.listening.catch(() => {});
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#worker = new Worker(WORKER_URL, {
      type: "module",
    });
    this.#worker.onmessage = (event: MessageEvent<FromWorker>) =>
      this.#receive(event.data);
    this.#worker.onerror = (event: ErrorEvent) => {
      // An error the worker did not catch: it is gone, and its clients too.
      event.preventDefault();
      this.#fail(event.message);
    };
  }

  post(message: ToWorker): void {
    if (!this.#done) this.#worker.postMessage(message);
  }

  /** Has the worker's listener take `listen`'s certificates. */
  reloadTls(listen: TlsSettings): Promise<void> {
    return this.#ask((id) => ({ t: "reloadTls", id, listen }));
  }

  /** Has the worker's listener take `faults` for new connections. */
  setFaults(faults: Fault[]): Promise<void> {
    return this.#ask((id) => ({ t: "setFaults", id, faults }));
  }

  /** Posts the message `make` makes, and waits for the worker's answer. */
  #ask(make: (id: number) => ToWorker): Promise<void> {
    if (this.#done) return Promise.resolve();
    const id = this.#nextReload++;
    return new Promise((resolve, reject) => {
      this.#reloads.set(id, (error) => {
        this.#reloads.delete(id);
        if (error === undefined) resolve();
        else reject(new Error(`Worker ${this.index}: ${error}`));
      });
      this.post(make(id));
    });
  }

  /** Ends the worker; the relay stops waiting for its writers. */
  terminate(): void {
    this.#done = true;
    this.#worker.terminate();
    this.#bridge?.close(false);
  }

  #receive(message: FromWorker): void {
    switch (message.t) {
      case "log": {
        const { category, ...record } = message.record;
        getLogger(category).emit(record);
        return;
      }
      case "listening":
        return this.#resolveListening();
      case "failed":
        return this.#fail(message.error);
      case "finished":
        this.#resolveFinished();
        return;
      case "reloaded":
        this.#reloads.get(message.id)?.(message.error);
        return;
      default:
        this.#bridge?.receive(message);
    }
  }

  /** The worker is gone: forget its clients and stop waiting for it. */
  #fail(error: string): void {
    if (this.#done) return;
    logger.error("Worker {worker} failed: {error}", {
      worker: this.index,
      error,
    });
    this.terminate();
    this.#bridge?.close(true);
    // Its connections died with it.
    const active = this.index * COUNTERS + ACTIVE;
    Atomics.sub(this.#open, 0, this.#counters[active]);
    this.#counters[active] = 0;
    this.#rejectListening(new Error(`Worker ${this.index} failed: ${error}`));
    this.#resolveFinished();
  }
}
