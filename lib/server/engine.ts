// Private: the engine of an echo server: one listener, and what it does with
// connections: accept (and back off only when resources run out), admit
// (maxConnections), count, time out, hand each to its mode (lib/modes/), and
// shut down. serveEcho() runs one, or one per worker (see lib/workers/). Not
// exported from mod.ts.

import { assertServed } from "../core/features.ts";
import { NATIVE_FEATURES } from "../native/features.ts";
import { STREAMS_FEATURES } from "./features.ts";
import { FaultBox } from "../faults/pipe.ts";
import type { Fault } from "../faults/spec.ts";
import { getLogger, type Logger } from "../_logtape.ts";
import {
  acceptBackoff,
  describeError,
  formatAddr,
  IdleTimer,
  LOG_CATEGORY,
  plural,
} from "../_helpers.ts";
import type { Relay, RelayPort } from "../relay/relay.ts";
import { newRelay } from "../relay/for_mode.ts";
import { SESSIONS } from "../modes/registry.ts";
import {
  acceptFailed,
  acceptPaused,
  badUpgrade,
  closed,
  dropped,
  faulted,
  handshakeFailed,
  type LogRecord,
  opened,
  proxyFailed,
  refused,
  rejected,
} from "../core/records.ts";
import { ConnectionMember, relayLines } from "./relay_lines.ts";
import { runSession, streamFacts } from "./run_session.ts";
import { forward, UpstreamLink } from "./forward.ts";
import type {
  ListenConfig,
  ServerConfig,
  TlsListen,
  TlsSettings,
} from "../core/config.ts";
import { Connection, type Listener } from "./connection.ts";
import {
  ACCEPTED,
  ACTIVE,
  countClosed,
  COUNTERS,
  countHandshake,
  FAULT_DELAYED,
  REJECTED,
  sumStats,
} from "../core/counters.ts";
import { transportFor } from "../transport/choose.ts";
import { turnAway, type WrappedConn } from "../transport/wrapped.ts";
import type { Transport, TransportEvents } from "../transport/transport.ts";
import type { ClusterStatus, EchoMode, EchoServerStats } from "../types.ts";
import type { Backend } from "../core/handle.ts";
import { acceptExhausted, drainPolitely } from "../core/lifecycle.ts";
import type { Ending } from "../core/endings.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

const encoder = new TextEncoder();

/** Whether `faults` hold a down fault that refuses connects. */
function refuses(faults: readonly Fault[]): boolean {
  return faults.some((f) => f.kind === "down" && f.how === "refuse");
}

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

/** One listener of the streams engine: a backend of a ServerHandle. */
export class Server implements Backend {
  readonly addr: Deno.Addr;
  readonly finished: Promise<void>;
  readonly ready: Promise<void>;
  readonly mode: EchoMode;
  readonly engine = "default" as const;
  readonly transport: "tcp" | "tls" | "unix" | "websocket";
  #config: ServerConfig;
  #transport: Transport;
  /** The faults new connections get (see setFaults). */
  #faults: FaultBox;
  /** Proxy mode's way to its upstream. */
  #upstream: UpstreamLink | undefined;
  /** What the transport tells, and how it binds (to listen again). */
  #events: TransportEvents;
  #reusePort: boolean;
  /** A down fault refuses connects: the listener is closed until lifted. */
  #refusing = false;
  /** Wakes the accept loop once the listener is back. */
  #resume: (() => void) | undefined;
  /** Says that the accept loop saw its listener closed (refusing). */
  #stoppedAccepting: (() => void) | undefined;
  /** The refusal at the start, once the listener is closed. */
  #refusal: Promise<void> = Promise.resolve();
  #ownRelay: Relay | undefined;
  /** Until a listener that had to ask first (see Transport) is there. */
  #listener: Deno.Listener | undefined;
  #counters: Float64Array;
  #open: Int32Array;
  #relay: RelayPort | undefined;
  /** What this listener's connections share (see {@linkcode Listener}). */
  #shared: Listener;
  #log: Logger;
  #worker: number | undefined;
  #connections = new Set<Connection>();
  #listening = true;
  #acceptLoopDone = false;
  #resolveFinished!: () => void;
  #wakeBackoff: (() => void) | undefined;

