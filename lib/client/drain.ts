// Private: how a load test ends, for both engines (lib/load_test.ts,
// lib/native/load_loop.ts): round trips in flight at the end may finish,
// uncounted, so that each connection closes with nothing owed and nothing
// unread, and the server sees its clients close rather than reset. Not
// exported from mod.ts.

/** The longest the end waits for round trips in flight. */
const DRAIN_MS = 1000;

/**
 * How long round trips in flight at the end may take to finish: a second,
 * or the round-trip `timeout` if that is shorter (0: no timeout).
 */
export function drainMs(timeout: number): number {
  return timeout > 0 ? Math.min(DRAIN_MS, timeout) : DRAIN_MS;
}
