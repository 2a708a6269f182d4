// Private: the one server handle serveEcho returns, whatever runs behind it
// (the streams engine, a pool of them in workers, the native engine's
// loops, UDP beside any of them): the signal, the one shutdown, the
// announcement's check, and what the server says when it stops, written
// once over a small backend interface. Not exported from mod.ts.

import type { ChatUsers } from "../relay/chat_users.ts";
import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY, plural } from "../_helpers.ts";
import type {
  ClusterStatus,
  EchoMode,
  EchoServer,
  EchoServerStats,
  FaultSpec,
  TlsReload,
} from "../types.ts";
import {
  assertDatagramFaults,
  checkFaults,
  type Fault,
  specOf,
} from "../faults/spec.ts";
import { assertAnnouncement } from "./lifecycle.ts";
import {
  type ListenConfig,
  type ServerConfig,
  tlsOf,
  type TlsSettings,
} from "./config.ts";
import { tlsSettings } from "../transport/tls.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

/** What runs behind a server's handle. */
export interface Backend {
  readonly addr: Deno.Addr;
  readonly engine: "default" | "native";
  readonly transport: "tcp" | "tls" | "unix" | "udp" | "websocket";
  /** Resolves once it serves; rejects when it cannot. */
  readonly ready: Promise<void>;
  /** Resolves once every connection has ended and all is closed. */
  readonly finished: Promise<void>;
  readonly stats: EchoServerStats;
  /** The shared log's link, in a cluster. */
  clusterStatus(): Promise<ClusterStatus | undefined>;
  /** Sends a checked operator line; returns how many clients it reaches. */
  announce(message: string): number;
  /**
   * Stops accepting and ends every connection politely, within the grace
   * period; resolves once finished. Called once.
   */
  drain(): Promise<void>;
  /** Closes everything now. */
  stop(): void;
  /**
   * New TLS handshakes use `listen`'s certificates; those open go on.
   *
   * @throws {TypeError} One is not usable, or the backend cannot take new
   * ones: the old ones stay.
   */
  reloadTls(tls: TlsSettings): Promise<void>;
  /**
   * Connections accepted (and UDP replies sent) from now on get `faults`;
   * those open keep theirs.
   *
   * @throws {Error} The backend cannot act one out: the old ones stay.
   */
  setFaults(faults: Fault[]): Promise<void>;
  /** Whether it answers UDP (the datagram faults need it). */
  readonly datagrams?: boolean;
  /**
   * A shutdown begins (before any drain delay): health checks say it is
   * not ready from now on.
   */
  unready?(): void;
  /** Its WebSocket listener's address, when it has one. */
  readonly websocketAddr?: Deno.NetAddr;
}

/** The handle of one server: an {@linkcode EchoServer} over its backend. */
export class ServerHandle implements EchoServer<Deno.Addr> {
  readonly addr: Deno.Addr;
  readonly websocketAddr: Deno.NetAddr | undefined;
  readonly mode: EchoMode;
  readonly engine: "default" | "native";
  readonly transport: "tcp" | "tls" | "unix" | "udp" | "websocket";
  readonly tls: boolean;
  readonly ready: Promise<void>;
  readonly finished: Promise<void>;
  #backend: Backend;
  #listen: ListenConfig;
  #gracePeriod: number;
  #faults: Fault[];
  /** The change of faults under way, that the next one waits for. */
  #changing: Promise<unknown> = Promise.resolve();
  #shutdown: Promise<void> | undefined;
  #startFailed = false;
  #drainDelay: number;
  #chatUsers: ChatUsers | undefined;
  /** Ends the drain delay early (a stop). */
  #endDelay: (() => void) | undefined;

