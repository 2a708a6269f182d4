// Private: faults on the native engine's connections (issue 23), as
// lib/transport/faulted.ts acts them out on the default engine: what a
// connection reads goes through the receive faults before its mode sees it,
// what its mode sends through the send faults before the socket does, each
// at the time lib/faults/pipe.ts says, in order. The loop (lib/native/
// loop.ts) reads and writes the sockets; this keeps each faulted
// connection's timed bytes and endings, says when the next is due, and
// hands them back to the loop through its hooks. Only connections a fault
// hits are here. Not exported from mod.ts.

import {
  bytesOf,
  type Draw,
  drawsOnce,
  type Ending,
  FaultPipe,
  FaultSet,
  type Out,
} from "../faults/pipe.ts";
import type { FaultAction } from "../types.ts";

/** Bytes taken in or let out that may wait on a delay, each way. */
const IN_FLIGHT = 1024 * 1024;

/** What the loop does for the faults. */
export interface FaultHooks {
  /** Bytes the receive faults let through reach the mode, as if read. */
  consume(fd: number, bytes: Uint8Array): void;
  /** The client's end of stream (or a limit's) reaches the mode. */
  eof(fd: number, byFault: boolean): void;
  /**
   * Writes `bytes` to the socket after what it owes (keeping what it does
   * not take); false once the connection has ended.
   */
  write(fd: number, bytes: Uint8Array): boolean;
  /** Whether `fd` owes the socket bytes it did not take yet. */
  owes(fd: number): boolean;
  /** Ends the sending side, after what the socket owes (a limit). */
  closeWrite(fd: number): void;
  /** Ends the connection now, with a reset. */
  reset(fd: number): void;
  /** Ends the connection now (a down that came while it was open). */
  end(fd: number): void;
  /** Stops reading `fd`, or reads it again. */
  hold(fd: number): void;
  unhold(fd: number): void;
  /** A fault acted on `fd`. */
  acted(fd: number, action: FaultAction): void;
  /** Faults held `bytes` back. */
  delayed(bytes: number): void;
}

/** Things to do at a time, in order. */
interface Due {
  at: number;
  run: () => void;
}

/** One faulted connection. */
class Faulted {
  in: FaultPipe;
  out: FaultPipe;
  /** What is due each way, in order. */
  ins: Due[] = [];
  outs: Due[] = [];
  /** Bytes read but not yet given to the mode; sent but not yet written. */
  inFlight = 0;
  outFlight = 0;
  held = false;
  /** Nothing more comes in or goes out: a hang. */
  hung = false;
  /** A fault ended the sending side. */
  sendStopped = false;
  /** The mode has seen its end of stream. */
  eof = false;
  /** A fault, not the client, ends its stream (a limit, a hang's time). */
  eofByFault = false;
  /**
   * The end of stream is due, but bytes the mode sent before it are still
   * on their way out: the mode sees it once they are written (it ends the
   * connection when it does).
   */
  eofWaits = false;
  /** The hang fault that stopped it, while hung. */
  hungBy: string | undefined;
  /** Its client's address, and its draws against the faults' rates. */
  client: string | undefined;
  draw: Draw;

  constructor(
    chosen: { receive: FaultPipe; send: FaultPipe },
    client: string | undefined,
    draw: Draw,
  ) {
    this.in = chosen.receive;
    this.out = chosen.send;
    this.client = client;
    this.draw = draw;
  }
}

/** The faulted connections of one loop. */
export class FaultedConns {
  #set: FaultSet | undefined;
  #hooks: FaultHooks;
  #conns = new Map<number, Faulted>();
  /** The time now, as the last call said. */
  #now = 0;
  /** Sockets whose close a slow_close holds back, until when. */
  #closing = new Map<number, { at: number; close: () => void }>();

  /** Whether changes reach open connections (every one is here). */
  #live: boolean;

  constructor(set: FaultSet | undefined, hooks: FaultHooks, live = false) {
    this.#set = set;
    this.#hooks = hooks;
    this.#live = live;
  }

