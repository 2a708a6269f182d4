// Private: the base of every connection and listener that wraps another (a
// PROXY header's, a throttled one, the TLS gate's, one whose place under the
// limits is given back on close): everything goes to the wrapped one, and a
// wrapper overrides only what it changes. Not exported from mod.ts.

/**
 * Turns `conn` away before it is served: a WebSocket is closed with `code`
 * (1008 for a rule, 1013 for a full server) and `reason`, so that its
 * client can tell why; any other connection is just closed.
 */
export function turnAway(conn: Deno.Conn, code: number, reason: string): void {
  const closeWith = (conn as Partial<WrappedConn>).closeWith;
  if (closeWith !== undefined) closeWith.call(conn, code, reason);
  else conn.close();
}

/** A connection that passes everything on to `inner`. */
export class WrappedConn implements Deno.Conn {
  protected readonly inner: Deno.Conn;

  constructor(inner: Deno.Conn) {
    this.inner = inner;
  }

  get localAddr(): Deno.Addr {
    return this.inner.localAddr;
  }

  get remoteAddr(): Deno.Addr {
    return this.inner.remoteAddr;
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.inner.read(p);
  }

  write(p: Uint8Array): Promise<number> {
    return this.inner.write(p);
  }

  closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }

  close(): void {
    this.inner.close();
  }

  /** TCP's, when the connection is TCP (the engine and TLS gate use it). */
  setNoDelay(noDelay?: boolean): void {
    (this.inner as Deno.TcpConn).setNoDelay?.(noDelay);
  }

  setKeepAlive(keepAlive?: boolean): void {
    (this.inner as Deno.TcpConn).setKeepAlive?.(keepAlive);
  }

  ref(): void {
    this.inner.ref();
  }

  unref(): void {
    this.inner.unref();
  }

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.inner.readable;
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.inner.writable;
  }

  /**
   * Closes a WebSocket below with a close code (see turnAway), then this
   * connection as `close()` does (a wrapper's own close, such as giving a
   * place under the limits back, runs either way).
   */
  closeWith(code: number, reason: string): void {
    (this.inner as Partial<WrappedConn>).closeWith?.(code, reason);
    this.close();
  }

  /**
   * Why the connection ended when a layer below ended it on purpose (a
   * fault), for the engine's log and counters; undefined otherwise.
   */
  endedBy(): string | undefined {
    return (this.inner as Partial<WrappedConn>).endedBy?.();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A listener that passes everything on to `inner`; a wrapper overrides
 * `accept()` (and `close()` when it holds more), and iterating follows.
 */
export class WrappedListener implements Deno.Listener {
  protected readonly inner: Deno.Listener;

  constructor(inner: Deno.Listener) {
    this.inner = inner;
  }

  get addr(): Deno.Addr {
    return this.inner.addr;
  }

  accept(): Promise<Deno.Conn> {
    return this.inner.accept();
  }

  close(): void {
    this.inner.close();
  }

  ref(): void {
    this.inner.ref();
  }

  unref(): void {
    this.inner.unref();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Accepts until the listener is closed. */
  async *[Symbol.asyncIterator](): AsyncIterableIterator<Deno.Conn> {
    while (true) {
      try {
        yield await this.accept();
      } catch (error) {
        if (
          error instanceof Deno.errors.BadResource ||
          error instanceof Deno.errors.Interrupted
        ) return;
        throw error;
      }
    }
  }
}
