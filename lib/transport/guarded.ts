// Private: rules at the door: a listener wrapper that closes each client the
// access rules or the per-address limits refuse as soon as it is accepted
// (after its PROXY header, when there is one; before TLS), so that not a
// byte of it is read; an admitted client's place under the limits is given
// back when its connection closes. Not exported from mod.ts.

import { bareAddress, formatAddr } from "../_helpers.ts";
import type { Guard, Refusal } from "../rules/access.ts";
import type { Limiter } from "../rules/limits.ts";
import type { TransportEvents } from "./transport.ts";
import { WrappedConn, WrappedListener } from "./wrapped.ts";

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
        const peer = conn.remoteAddr;
        let refusal: Refusal | undefined = guard?.(peer);
        // A Unix socket's clients have no address to count by.
        const address = "hostname" in peer
          ? bareAddress(peer.hostname)
          : undefined;
        if (refusal === undefined && limiter && address !== undefined) {
          refusal = limiter.admit(address);
          if (refusal === undefined) {
            return new ReleasingConn(conn, limiter, address);
          }
        }
        if (refusal === undefined) return conn;
        conn.close();
        events.refused(formatAddr(peer), refusal);
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
