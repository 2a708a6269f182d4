// Private: `maxBytesPerSecond`: a connection the server reads no faster than
// its rate (a token bucket holding one second's bytes). Nothing is dropped:
// what the client sends waits in the kernel's buffers, and TCP makes the
// client wait, so the echo stays exact. Installed only when configured. Not
// exported from mod.ts.

/** `conn`, read at most `rate` bytes a second. */
export function throttled(conn: Deno.Conn, rate: number): Deno.Conn {
  return new ThrottledConn(conn, rate);
}

class ThrottledConn implements Deno.Conn {
  readonly localAddr: Deno.Addr;
  readonly remoteAddr: Deno.Addr;
  #conn: Deno.Conn;
  #rate: number;
  #tokens: number;
  #stamp = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(conn: Deno.Conn, rate: number) {
    this.#conn = conn;
    this.#rate = rate;
    this.#tokens = rate;
    this.localAddr = conn.localAddr;
    this.remoteAddr = conn.remoteAddr;
  }

  async read(p: Uint8Array): Promise<number | null> {
    const now = performance.now();
    this.#tokens = Math.min(
      this.#rate,
      this.#tokens + (now - this.#stamp) * this.#rate / 1000,
    );
    this.#stamp = now;
    if (this.#tokens < 1) {
      // Wait for one byte's worth, at least; the close wakes us too.
      const ms = (1 - this.#tokens) * 1000 / this.#rate;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, ms);
      });
      this.#wake = undefined;
      if (this.#closed) throw new Deno.errors.BadResource("Connection closed");
      return this.read(p);
    }
    const allowed = Math.min(p.length, Math.floor(this.#tokens));
    const n = await this.#conn.read(p.subarray(0, allowed));
    if (n !== null) this.#tokens -= n;
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    this.#conn.close();
  }

  /** TCP's, when the connection is TCP (the engine and TLS gate use it). */
  setNoDelay(noDelay?: boolean): void {
    (this.#conn as Deno.TcpConn).setNoDelay?.(noDelay);
  }

  setKeepAlive(keepAlive?: boolean): void {
    (this.#conn as Deno.TcpConn).setKeepAlive?.(keepAlive);
  }

  ref(): void {
    this.#conn.ref();
  }

  unref(): void {
    this.#conn.unref();
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.#conn.readable;
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#conn.writable;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
