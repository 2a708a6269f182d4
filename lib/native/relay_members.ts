// Private: the native loop's clients in broadcast and chat mode, as members
// of the relay on the calling thread (lib/relay/relay.ts, through its
// lib/relay/bridge.ts): each client's lines go there, and the client is
// not read again until they are delivered (a fast sender is paced by the
// relay, as on the default engine); what the relay delivers comes back in
// batches, and a batch is reported settled once every socket took its
// share, or a stuck one has had STALL_MS. The loop (lib/native/loop.ts)
// moves the bytes. Not exported from mod.ts.

import { LineSplitter } from "../_lines.ts";
import type { Delivery, RelayMessage } from "../relay/bridge.ts";
import { STALL_MS } from "../relay/pacer.ts";
import { lineTooLong } from "../modes/session.ts";
import type { Ending } from "../core/endings.ts";

const encoder = new TextEncoder();

/** What the loop does for the relay's members. */
export interface RelayHost {
  /** Sends `message` to the calling thread. */
  post(message: RelayMessage, transfer?: Transferable[]): void;
  /**
   * Sends `lines` to `fd` in one write, after what it owes, within its
   * queue's bounds.
   */
  queue(fd: number, lines: Uint8Array[]): void;
  /** Stops reading `fd`, or reads it again. */
  hold(fd: number): void;
  unhold(fd: number): void;
  /** Ends `fd` politely, for `reason`. */
  finish(fd: number, reason: Ending): void;
  /** Whether `fd` is still open and not being ended. */
  serving(fd: number): boolean;
  /** Whether any connection owes bytes its socket has not taken. */
  owing(): boolean;
}

/** What happens once a client's lines are delivered. */
type After = "tooLong" | "end" | undefined;

/** The relay members of one loop. */
export class RelayMembers {
  #host: RelayHost;
  #maxLineBytes: number;
  #ids = new Map<number, number>();
  #fds = new Map<number, number>();
  #splitters = new Map<number, LineSplitter>();
  #waiting = new Map<number, { fd: number; after: After }>();
  #nextId = 1;
  #nextToken = 1;
  /** Batches delivered and not reported settled, and when one must be. */
  #unsettled = 0;
  #settleAt = Infinity;

  constructor(host: RelayHost, maxLineBytes: number) {
    this.#host = host;
    this.#maxLineBytes = maxLineBytes;
  }

  /** When the loop must call {@linkcode timers} next. */
  get nextTimer(): number {
    return this.#settleAt;
  }

  /**
   * `fd` is a new client, named `peer`, and `certName` by its certificate
   * (if it sent one).
   */
  join(fd: number, peer: string, certName?: string): void {
    const id = this.#nextId++;
    this.#ids.set(fd, id);
    this.#fds.set(id, fd);
    this.#splitters.set(fd, new LineSplitter(this.#maxLineBytes));
    this.#host.post(
      certName === undefined
        ? { t: "join", id, peer }
        : { t: "join", id, peer, certName },
    );
  }

  /** `fd`'s connection is gone: it leaves, if it had not. */
  left(fd: number): void {
    const id = this.#ids.get(fd);
    this.#splitters.delete(fd);
    // Its lines' acknowledgement must not reach the next connection that
    // gets the same descriptor.
    for (const [token, waiting] of this.#waiting) {
      if (waiting.fd === fd) this.#waiting.delete(token);
    }
    if (id === undefined) return;
    this.#ids.delete(fd);
    this.#fds.delete(id);
    this.#host.post({ t: "leave", id });
  }

  /** `fd` sent `chunk` (a view, valid during the call). */
  receive(fd: number, chunk: Uint8Array): void {
    const splitter = this.#splitters.get(fd);
    if (splitter === undefined) return;
    // The relay keeps the lines: copies.
    const lines = splitter.push(chunk).map((line) => line.slice());
    this.#submit(fd, lines, splitter.tooLong ? "tooLong" : undefined);
  }

  /** `fd`'s client half-closed. */
  end(fd: number): void {
    const splitter = this.#splitters.get(fd);
    if (splitter === undefined) return;
    // A last line without a newline gets one, so that it cannot run into
    // the next client's line.
    const last = splitter.end();
    const lines = last === undefined ? [] : [withNewline(last)];
    this.#submit(fd, lines, splitter.tooLong ? "tooLong" : "end");
  }

  /** A batch from the relay: lines to post, and submits it finished. */
  deliver(items: Delivery[], acks: [number, boolean][], now: number): void {
    // Each client's lines of the batch, in order, go in one write. A run
    // of items for a whole group shares the relay's one list of ids (see
    // MemberGroup in lib/relay/relay.ts): its lines are taken together.
    const batches = new Map<number, Uint8Array[]>();
    for (let i = 0; i < items.length;) {
      const ids = items[i][0];
      let end = i + 1;
      while (end < items.length && items[end][0] === ids) end++;
      const lines = items.slice(i, end).map((item) => item[1]);
      i = end;
      for (const id of ids) {
        const fd = this.#fds.get(id);
        if (fd === undefined) continue;
        const batch = batches.get(fd);
        if (batch === undefined) batches.set(fd, lines.slice());
        else batch.push(...lines);
      }
    }
    for (const [fd, lines] of batches) {
      if (this.#host.serving(fd)) this.#host.queue(fd, lines);
    }
    for (const [token, quitting] of acks) this.#ack(token, quitting);
    if (items.length === 0) return;
    this.#unsettled++;
    if (!this.#host.owing()) return this.#settle();
    if (this.#settleAt === Infinity) this.#settleAt = now + STALL_MS;
  }

  /** The loop sent everything some connection owed. */
  flushed(): void {
    if (this.#unsettled > 0 && !this.#host.owing()) this.#settle();
  }

  /** A stuck socket has had its time: the batch is settled anyway. */
  timers(now: number): void {
    if (this.#unsettled > 0 && now >= this.#settleAt) this.#settle();
  }

  #settle(): void {
    this.#host.post({ t: "settled", count: this.#unsettled });
    this.#unsettled = 0;
    this.#settleAt = Infinity;
  }

  #submit(fd: number, lines: Uint8Array[], after: After): void {
    const id = this.#ids.get(fd);
    if (lines.length === 0 || id === undefined) {
      if (after !== undefined) this.#after(fd, after);
      return;
    }
    const token = this.#nextToken++;
    this.#waiting.set(token, { fd, after });
    this.#host.hold(fd);
    this.#host.post(
      { t: "submit", id, token, lines },
      lines.map((line) => line.buffer as ArrayBuffer),
    );
  }

  #ack(token: number, quitting: boolean): void {
    const waiting = this.#waiting.get(token);
    if (waiting === undefined) return;
    this.#waiting.delete(token);
    const { fd, after } = waiting;
    if (!this.#host.serving(fd)) return;
    this.#host.unhold(fd);
    if (quitting) {
      this.left(fd);
      return this.#host.finish(fd, "quit command");
    }
    if (after !== undefined) this.#after(fd, after);
  }

  /** Ends `fd` once its lines are delivered: too long, or its end. */
  #after(fd: number, after: "tooLong" | "end"): void {
    this.left(fd);
    if (after === "end") return this.#host.finish(fd, "closed by client");
    this.#host.queue(fd, [encoder.encode(lineTooLong(this.#maxLineBytes))]);
    this.#host.finish(fd, "line too long");
  }
}

/** A copy of `line` with a `\n` after it. */
function withNewline(line: Uint8Array): Uint8Array {
  const out = new Uint8Array(line.length + 1);
  out.set(line);
  out[line.length] = 0x0a;
  return out;
}
