// Private: when a relay may deliver its next round, judged by the writers it
// delivered to. Not exported from mod.ts.

/**
 * How long the writers still busy may go without any write of this thread
 * completing before they count as stuck: the relay then stops waiting for
 * them, and their queues fill until they are dropped. Clients that read
 * were seen to pause for up to 200 ms with their sockets full while 2,000
 * joined at once on two cores; this leaves them room.
 */
export const STALL_MS = 500;
/**
 * A check that runs later than this after it was due saw a busy event loop:
 * writes that completed meanwhile may not be reported yet. Such a check
 * gives the loop another turn and looks again.
 */
const LATE_MS = STALL_MS / 2;

/**
 * Tells a relay when every writer it delivered to has handed its lines to
 * its socket, so that the next round does not pile up in their queues.
 *
 * A client is slow when its socket does not take what is written to it, not
 * when this process is late. Deno completes at most 128 socket operations
 * per turn of its event loop, so 2,000 small writes take tens of
 * milliseconds however ready their sockets are, and a write's own age says
 * nothing. What does: while any write of this thread completes, the writers
 * are still being served and none counts as stuck. Only when no write has
 * completed for {@linkcode STALL_MS} (measured by a check that ran on time)
 * are the writers still busy stuck: their sockets take nothing. Stuck
 * writers are not waited for; the others always are, however busy the
 * process is.
 *
 * Cost: O(1) per write; the stall check runs only while a round waits, at
 * most once per `STALL_MS`, and costs O(busy writers) when it finds a stall.
 */
export class Pacer {
  #busy = new Set<object>();
  #stuck = new Set<object>();
  /** Busy writers in other threads, which judge their own stalls. */
  #remote = 0;
  /** `performance.now()` when a write of this thread last completed. */
  #progressAt = 0;
  #waiters: (() => void)[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #due = 0;

  /**
   * A writer on this thread started (`true`) or finished (`false`); either
   * is progress.
   */
  busy(writer: object, busy: boolean): void {
    this.#progressAt = performance.now();
    if (busy) {
      this.#busy.add(writer);
      return;
    }
    this.#busy.delete(writer);
    this.#stuck.delete(writer);
    if (this.#waiters.length > 0 && this.#settled()) this.#wake();
  }

  /** A write of a writer on this thread completed: it is being served. */
  progress(): void {
    this.#progressAt = performance.now();
  }

  /** A writer in another thread started or finished (see `#remote`). */
  remoteBusy(busy: boolean): void {
    this.#remote += busy ? 1 : -1;
    if (!busy && this.#waiters.length > 0 && this.#settled()) this.#wake();
  }

  /** Resolves once every busy writer is idle or stuck. */
  settled(): Promise<void> {
    if (this.#settled()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      if (this.#timer === undefined) this.#arm(STALL_MS);
    });
  }

  #settled(): boolean {
    return this.#remote === 0 && this.#busy.size === this.#stuck.size;
  }

  #arm(ms: number): void {
    this.#due = performance.now() + ms;
    this.#timer = setTimeout(this.#check, ms);
  }

  #check = (): void => {
    this.#timer = undefined;
    if (this.#waiters.length === 0) return;
    const now = performance.now();
    if (now - this.#due > LATE_MS) return this.#arm(0);
    const quiet = now - this.#progressAt;
    if (quiet < STALL_MS) return this.#arm(Math.ceil(STALL_MS - quiet));
    for (const writer of this.#busy) this.#stuck.add(writer);
    if (this.#settled()) this.#wake();
    else this.#arm(STALL_MS);
  };

  #wake(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
