// Private: rules at the door: a listener wrapper that closes each client the
// access rules or the per-address limits refuse as soon as it is accepted
// (after its PROXY header, when there is one; before TLS), so that not a
// byte of it is read; an admitted client's place under the limits is given
// back when its connection closes. Not exported from mod.ts.

import { bareAddress, formatAddr } from "../_helpers.ts";
import type { Guard, Refusal } from "../rules/access.ts";
import type { Limiter } from "../rules/limits.ts";
import type { TransportEvents } from "./transport.ts";

/** `listener`, without the clients `guard` or `limiter` refuse. */
export function guardedListener(
  listener: Deno.Listener,
  guard: Guard | undefined,
  limiter: Limiter | undefined,
  events: TransportEvents,
): Deno.Listener {
  const accept = async (): Promise<Deno.Conn> => {
    while (true) {
      const conn = await listener.accept();
      const peer = conn.remoteAddr;
      let refusal: Refusal | undefined = guard?.(peer);
      // A Unix socket's clients have no address to count by.
      const address = "hostname" in peer
        ? bareAddress(peer.hostname)
        : undefined;
      if (refusal === undefined && limiter && address !== undefined) {
        refusal = limiter.admit(address);
        if (refusal === undefined) return releasing(conn, limiter, address);
      }
      if (refusal === undefined) return conn;
      conn.close();
      events.refused(formatAddr(peer), refusal);
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

/** `conn`, giving its place under the limits back when it is closed. */
function releasing(
  conn: Deno.Conn,
  limiter: Limiter,
  address: string,
): Deno.Conn {
  let released = false;
  const close = conn.close.bind(conn);
  // The engine and the TLS gate close each connection through close().
  conn.close = () => {
    if (!released) {
      released = true;
      limiter.release(address);
    }
    close();
  };
  return conn;
}
