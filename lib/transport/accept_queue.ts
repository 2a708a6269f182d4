// Private: a listener whose connections become ready after some work of
// their own (a TLS handshake, a PROXY header), in any order. Not exported
// from mod.ts.

/**
 * Accepting on a public listener, for connections that become ready
 * elsewhere (once their handshake is done): `accept()` accepts on the
 * public listener, so that its errors reach the engine's accept loop
 * (which counts them, or backs off), and returns the next ready
 * connection.
 */
export class AcceptQueue {
  #public: Deno.Listener;
  #accepted: (conn: Deno.Conn) => void;
  #ready: Deno.Conn[] = [];
  #wake: (() => void) | undefined;
  #pending: Promise<Deno.Conn> | undefined;
  #closed = false;

  constructor(listener: Deno.Listener, accepted: (conn: Deno.Conn) => void) {
    this.#public = listener;
    this.#accepted = accepted;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async accept(): Promise<Deno.Conn> {
    while (true) {
      const ready = this.#ready.shift();
      if (ready !== undefined) return ready;
      if (this.#closed) throw new Deno.errors.BadResource("Listener closed");
      if (this.#pending === undefined) {
        const accepting = this.#public.accept();
        accepting.catch(() => {}); // Seen by whoever awaits it below.
        this.#pending = accepting;
      }
      const woken = new Promise<undefined>((resolve) =>
        this.#wake = () => resolve(undefined)
      );
      let conn: Deno.Conn | undefined;
      try {
        conn = await Promise.race([this.#pending, woken]);
      } catch (error) {
        this.#pending = undefined;
        throw error;
      }
      this.#wake = undefined;
      if (conn !== undefined) {
        this.#pending = undefined;
        this.#accepted(conn);
      }
    }
  }

  /** A connection is ready for the engine. */
  push(conn: Deno.Conn): void {
    if (this.#closed) return void conn.close();
    this.#ready.push(conn);
    this.#wake?.();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#public.close();
    for (const conn of this.#ready.splice(0)) conn.close();
    this.#wake?.();
  }
}
