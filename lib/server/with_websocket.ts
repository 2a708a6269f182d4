// Private: a server that serves WebSocket clients beside its TCP (or TLS,
// or Unix socket) ones (serveEcho's `websocket` option), or WebSocket
// clients alone, on the default engine: two listeners of one server, with
// one set of counters and one relay, so that a line from a browser reaches
// the `nc` users in its room and the other way round. Not exported from
// mod.ts.

import type { Fault } from "../faults/spec.ts";
import type { ClusterStatus, EchoServerStats } from "../types.ts";
import { tlsOf, type TlsSettings } from "../core/config.ts";
import type { Backend } from "../core/handle.ts";
import { Server, type Shared } from "./engine.ts";
import type { ServerConfig } from "../core/config.ts";
import { newRelay } from "../relay/for_mode.ts";
import type { Relay, RelayPort } from "../relay/relay.ts";

/**
 * The listeners `config` asks for, on one thread: one {@linkcode Server},
 * or with `websocket`, its own (unless `websocket.only`) and the WebSocket
 * one, sharing `shared`'s counters and relay (a relay is made here when
 * `shared` has none, and closed when both have finished).
 */
export function listenersFor(
  config: ServerConfig,
  shared: Shared,
): Server | WithWebSocket {
  const websocket = config.websocket;
  if (websocket === undefined) return new Server(config, shared);
  const own = shared.relay === undefined
    ? newRelay(config, shared.counters)
    : undefined;
  const relay = shared.relay ?? own;
  const stream = websocket.only
    ? undefined
    : new Server(config, { ...shared, relay });
  try {
    const ws = new Server({
      ...config,
      listen: {
        transport: "websocket",
        hostname: websocket.hostname,
        port: websocket.port,
        tls: tlsOf(config.listen),
        maxMessageBytes: websocket.maxMessageBytes,
        headerTimeout: websocket.headerTimeout,
        trusted: websocket.trusted,
      },
    }, { ...shared, relay });
    return new WithWebSocket(stream, ws, own);
  } catch (error) {
    stream?.stop();
    own?.close();
    throw error;
  }
}

/** The stream listener (if any) and the WebSocket one, as one backend. */
export class WithWebSocket implements Backend {
  readonly addr: Deno.Addr;
  readonly ready: Promise<void>;
  readonly finished: Promise<void>;
  readonly engine = "default" as const;
  readonly transport: Backend["transport"];
  /** The WebSocket listener's address. */
  readonly websocketAddr: Deno.NetAddr;
  #stream: Server | undefined;
  #websocket: Server;

  /** The relay made for these two, closed once both have finished. */
  #relay: Relay | undefined;

  /** `stream` and `websocket` share counters and a relay (`own`'s, if any). */
  constructor(
    stream: Server | undefined,
    websocket: Server,
    own: Relay | undefined,
  ) {
    this.#relay = own;
    this.#stream = stream;
    this.#websocket = websocket;
    this.transport = stream?.transport ?? "websocket";
    this.addr = stream?.addr ?? websocket.addr;
    this.websocketAddr = websocket.addr as Deno.NetAddr;
    this.ready = Promise.all([stream?.ready, websocket.ready, own?.ready])
      .then(() => {});
    this.ready.catch(() => {}); // Whoever awaits it sees the error.
    this.finished = Promise.all([stream?.finished, websocket.finished])
      .then(() => own?.close());
  }

  get #all(): Server[] {
    return this.#stream === undefined
      ? [this.#websocket]
      : [this.#stream, this.#websocket];
  }

  get stats(): EchoServerStats {
    // One set of counters for both.
    return this.#websocket.stats;
  }

  clusterStatus(): Promise<ClusterStatus | undefined> {
    return this.#relay?.status() ?? Promise.resolve(undefined);
  }

  /** The relay both listeners use, in broadcast and chat mode. */
  get relay(): RelayPort | undefined {
    return this.#websocket.relay;
  }

  announce(message: string): number {
    // The relay, shared, reaches both listeners' clients at once.
    const relay = this.relay;
    if (relay !== undefined) {
      relay.announce(message);
      return relay.size;
    }
    return this.announceHere(message);
  }

  /** Sends `message` as a bare line to both listeners' clients. */
  announceHere(message: string): number {
    return this.#all.reduce((n, s) => n + s.announceHere(message), 0);
  }

  async drain(): Promise<void> {
    await Promise.all(this.#all.map((s) => s.drain()));
    await this.finished;
  }

  unready(): void {
    this.#websocket.unready();
  }

  stop(): void {
    for (const s of this.#all) s.stop();
  }

  async setFaults(faults: Fault[]): Promise<void> {
    for (const s of this.#all) await s.setFaults(faults);
  }

  async reloadTls(listen: TlsSettings): Promise<void> {
    for (const s of this.#all) await s.reloadTls(listen);
  }
}
