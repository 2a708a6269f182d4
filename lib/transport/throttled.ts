// Private: `maxBytesPerSecond`: a connection the server reads no faster than
// its rate (a token bucket holding one second's bytes). Nothing is dropped:
// what the client sends waits in the kernel's buffers, and TCP makes the
// client wait, so the echo stays exact. Installed only when configured. Not
// exported from mod.ts.

import { TokenBucket } from "../rules/bucket.ts";
import { WrappedConn, WrappedListener } from "./wrapped.ts";

/** `conn`, read at most `rate` bytes a second. */
export function throttled(conn: Deno.Conn, rate: number): Deno.Conn {
  return new ThrottledConn(conn, rate);
}

class ThrottledConn extends WrappedConn {
  #bucket: TokenBucket;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(conn: Deno.Conn, rate: number) {
    super(conn);
    this.#bucket = new TokenBucket(rate, performance.now());
  }

  override async read(p: Uint8Array): Promise<number | null> {
    const allowed = this.#bucket.available(performance.now());
    if (allowed < 1) {
      // Wait for one byte's worth, at least; the close wakes us too.
      const ms = this.#bucket.waitMs(performance.now());
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, ms);
      });
      this.#wake = undefined;
      if (this.#closed) throw new Deno.errors.BadResource("Connection closed");
      return this.read(p);
    }
    const n = await this.inner.read(p.subarray(0, Math.min(p.length, allowed)));
    if (n !== null) this.#bucket.take(n);
    return n;
  }

  override close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    this.inner.close();
  }
}

/** `listener`, each of its connections read at most `rate` bytes a second. */
export function throttledListener(
  listener: Deno.Listener,
  rate: number,
): Deno.Listener {
  return new class extends WrappedListener {
    override async accept(): Promise<Deno.Conn> {
      return throttled(await this.inner.accept(), rate);
    }
  }(listener);
}
