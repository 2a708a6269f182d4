// Private: the one writer of a connection. Everything the server sends to a
// client goes through its Outbox, so writes never interleave. Not exported
// from mod.ts.

import { join } from "./_lines.ts";

/** What an {@linkcode Outbox} reports to its owner. */
export interface OutboxHooks {
  /** Bytes handed to the socket. */
  written(bytes: number): void;
  /** A write failed; the connection is unusable. */
  failed(error: unknown): void;
  /** The outbox started writing (`true`) or has nothing left (`false`). */
  busy?(busy: boolean): void;
}

/**
 * Serialises the writes of one connection. Two ways in:
 *
 * - {@linkcode Outbox.send} writes and waits, for a loop that must not read
 *   ahead of its writes (the echo loops): backpressure stays with the client.
 * - {@linkcode Outbox.post} queues without waiting, for messages from other
 *   clients or the operator. The queue is bounded in lines and bytes; a post
 *   over either bound is refused, and the caller drops the client.
 *
 * Queued posts are written together, in order, in as few writes as possible.
 */
export class Outbox {
  readonly maxLines: number;
  readonly maxBytes: number;
  #conn: Deno.Conn;
  #hooks: OutboxHooks;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #busy = false;
  #closed = false;
  #sealed = false;
  #idleWaiters: (() => void)[] = [];

  constructor(
    conn: Deno.Conn,
    maxLines: number,
    maxBytes: number,
    hooks: OutboxHooks,
  ) {
    this.#conn = conn;
    this.maxLines = maxLines;
    this.maxBytes = maxBytes;
    this.#hooks = hooks;
  }

  /** Lines queued and not yet handed to the socket. */
  get queuedLines(): number {
    return this.#queue.length;
  }

  /** Bytes queued and not yet handed to the socket. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /**
   * Whether the caller may write to the socket itself right now: nothing is
   * queued or in flight. Bracket that write with
   * {@linkcode Outbox.claim} and {@linkcode Outbox.release}; this is the echo
   * loop's fast path, which {@linkcode Outbox.send} would only slow down.
   */
  get free(): boolean {
    return !this.#busy && this.#queue.length === 0;
  }

  /** Takes the socket for the caller's own write (see `free`). */
  claim(): void {
    this.#setBusy(true);
  }

  /** Gives the socket back after the caller's own write. */
  release(): void {
    this.#setBusy(false);
    if (this.#queue.length > 0) this.#drain();
  }

  /**
   * Queues `bytes` (which must not change afterwards) and returns `true`, or
   * returns `false` without queueing when the queue would go over a bound.
   * After {@linkcode Outbox.close} or {@linkcode Outbox.seal}, drops `bytes`
   * and returns `true`.
   */
  post(bytes: Uint8Array): boolean {
    if (this.#closed || this.#sealed) return true;
    if (
      this.#queue.length + 1 > this.maxLines ||
      this.#queuedBytes + bytes.length > this.maxBytes
    ) {
      return false;
    }
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    if (!this.#busy) this.#drain();
    return true;
  }

  /**
   * Writes all of `bytes` after anything queued before, and resolves once
   * the socket has taken them. Rejects if the write fails. After
   * {@linkcode Outbox.close}, {@linkcode Outbox.seal} or
   * {@linkcode Outbox.end}, drops `bytes`.
   */
  async send(bytes: Uint8Array): Promise<void> {
    while (this.#busy) await this.idle();
    if (this.#closed || this.#sealed) return;
    this.claim();
    try {
      await this.#writeAll(bytes);
    } finally {
      this.release();
    }
  }

  /** Resolves once nothing is queued and no write is in flight. */
  idle(): Promise<void> {
    if (!this.#busy && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Takes no more posts (they are dropped), while what is queued still goes
   * out: for a last line, such as the shutdown notice.
   */
  seal(): void {
    this.#sealed = true;
  }

  /**
   * Takes nothing more (see {@linkcode Outbox.seal}) and resolves once what
   * is queued or in flight has been handed to the socket: the moment to
   * half-close.
   */
  end(): Promise<void> {
    this.#sealed = true;
    return this.idle();
  }

  /** Drops what is queued and refuses nothing from now on. */
  close(): void {
    this.#closed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    if (!this.#busy) this.#wakeIdle();
  }

  async #drain(): Promise<void> {
    this.#setBusy(true);
    try {
      // Start after the current task, so that lines posted together (a
      // relay's delivery round) go out in one write.
      await undefined;
      while (this.#queue.length > 0 && !this.#closed) {
        const batch = this.#queue.length === 1
          ? this.#queue[0]
          : join(this.#queue, this.#queuedBytes);
        this.#queue = [];
        this.#queuedBytes = 0;
        await this.#writeAll(batch);
      }
    } catch (error) {
      this.close();
      this.#hooks.failed(error);
    } finally {
      this.#setBusy(false);
    }
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    for (let written = 0; written < bytes.length;) {
      const n = await this.#conn.write(bytes.subarray(written));
      written += n;
      this.#hooks.written(n);
    }
  }

  #setBusy(busy: boolean): void {
    this.#busy = busy;
    this.#hooks.busy?.(busy);
    if (!busy && this.#queue.length === 0) this.#wakeIdle();
  }

  #wakeIdle(): void {
    if (this.#idleWaiters.length === 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
