// Private: what the server engine needs of a transport. The engine works on
// any Deno.Listener and Deno.Conn and never names a transport; what is
// particular to one (binding, TCP_NODELAY, a stale socket file) happens in
// its own file here, and choose.ts picks one from the listen options. Not
// exported from mod.ts.

/** A way to listen, as lib/server/engine.ts uses it. */
export interface Transport {
  /**
   * Binds and listens. Bind errors (`Deno.errors.AddrInUse`, …) are thrown
   * here, at serveEcho's call site; a listener that needs to ask first (a
   * stale Unix socket file) comes as a promise, and its errors reject the
   * server's `ready`.
   */
  listen(): Deno.Listener | Promise<Deno.Listener>;
  /**
   * Prepares a connection just accepted, before it is served. Throws when
   * the connection is already unusable; the engine then ends it.
   */
  prepare(conn: Deno.Conn): void;
  /** How logs name the client of `conn`. */
  peer(conn: Deno.Conn): string;
}
