// Private: rules at the door: a listener wrapper that closes each client the
// access rules or the per-address limits refuse as soon as it is accepted
// (after its PROXY header, when there is one; before TLS), so that not a
// byte of it is read; an admitted client's place under the limits is given
// back when its connection closes. Not exported from mod.ts.

import { formatAddr } from "../_helpers.ts";
import type { Guard } from "../rules/access.ts";
import { judge } from "../rules/door.ts";
import type { Limiter } from "../rules/limits.ts";
import type { TransportEvents } from "./transport.ts";
import { turnAway, WrappedConn, WrappedListener } from "./wrapped.ts";

/** `listener`, without the clients `guard` or `limiter` refuse. */
export function guardedListener(
  listener: Deno.Listener,
  guard: Guard | undefined,
  limiter: Limiter | undefined,
  events: TransportEvents,
): Deno.Listener {
  return new class extends WrappedListener {
    override async accept(): Promise<Deno.Conn> {
      while (true) {
        const conn = await this.inner.accept();
        const verdict = judge(guard, limiter, conn.remoteAddr);
        if (verdict.refusal === undefined) {
          return verdict.limited === undefined
            ? conn
            : new ReleasingConn(conn, limiter!, verdict.limited);
        }
        turnAway(conn, 1008, `refused: ${verdict.refusal.reason}`);
        events.refused(formatAddr(conn.remoteAddr), verdict.refusal);
      }
    }
  }(listener);
}

/** A connection that gives its place under the limits back when closed. */
class ReleasingConn extends WrappedConn {
  #limiter: Limiter | undefined;
  #address: string;

  constructor(conn: Deno.Conn, limiter: Limiter, address: string) {
    super(conn);
    this.#limiter = limiter;
    this.#address = address;
  }

  override close(): void {
    this.#limiter?.release(this.#address);
    this.#limiter = undefined;
    this.inner.close();
  }
}