  constructor(config: ServerConfig, shared: Shared) {
    this.mode = config.mode;
    this.#config = config;
    this.#counters = shared.counters;
    this.#open = shared.open;
    this.#worker = shared.worker;
    this.#log = shared.worker === undefined
      ? logger
      : logger.with({ worker: shared.worker });
    this.#relay = shared.relay ?? newRelay(config, shared.counters);
    // A relay of our own (not a worker's link) is ours to close at the end.
    this.#ownRelay = shared.relay === undefined
      ? this.#relay as Relay | undefined
      : undefined;
    this.#shared = {
      config,
      counters: shared.counters,
      relay: this.#relay,
      peerOf: (conn) => this.#transport.peer(conn),
      dropped: (c) => this.#drop(c),
      ended: (c, reason) => this.#ended(c, reason),
    };
    this.transport = config.listen.transport;
    this.#faults = new FaultBox(config.faults, config.liveFaults);
    this.#upstream = config.upstream &&
      new UpstreamLink(config.upstream, shared.counters, this.#log);
    this.#reusePort = shared.reusePort;
    this.#events = {
      badUpgrade: (peer, reason) =>
        this.#emit(badUpgrade(this.#counters, peer, reason)),
      handshakeFailed: (peer, reason) =>
        this.#emit(handshakeFailed(this.#counters, peer, reason)),
      handshaken: (ms) => countHandshake(this.#counters, ms),
      proxyFailed: (peer, reason) =>
        this.#emit(proxyFailed(this.#counters, peer, reason)),
      refused: (peer, refusal) => {
        const record = refused(this.#counters, peer, refusal);
        if (this.#log.isEnabledFor("info")) this.#emit(record);
      },
      delayed: (bytes) => this.#counters[FAULT_DELAYED] += bytes,
      acceptFailed: (error) => this.#emit(acceptFailed(this.#counters, error)),
      faulted: (peer, action, faults) => {
        const record = faulted(this.#counters, peer, action, faults);
        if (this.#log.isEnabledFor("debug")) this.#emit(record);
      },
    };
    this.#transport = transportFor(
      config.listen,
      shared.reusePort,
      this.#events,
      config,
      this.#faults,
    );
    const listening = this.#transport.listen();
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    if ("listener" in listening) {
      this.addr = listening.addr;
      this.ready = listening.listener.then(
        (listener) => this.#start(listener),
        (error) => {
          this.#listening = false;
          this.#acceptLoopDone = true;
          this.#finishIfDone();
          throw error;
        },
      );
      this.ready.catch(() => {}); // Whoever awaits it sees the error.
    } else {
      this.addr = listening.addr;
      this.#start(listening);
      // Ready once a down fault that refuses has closed the listener too.
      this.ready = Promise.all([this.#ownRelay?.ready, this.#refusal])
        .then(() => {});
      this.ready.catch(() => {}); // Whoever awaits it sees the error.
    }
  }

  #start(listener: Deno.Listener): void {
    this.#listener = listener;
    if (!this.#listening) {
      // Stopped while the listener was on its way.
      listener.close();
      this.#acceptLoopDone = true;
      this.#finishIfDone();
      return;
    }
    this.#log.debug("Listening on {address} in {mode} mode", {
      address: formatAddr(this.addr),
      mode: this.mode,
    });
    this.#acceptLoop();
    this.#refusal = this.#refuse(refuses(this.#config.faults));
  }

  get stats(): EchoServerStats {
    return sumStats(this.#counters);
  }

  /** The relay this listener uses, in broadcast and chat mode. */
  get relay(): RelayPort | undefined {
    return this.#relay;
  }

  clusterStatus(): Promise<ClusterStatus | undefined> {
    return this.#ownRelay?.status() ?? Promise.resolve(undefined);
  }

  announce(message: string): number {
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

  async drain(): Promise<void> {
    const gracePeriod = this.#config.gracePeriod;
    this.#logStopping(
      "Shutting down",
      `, grace period ${
        gracePeriod === Infinity ? "unlimited" : "{gracePeriod} ms"
      }`,
      { gracePeriod },
    );
    const connections = this.#connections;
    await drainPolitely({
      gracePeriod,
      active: connections.size,
      stopAccepting: () => this.#closeListener(),
      finishAll: (reason) => this.#finishAll(reason),
      relay: this.#relay,
      ours: (m) =>
        m instanceof ConnectionMember && connections.has(m.connection),
      finished: this.finished,
    });
  }

  /**
   * New TLS handshakes use `listen`'s certificates; those open go on.
   *
   * @throws {TypeError} They are not usable, or ask for what this engine
   * cannot do: the old ones stay.
   */
  reloadTls(tls: TlsSettings): Promise<void> {
    try {
      const listen = { ...this.#config.listen as TlsListen, ...tls };
      assertServed(
        "default",
        { ...this.#config, listen },
        false,
        STREAMS_FEATURES,
        { name: "the native engine", served: NATIVE_FEATURES },
      );
      this.#transport.reload?.(listen);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Connections accepted from now on get `faults` (checked); those open
   * keep theirs.
   *
   * @throws {Error} This engine cannot act one out: the old ones stay.
   */
  setFaults(faults: Fault[]): Promise<void> {
    try {
      assertServed(
        "default",
        { ...this.#config, faults },
        false,
        STREAMS_FEATURES,
        { name: "the native engine", served: NATIVE_FEATURES },
      );
      this.#faults.set(faults);
      this.#config = { ...this.#config, faults };
      return this.#refuse(refuses(faults));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  unready(): void {
    this.#transport.unready?.();
  }

  stop(): void {
    this.#logStopping("Stopping now", "", {});
    this.#closeListener();
    this.#closeAll("server stopped");
  }

  /**
   * A worker says that it stops, at debug, with its own connections; the
   * server's handle says it once for all (lib/core/handle.ts).
   */
  #logStopping(
    what: string,
    more: string,
    properties: Record<string, unknown>,
  ): void {
    if (this.#worker === undefined || this.#worker === 0) return;
    const active = this.#connections.size;
    this.#log.debug(
      `${what}: {active} ${plural(active, "connection")} open${more}`,
      { ...properties, active },
    );
  }

  #closeListener(): void {
    if (!this.#listening) return;
    this.#listening = false;
    if (!this.#refusing) this.#listener?.close();
    this.#wakeBackoff?.();
    this.#resume?.();
    this.#stoppedAccepting?.();
  }

  /**
   * Stops listening (`on`: connects are refused, as by a host with nothing
   * on the port), or listens again on the same address (TCP).
   */
  #refuse(on: boolean): Promise<void> {
    if (!this.#listening || on === this.#refusing) return Promise.resolve();
    if (on) {
      this.#refusing = true;
      // Deno lets the socket go once the accept waiting on it has failed.
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#stoppedAccepting = resolve;
      this.#listener?.close();
      return promise;
    }
    let listener: Deno.Listener;
    let transport: Transport;
    try {
      const { port } = this.addr as Deno.NetAddr;
      transport = this.#transport.listensAgain ? this.#transport : transportFor(
        { ...this.#config.listen, port } as ListenConfig,
        this.#reusePort,
        this.#events,
        this.#config,
        this.#faults,
      );
      listener = transport.listen() as Deno.Listener;
    } catch (error) {
      // Another socket took the port meanwhile: said, and tried again at
      // the next change of the faults.
      this.#log.error("Cannot listen again on {address}: {error}", {
        address: formatAddr(this.addr),
        error: describeError(error),
      });
      return Promise.resolve();
    }
    this.#transport = transport;
    this.#listener = listener;
    this.#refusing = false;
    this.#resume?.();
    return Promise.resolve();
  }

  #finishAll(reason: Ending): void {
    for (const c of this.#connections) c.finish(reason);
  }

  #closeAll(reason: string): void {
    for (const c of this.#connections) c.close(reason);
  }

  #finishIfDone(): void {
    if (!this.#acceptLoopDone || this.#connections.size > 0) return;
    this.#log.debug("Finished: {accepted} accepted, {rejected} rejected", {
      accepted: this.#counters[ACCEPTED],
      rejected: this.#counters[REJECTED],
    });
    // The last leave notices may still be on their way through the relay,
    // and the last bytes through a transport's gate.
    Promise.all([
      this.#relay?.idle(),
      this.#transport.settled?.(),
      this.#faults.settled(),
    ])
      .then(() => this.#ownRelay?.close())
      .then(this.#resolveFinished);
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (this.#listening) {
      let conn: Deno.Conn;
      const listener = this.#listener!;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (!this.#listening) break;
        if (this.#refusing || listener !== this.#listener) {
          // A down fault closed the listener: wait until it is back.
          if (this.#refusing) {
            this.#stoppedAccepting?.();
            this.#stoppedAccepting = undefined;
            await new Promise<void>((resolve) => this.#resume = resolve);
            this.#resume = undefined;
          }
          continue;
        }
        if (!acceptExhausted((error as { code?: string }).code)) {
          // This one connection is gone; the listener is fine.
          const record = acceptFailed(this.#counters, describeError(error));
          if (this.#log.isEnabledFor("debug")) this.#emit(record);
          continue;
        }
        backoff = acceptBackoff(backoff);
        this.#emit(acceptPaused(backoff, describeError(error)));
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

  #emit(record: LogRecord): void {
    this.#log[record.level](record.message, record.properties);
  }

  #reject(conn: Deno.Conn): void {
    this.#emit(
      rejected(
        this.#counters,
        formatAddr(conn.remoteAddr),
        Atomics.load(this.#open, 0),
        this.#config.maxConnections,
      ),
    );
    turnAway(conn, 1013, "server full: try again later");
  }

  #drop(c: Connection): void {
    this.#emit(
      dropped(this.#counters, c.peer, c.out.queuedLines, c.out.queuedBytes),
    );
  }

  #serve(conn: Deno.Conn): void {
    const config = this.#config;
    const c = new Connection(conn, this.#shared);
    this.#connections.add(c);
    this.#counters[ACTIVE]++;
    // Joined before it is logged: in a worker, the relay (on the calling
    // thread) hears of the member before anyone reads that record.
    if (this.#relay !== undefined) {
      c.member = new ConnectionMember(c);
      this.#relay.join(c.member);
    }
    // Guarded: formatting the peer costs, per connection, even unlogged.
    if (this.#log.isEnabledFor("info")) {
      this.#emit(opened(c.peer, this.#connections.size));
    }
    if (config.idleTimeout > 0) {
      c.idle = new IdleTimer(config.idleTimeout, () => c.close("idle timeout"));
    }
    try {
      this.#transport.prepare(conn);
    } catch (error) {
      return c.end(describeError(error));
    }
    if (this.mode === "echo") return c.echo();
    if (this.#upstream !== undefined) {
      forward(c, this.#upstream).then(
        (reason) => c.end(reason),
        (error) => c.end(c.closedBecause ?? describeError(error)),
      );
      return;
    }
    const session = SESSIONS[this.mode];
    const served = session !== undefined
      ? runSession(c, session(config, () => streamFacts(c, config)))
      : relayLines(
        c.member as ConnectionMember,
        this.#relay!,
        config.maxLineBytes,
      );
    served.then(
      (reason) => c.end(reason),
      (error) => c.end(c.closedBecause ?? describeError(error)),
    );
  }

  #ended(c: Connection, reason: string): void {
    // A fault that ended it on purpose says so, whatever the mode saw.
    reason = (c.conn as Partial<WrappedConn>).endedBy?.() ?? reason;
    c.close(reason);
    this.#connections.delete(c);
    countClosed(this.#counters, reason, Date.now() - c.openedAt);
    this.#counters[ACTIVE]--;
    Atomics.sub(this.#open, 0, 1);
    // After the counters: a client told of the leave sees them counted.
    if (c.member !== undefined) this.#relay?.leave(c.member);
    if (this.#log.isEnabledFor("info")) {
      this.#emit(closed({
        peer: c.peer,
        durationMs: Date.now() - c.openedAt,
        bytesIn: c.bytesIn,
        bytesOut: c.bytesOut,
        reason,
      }));
    }
    this.#finishIfDone();
  }
}