  /**
   * New connections get `set`'s faults (none when undefined); when live,
   * open ones follow from their next bytes on (the pacing faults and hang
   * are replaced, a lifted hang lets bytes pass, a `down` closes them).
   */
  set(set: FaultSet | undefined, now: number): void {
    this.#set = set;
    if (!this.#live) return;
    this.#now = now;
    const current = set ?? new FaultSet([]);
    for (const [fd, c] of [...this.#conns]) {
      if (current.downFor(c.client, c.draw)) {
        this.#conns.delete(fd);
        this.#hooks.acted(fd, "down");
        this.#hooks.end(fd);
        continue;
      }
      const chosen = current.forClient(c.client, c.draw);
      const receive = c.in.replace(chosen.receive, now);
      const send = c.out.replace(chosen.send, now);
      if (
        c.hung &&
        ![...chosen.receive, ...chosen.send].some((f) =>
          f.kind === "hang" && f.name === c.hungBy
        )
      ) {
        // Lifted: bytes pass again (those that came meanwhile are gone).
        c.hung = false;
        c.hungBy = undefined;
        c.ins.length = 0;
      }
      this.#schedule(fd, c, receive, "receive");
      this.#schedule(fd, c, send, "send");
      if (this.#conns.has(fd)) this.#pace(fd, c);
    }
  }

  /**
   * Whether nothing acts on `fd`'s side now: its bytes may go as they
   * would without faults.
   */
  passes(fd: number, side: "receive" | "send"): boolean {
    const c = this.#conns.get(fd)!;
    if (c.hung) return false;
    return side === "receive"
      ? c.in.empty && c.ins.length === 0 && !c.eof && c.inFlight === 0
      : c.out.empty && c.outs.length === 0 && !c.sendStopped &&
        c.outFlight === 0;
  }

  get size(): number {
    return this.#conns.size;
  }

  /** Whether new connections may be faulted (faults are set, or live). */
  get on(): boolean {
    return this.#live || this.#set !== undefined;
  }

  /** Drops `fd`'s faults (it was not admitted after all). */
  forget(fd: number): void {
    this.#conns.delete(fd);
  }

  has(fd: number): boolean {
    return this.#conns.has(fd);
  }

  /**
   * A new connection from `client` (undefined for a Unix socket's):
   * `"down"` when a down fault closes it at once; else the names of the
   * faults that hit it, which it now goes through (empty: none does).
   */
  open(fd: number, client: string | undefined, now: number): "down" | string {
    this.#now = now;
    const set = this.#set ?? (this.#live ? new FaultSet([]) : undefined);
    if (set === undefined) return "";
    const draw = drawsOnce();
    if (set.downFor(client, draw)) return "down";
    const chosen = set.forClient(client, draw);
    const hit = chosen.receive.length > 0 || chosen.send.length > 0;
    if (!hit && !this.#live) return "";
    const c = new Faulted(
      {
        receive: new FaultPipe(chosen.receive),
        send: new FaultPipe(chosen.send),
      },
      client,
      draw,
    );
    this.#conns.set(fd, c);
    this.#schedule(fd, c, c.in.open(now), "receive");
    this.#schedule(fd, c, c.out.open(now), "send");
    return [...new Set([...chosen.receive, ...chosen.send])]
      .map((f) => f.name).join(", ");
  }

  /** `fd` read `bytes` (a copy it may keep) at `now`. */
  received(fd: number, bytes: Uint8Array, now: number): void {
    this.#now = now;
    const c = this.#conns.get(fd)!;
    if (c.hung || c.eof) return; // Read and dropped.
    c.inFlight += bytes.length;
    const out = c.in.push(bytes, now);
    c.inFlight -= bytes.length - bytesOf(out);
    this.#schedule(fd, c, out, "receive");
    this.#pace(fd, c);
  }

  /** The client's end of stream came at `now`: after what came before. */
  ended(fd: number, now: number): void {
    this.#now = now;
    const c = this.#conns.get(fd)!;
    if (c.eof) return;
    if (c.hung) {
      // A hung connection ends when its client does.
      c.eof = true;
      return this.#hooks.eof(fd, true);
    }
    this.#add(c.ins, c.in.end(now), () => this.#eof(fd, c));
  }

  /**
   * Runs `run` once what the mode sent before now has gone out through
   * `fd`'s faults (at once when none hit it).
   */
  afterSends(fd: number, now: number, run: () => void): void {
    this.#now = now;
    const c = this.#conns.get(fd);
    if (c === undefined || c.hung) return run();
    if (c.sendStopped) return;
    this.#add(c.outs, c.out.end(now), run);
  }

  /** The mode sends `bytes` (a copy it may keep) at `now`. */
  send(fd: number, bytes: Uint8Array, now: number): void {
    this.#now = now;
    const c = this.#conns.get(fd)!;
    if (c.hung || c.sendStopped) return; // Gone, as on a dead link.
    this.#schedule(fd, c, c.out.push(bytes, now), "send");
    this.#pace(fd, c);
  }

  /**
   * The loop is about to close `fd` at `now` (it has ended); returns when
   * the socket may close: later with a slow_close (then `close` is called
   * then), or undefined to close it now.
   */
  closing(fd: number, now: number, close: () => void): boolean {
    const c = this.#conns.get(fd);
    if (c === undefined) return false;
    this.#conns.delete(fd);
    const at = c.hung ? now : c.out.end(now);
    if (at <= now) return false;
    this.#closing.set(fd, { at, close });
    return true;
  }

  /** When the next thing is due, or Infinity. */
  get nextTimer(): number {
    let at = Infinity;
    for (const [fd, c] of this.#conns) {
      if (c.ins.length > 0) at = Math.min(at, c.ins[0].at);
      if (c.outs.length > 0) at = Math.min(at, c.outs[0].at);
      if (c.eofWaits && this.#eofReady(fd, c)) at = 0;
    }
    for (const closing of this.#closing.values()) {
      at = Math.min(at, closing.at);
    }
    return at;
  }

  /** Whether an end of stream waits only for the socket to take bytes. */
  #eofReady(fd: number, c: Faulted): boolean {
    return c.eofWaits && c.outs.length === 0 && c.outFlight === 0 &&
      !this.#hooks.owes(fd);
  }

  /** Does what is due at `now`. */
  timers(now: number): void {
    this.#now = now;
    for (const [fd, c] of [...this.#conns]) {
      for (const queue of [c.ins, c.outs]) {
        while (queue.length > 0 && queue[0].at <= now) {
          queue.shift()!.run();
          if (!this.#conns.has(fd)) break;
        }
        if (!this.#conns.has(fd)) break;
      }
      if (!this.#conns.has(fd)) continue;
      if (this.#eofReady(fd, c)) this.#eof(fd, c);
      if (this.#conns.has(fd)) this.#pace(fd, c);
    }
    for (const [fd, { at, close }] of [...this.#closing]) {
      if (at > now) continue;
      this.#closing.delete(fd);
      close();
    }
  }

  /** Closes every socket a slow_close holds back (the loop stops). */
  closeAll(): void {
    for (const { close } of this.#closing.values()) close();
    this.#closing.clear();
  }

  /** Whether sockets are still held back (the loop must not stop). */
  get holding(): boolean {
    return this.#closing.size > 0;
  }

  /** Puts `out`'s bytes and endings on `fd`'s queues. */
  #schedule(fd: number, c: Faulted, out: Out[], side: "receive" | "send") {
    const held = bytesOf(out, this.#now);
    if (held > 0) this.#hooks.delayed(held);
    for (const item of out) {
      if ("end" in item) {
        this.#add(
          side === "receive" ? c.ins : c.outs,
          item.at,
          () => this.#end(fd, c, item, side),
        );
      } else if (side === "receive") {
        this.#add(c.ins, item.at, () => {
          c.inFlight -= item.bytes.length;
          if (!c.hung && !c.eof) this.#hooks.consume(fd, item.bytes);
        });
      } else {
        c.outFlight += item.bytes.length;
        this.#add(c.outs, item.at, () => {
          c.outFlight -= item.bytes.length;
          if (!c.hung) this.#hooks.write(fd, item.bytes);
        });
      }
    }
  }

  #add(queue: Due[], at: number, run: () => void): void {
    // Due now, with nothing before it: done at once, as without faults.
    if (queue.length === 0 && at <= this.#now) return run();
    queue.push({ at, run });
  }

  /** The mode sees its end of stream once what it sent is written. */
  #eof(fd: number, c: Faulted): void {
    if (c.eof) return;
    if (c.outs.length > 0 || c.outFlight > 0 || this.#hooks.owes(fd)) {
      c.eofWaits = true;
      return;
    }
    c.eof = true;
    c.eofWaits = false;
    this.#hooks.eof(fd, c.eofByFault);
  }

  /** Holds reading while a megabyte waits either way, or while hung. */
  #pace(fd: number, c: Faulted): void {
    const full = c.inFlight >= IN_FLIGHT || c.outFlight >= IN_FLIGHT;
    if (full && !c.held) {
      c.held = true;
      this.#hooks.hold(fd);
    } else if (!full && c.held) {
      c.held = false;
      this.#hooks.unhold(fd);
    }
  }

  /** A fault ends `fd` as `ending` says. */
  #end(fd: number, c: Faulted, ending: Ending, side: "receive" | "send") {
    const hooks = this.#hooks;
    if (c.hung && ending.end === "hang") return; // Hung already.
    hooks.acted(fd, ending.end === "fin" ? "limit" : ending.end);
    if (ending.end === "reset") {
      this.#conns.delete(fd);
      return hooks.reset(fd);
    }
    if (ending.end === "hang") {
      // Nothing more either way: what is still due is dropped; what the
      // client sends is read and dropped, so that its close is seen.
      c.hung = true;
      c.hungBy = ending.fault;
      c.outs.length = 0;
      c.ins.length = 0;
      c.inFlight = 0;
      c.outFlight = 0;
      if (ending.forMs !== undefined) {
        c.ins.push({
          at: ending.at + ending.forMs,
          run: () => {
            c.eof = true;
            hooks.eof(fd, true);
          },
        });
      }
      return;
    }
    if (side === "receive") {
      c.eofByFault = true;
      return this.#eof(fd, c);
    }
    c.sendStopped = true;
    hooks.closeWrite(fd);
  }
}
