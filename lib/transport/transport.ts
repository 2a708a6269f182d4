// Private: what the server engine needs of a transport. The engine works on
// any Deno.Listener and Deno.Conn and never names a transport; what is
// particular to one (binding, TCP_NODELAY) happens in its own file here. Not
// exported from mod.ts.

/** A way to listen, as lib/server/engine.ts uses it. */
export interface Transport {
  /**
   * Binds and listens. Bind errors (`Deno.errors.AddrInUse`, …) are thrown
   * here, at serveEcho's call site.
   */
  listen(): Deno.Listener;
  /**
   * Prepares a connection just accepted, before it is served. Throws when
   * the connection is already unusable; the engine then ends it.
   */
  prepare(conn: Deno.Conn): void;
}
