// Private: access rules at the door: a listener wrapper that closes each
// client a guard refuses as soon as it is accepted (after its PROXY header,
// when there is one; before TLS), so that not a byte of it is read. Not
// exported from mod.ts.

import { formatAddr } from "../_helpers.ts";
import type { Guard } from "../rules/access.ts";
import type { TransportEvents } from "./transport.ts";

/** `listener`, without the clients `guard` refuses. */
export function guardedListener(
  listener: Deno.Listener,
  guard: Guard,
  events: TransportEvents,
): Deno.Listener {
  const accept = async (): Promise<Deno.Conn> => {
    while (true) {
      const conn = await listener.accept();
      const refusal = guard(conn.remoteAddr);
      if (refusal === undefined) return conn;
      conn.close();
      events.refused(formatAddr(conn.remoteAddr), refusal);
    }
  };
  return {
    addr: listener.addr,
    accept,
    close: () => listener.close(),
    ref: () => listener.ref(),
    unref: () => listener.unref(),
    [Symbol.dispose]: () => listener.close(),
    async *[Symbol.asyncIterator]() {
      while (true) {
        try {
          yield await accept();
        } catch (error) {
          if (error instanceof Deno.errors.BadResource) return;
          throw error;
        }
      }
    },
  };
}
