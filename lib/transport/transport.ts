// Private: what the server engine needs of a transport. The engine works on
// any Deno.Listener and Deno.Conn and never names a transport; what is
// particular to one (binding, TCP_NODELAY, a stale socket file) happens in
// its own file here, and choose.ts picks one from the listen options. Not
// exported from mod.ts.

/**
 * A listener on its way: its address is known, the listener itself comes
 * once something asynchronous is done (a stale Unix socket file asked, a
 * node:tls server listening).
 */
export interface Pending {
  addr: Deno.Addr;
  /** Its errors reject the server's `ready`. */
  listener: Promise<Deno.Listener>;
}

/** What a transport tells the engine about clients it never hands over. */
export interface TransportEvents {
  /** A WebSocket upgrade was not valid (bad key, version); a 400. */
  badUpgrade(peer: string, reason: string): void;
  /** A TLS handshake failed or timed out; the client is closed. */
  handshakeFailed(peer: string, reason: string): void;
  /** A TLS handshake completed, `ms` after the client was accepted. */
  handshaken(ms: number): void;
  /** A PROXY header was not valid, or not complete in time; closed. */
  proxyFailed(peer: string, reason: string): void;
  /** An access rule refused a client; closed before a byte was read. */
  refused(peer: string, refusal: Refusal): void;
  /**
   * Faults hit a new connection from `peer` (`connection`, with their
   * names), or one of them acted on it.
   */
  faulted(
    peer: string,
    action: "connection" | FaultAction,
    faults?: string,
  ): void;
  /** Faults held `bytes` back (a latency, a bandwidth, a slicer). */
  delayed(bytes: number): void;
  /**
   * accept() failed on a listener the transport serves itself (the
   * WebSocket listener's HTTP server), which accepts again in a moment.
   */
  acceptFailed(error: string): void;
}

import type { FaultAction } from "../types.ts";

import type { Refusal } from "../rules/access.ts";

/** A way to listen, as lib/server/engine.ts uses it. */
export interface Transport {
  /**
   * Binds and listens. Bind errors (`Deno.errors.AddrInUse`, …) and bad
   * options are thrown here, at serveEcho's call site.
   */
  listen(): Deno.Listener | Pending;
  /**
   * Prepares a connection just accepted, before it is served. Throws when
   * the connection is already unusable; the engine then ends it.
   */
  prepare(conn: Deno.Conn): void;
  /** How logs name the client of `conn`. */
  peer(conn: Deno.Conn): string;
  /**
   * Resolves once what the transport runs beside the connections it handed
   * over (TLS's gate) is over too; the server has finished then.
   */
  settled?(): Promise<void>;
  /**
   * Its `listen()` may be called again once the listener it gave is closed
   * (a `down` fault lifted), on the same transport: WebSocket's, whose HTTP
   * server stays up. Others are made anew for the port.
   */
  listensAgain?: boolean;
  /**
   * A shutdown begins: health checks answer "not ready" from now on, while
   * the listener may still accept for a while (a drain delay).
   */
  unready?(): void;
  /**
   * New connections use `listen`'s certificates (TLS); open ones go on.
   *
   * @throws {TypeError} They are not usable, or this transport cannot take
   * new ones; the old ones stay.
   */
  reload?(listen: ListenConfig): void;
}

import type { ListenConfig } from "../core/config.ts";