  constructor(
    backend: Backend,
    config: Pick<
      ServerConfig,
      | "listen"
      | "mode"
      | "gracePeriod"
      | "drainDelay"
      | "faults"
      | "chatUsers"
    >,
    signal: AbortSignal | undefined,
  ) {
    const { listen, mode, gracePeriod } = config;
    this.#backend = backend;
    this.#listen = listen;
    this.#faults = config.faults;
    this.addr = backend.addr;
    this.websocketAddr = backend.websocketAddr;
    this.mode = mode;
    this.engine = backend.engine;
    this.transport = backend.transport;
    this.tls = tlsOf(listen) !== undefined;
    this.ready = backend.ready;
    this.#gracePeriod = gracePeriod;
    this.#drainDelay = config.drainDelay;
    this.#chatUsers = config.chatUsers;
    // Whoever awaits it sees the error, alone: no "Stopping now" after it.
    this.ready.catch(() => this.#startFailed = true);
    signal?.addEventListener("abort", this.#abort, { once: true });
    this.finished = backend.finished.then(() => {
      signal?.removeEventListener("abort", this.#abort);
    });
  }

  get stats(): EchoServerStats {
    return this.#backend.stats;
  }

  clusterStatus(): Promise<ClusterStatus | undefined> {
    return this.#backend.clusterStatus();
  }

  announce(message: string): number {
    assertAnnouncement(message);
    const clients = this.#backend.announce(message);
    logger.info(
      `Announcing to {clients} ${plural(clients, "client")}: {message}`,
      { clients, message },
    );
    return clients;
  }

  get faults(): readonly FaultSpec[] {
    return this.#faults.map(specOf);
  }

  setFaults(spec: readonly FaultSpec[]): Promise<void> {
    const change = this.#changing.then(async () => {
      const faults = checkFaults(spec);
      assertDatagramFaults(faults, this.#backend.datagrams ?? false);
      await this.#backend.setFaults(faults);
      this.#faults = faults;
      logger.debug("Faults set: {faults}", {
        faults: faults.map((f) => f.name).join(", ") || "none",
      });
    });
    this.#changing = change.catch(() => {});
    return change;
  }

  async reloadTls(tls: TlsReload): Promise<void> {
    const listen = this.#listen;
    const current = tlsOf(listen);
    if (current === undefined) {
      throw new TypeError(
        "Cannot reload TLS: this server does not speak TLS (no cert and key)",
      );
    }
    const next = tlsSettings({
      handshakeTimeout: current.handshakeTimeout,
      alpnProtocols: current.alpn,
      clientCertOptional: current.clientCertOptional,
      ...tls,
    });
    await this.#backend.reloadTls(next);
    this.#listen = listen.transport === "unix"
      ? { ...listen, tls: next }
      : { ...listen, ...next };
    logger.info(
      "Reloaded the TLS certificates: new handshakes use them, open connections go on",
    );
  }

  reloadChatUsers(text: string): void {
    const users = this.#chatUsers;
    if (users === undefined) {
      throw new TypeError(
        "Cannot reload the chat users: this server has none (no chatUsers)",
      );
    }
    users.replace(text);
    logger.info("Reloaded the chat users: {users} registered", {
      users: users.size,
    });
  }

  get draining(): boolean {
    return this.#shutdown !== undefined;
  }

  shutdown(): Promise<void> {
    if (this.#shutdown !== undefined) return this.#shutdown;
    this.#backend.unready?.();
    const delay = this.#drainDelay;
    if (delay === 0) return this.#shutdown = this.#drain();
    logger.info(
      "Not ready: accepting for {delay} ms more, then shutting down",
      { delay },
    );
    this.#shutdown = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(true), delay);
      // A stop meanwhile: nothing is left to drain.
      this.#endDelay = () => {
        clearTimeout(timer);
        resolve(false);
      };
    }).then((drain) => drain ? this.#drain() : this.finished);
    return this.#shutdown;
  }

  #drain(): Promise<void> {
    this.#endDelay = undefined;
    const gracePeriod = this.#gracePeriod;
    const active = this.#backend.stats.active;
    logger.info(
      `Shutting down: {active} ${
        plural(active, "connection")
      } open, grace period ${
        gracePeriod === Infinity ? "unlimited" : "{gracePeriod} ms"
      }`,
      { active, gracePeriod },
    );
    return this.#backend.drain().then(() => this.finished);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #abort = (): void => {
    if (!this.#startFailed) {
      const active = this.#backend.stats.active;
      logger.info(
        `Stopping now: {active} ${plural(active, "connection")} open`,
        { active },
      );
    }
    this.#endDelay?.();
    this.#backend.stop();
  };
}
