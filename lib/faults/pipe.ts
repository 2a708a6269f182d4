// Private: what stream faults do to one direction of one connection, free
// of I/O and told the time: bytes come in at a time, and the pipe says
// which bytes to pass on and when, and when the connection ends (a clean
// close, a reset, a hang) because a fault says so. Faults act in the order
// they are given, each on what the ones before it let through, as
// toxiproxy's toxics do. The drivers move the bytes at the times it says.
// Not exported from mod.ts.

import {
  clientTest,
  type Fault,
  type FaultDirection,
  isDownClose,
  isStream,
  type StreamFault,
} from "./spec.ts";

/** Bytes to pass on at `at` (ms, the driver's clock). */
export interface TimedBytes {
  at: number;
  bytes: Uint8Array;
}

/**
 * The connection ends at `at` because a fault says so: `fin`, a clean
 * close after what was passed on; `reset`, a reset; `hang`, nothing more
 * either way until the peer gives up, or `forMs` has passed.
 */
export interface Ending {
  at: number;
  end: "fin" | "reset" | "hang";
  forMs?: number;
  /** The fault that ends it. */
  fault?: string;
}

/** What a pipe gives the driver, in order. */
export type Out = TimedBytes | Ending;

/**
 * The bytes in `out` (what a pipe let through), and those of them due
 * after `now` (what faults held back).
 */
export function bytesOf(out: Out[], now = Infinity): number {
  let n = 0;
  for (const item of out) {
    if ("bytes" in item && (now === Infinity || item.at > now)) {
      n += item.bytes.length;
    }
  }
  return n;
}

/** A source of numbers from 0 (included) to 1 (excluded), as Math.random. */
export type Random = () => number;

/** One fault's part of a pipe. */
interface Stage {
  /** What it does at the connection's start (`at`), if anything. */
  open(at: number): Out[];
  /** Bytes in, bytes (and maybe an ending) out, in order. */
  pass(piece: TimedBytes): Out[];
  /** The stream's end (or an ending) reaching it at `at`: when it leaves. */
  close(at: number): number;
}

/**
 * The kinds of fault that a change of a running server's faults brings to
 * connections already open (from their next bytes on): the ones that pace
 * bytes, and hang. The others (limit, reset, slow_close) count from a
 * connection's start, so an open connection keeps those it was given.
 */
export const LIVE_KINDS: ReadonlySet<StreamFault["kind"]> = new Set([
  "latency",
  "bandwidth",
  "slicer",
  "hang",
]);

/** The stream faults of one direction of one connection, in order. */
export class FaultPipe {
  #faults: StreamFault[];
  #stages: Stage[];
  #random: Random;
  #endsAt = Infinity;
  /** The ending that set `#endsAt`. */
  #ending: Ending | undefined;

  /** `faults`, in order; `random` draws jitter. */
  constructor(faults: readonly StreamFault[], random: Random = Math.random) {
    this.#random = random;
    this.#faults = [...faults];
    this.#stages = faults.map((fault) => stage(fault, random));
  }

  /**
   * When a fault ends the connection (an ending it gave): bytes that came
   * before pass, nothing after; Infinity while none does.
   */
  get endsAt(): number {
    return this.#endsAt;
  }

  /** Whether no fault acts here (bytes pass as they come). */
  get empty(): boolean {
    return this.#stages.length === 0 && this.#endsAt === Infinity;
  }

  /**
   * The running server's faults changed, at `now`: the
   * {@linkcode LIVE_KINDS} among `faults` replace this pipe's, from the
   * next bytes on (a fault that did not change keeps its state; bytes
   * already passed keep their times); the others stay as they were. A
   * hang whose fault is gone is lifted: bytes pass again.
   *
   * @returns What the new faults do at once (a hang after 0 bytes).
   */
  replace(faults: readonly StreamFault[], now: number): Out[] {
    const kept: { fault: StreamFault; stage: Stage; fresh: boolean }[] = [];
    for (const [i, fault] of this.#faults.entries()) {
      if (!LIVE_KINDS.has(fault.kind)) {
        kept.push({ fault, stage: this.#stages[i], fresh: false });
      }
    }
    for (const fault of faults) {
      if (!LIVE_KINDS.has(fault.kind)) continue;
      const same = this.#faults.findIndex((f) => sameFault(f, fault));
      kept.push(
        same === -1
          ? { fault, stage: stage(fault, this.#random), fresh: true }
          : { fault, stage: this.#stages[same], fresh: false },
      );
    }
    this.#faults = kept.map((k) => k.fault);
    this.#stages = kept.map((k) => k.stage);
    const ending = this.#ending;
    if (
      ending?.end === "hang" &&
      !this.#faults.some((f) => f.name === ending.fault && f.kind === "hang")
    ) {
      this.#ending = undefined;
      this.#endsAt = Infinity;
    }
    const out: Out[] = [];
    for (const [i, k] of kept.entries()) {
      if (k.fresh) out.push(...this.#through(k.stage.open(now), i + 1));
    }
    return this.#seal(out.sort((a, b) => a.at - b.at));
  }

  /** What the faults do at the connection's start, at `now`. */
  open(now: number): Out[] {
    const out: Out[] = [];
    for (const [i, s] of this.#stages.entries()) {
      out.push(...this.#through(s.open(now), i + 1));
    }
    return this.#seal(out.sort((a, b) => a.at - b.at));
  }

  /** `bytes` came at `now`: what to pass on, and when. */
  push(bytes: Uint8Array, now: number): Out[] {
    if (now >= this.#endsAt || bytes.length === 0) return [];
    return this.#seal(this.#through([{ at: now, bytes }], 0));
  }

  /**
   * The stream ended at `now` (the peer's end of stream, or the server's
   * close): when the end may be passed on, after every byte before it.
   */
  end(now: number): number {
    let at = now;
    for (const s of this.#stages) at = s.close(at);
    return at;
  }

  /** `items` through the stages from number `from` on. */
  #through(items: Out[], from: number): Out[] {
    for (const s of this.#stages.slice(from)) {
      const next: Out[] = [];
      for (const item of items) {
        if ("bytes" in item) next.push(...s.pass(item));
        else next.push({ ...item, at: s.close(item.at) });
      }
      items = next;
    }
    return items;
  }

  /**
   * `out` up to its first ending, and none of it later than the ending the
   * connection has already (the earliest ending wins).
   */
  #seal(out: Out[]): Out[] {
    const ending = out.findIndex((item) => "end" in item);
    if (ending !== -1) {
      const at = out[ending].at;
      if (at < this.#endsAt) {
        this.#ending = out[ending] as Ending;
        this.#endsAt = at;
        out = out.slice(0, ending + 1);
      } else {
        out = out.slice(0, ending);
      }
    }
    const endsAt = this.#endsAt;
    return out.filter((item) => item.at <= endsAt);
  }
}

/** The part of a pipe that `fault` plays. */
function stage(fault: StreamFault, random: Random): Stage {
  switch (fault.kind) {
    case "latency":
      return latency(fault.ms, fault.jitter, fault.distribution, random);
    case "bandwidth":
      return bandwidth(fault.bytesPerSecond);
    case "slicer":
      return slicer(fault.size, fault.sizeJitter, fault.delayMs, random);
    case "limit":
      return cut(fault.bytes, { end: "fin", fault: fault.name });
    case "reset":
      return cut(
        fault.bytes,
        { end: "reset", fault: fault.name },
        fault.afterMs,
      );
    case "hang":
      return cut(fault.bytes, {
        end: "hang",
        forMs: fault.forMs,
        fault: fault.name,
      });
    case "slow_close":
      return {
        open: () => [],
        pass: (piece) => [piece],
        close: (at) => at + fault.ms,
      };
  }
}

/** Each piece later by `ms` ± a jitter, never before the one before it. */
function latency(
  ms: number,
  jitter: number,
  distribution: "uniform" | "normal",
  random: Random,
): Stage {
  let last = -Infinity;
  const delay = () => {
    if (jitter === 0) return ms;
    const spread = distribution === "uniform"
      ? (2 * random() - 1) * jitter
      : normal(random) * jitter;
    return Math.max(0, ms + spread);
  };
  return {
    open: () => [],
    pass(piece) {
      last = Math.max(piece.at + delay(), last);
      return [{ at: last, bytes: piece.bytes }];
    },
    close(at) {
      last = Math.max(at + ms, last);
      return last;
    },
  };
}

/**
 * A link of `rate` bytes a second: each piece leaves once the link has
 * carried it, in pieces of at most a tenth of a second's bytes.
 */
function bandwidth(rate: number): Stage {
  let free = -Infinity;
  const most = Math.max(1, Math.floor(rate / 10));
  return {
    open: () => [],
    pass(piece) {
      const out: TimedBytes[] = [];
      for (let i = 0; i < piece.bytes.length; i += most) {
        const bytes = piece.bytes.subarray(i, i + most);
        free = Math.max(piece.at, free) + bytes.length * 1000 / rate;
        out.push({ at: free, bytes });
      }
      return out;
    },
    close: (at) => Math.max(at, free),
  };
}

/** Pieces of `size` ± `sizeJitter` bytes, `delayMs` apart. */
function slicer(
  size: number,
  sizeJitter: number,
  delayMs: number,
  random: Random,
): Stage {
  let last = -Infinity;
  return {
    open: () => [],
    pass(piece) {
      const out: TimedBytes[] = [];
      let at = Math.max(piece.at, last + delayMs);
      for (let i = 0; i < piece.bytes.length;) {
        const jitter = Math.round((2 * random() - 1) * sizeJitter);
        const length = Math.max(1, size + jitter);
        out.push({ at, bytes: piece.bytes.subarray(i, i + length) });
        i += length;
        last = at;
        at += delayMs;
      }
      return out;
    },
    close: (at) => Math.max(at, last),
  };
}

/**
 * Lets `bytes` through, then ends the connection as `ending` says (and,
 * with `afterMs`, at that time from the start if that comes first).
 */
function cut(
  bytes: number | undefined,
  ending: Omit<Ending, "at">,
  afterMs?: number,
): Stage {
  let passed = 0;
  let done = false;
  const end = (at: number): Ending => {
    done = true;
    return { ...ending, at };
  };
  return {
    open(at) {
      const out: Out[] = [];
      if (afterMs !== undefined) out.push({ ...ending, at: at + afterMs });
      if (bytes === 0) out.push(end(at));
      return out;
    },
    pass(piece) {
      if (done) return [];
      if (bytes === undefined) return [piece];
      const room = bytes - passed;
      if (piece.bytes.length < room) {
        passed += piece.bytes.length;
        return [piece];
      }
      passed = bytes;
      return [
        { at: piece.at, bytes: piece.bytes.subarray(0, room) },
        end(piece.at),
      ];
    },
    close: (at) => at,
  };
}

/** Whether `a` and `b` are the same fault, every parameter alike. */
function sameFault(a: StreamFault, b: StreamFault): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A number from the standard normal distribution (Box–Muller). */
function normal(random: Random): number {
  const u = 1 - random(); // (0, 1]: the logarithm is finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/**
 * A connection that takes a running server's new faults as they come (see
 * {@linkcode FaultBox}).
 */
export interface LiveConn {
  /** The faults changed to `set`. */
  refresh(set: FaultSet): void;
}

/**
 * A listener's faults as they are now: `set` replaces them for the
 * connections accepted from then on, and, when `live` (a control API can
 * change them), brings them to the connections open (see
 * {@linkcode LIVE_KINDS}), which then must all go through the faults.
 */
export class FaultBox {
  /** The faults that act on connections; undefined when none do. */
  current: FaultSet | undefined;
  /** Whether changes reach open connections (every one is wrapped). */
  readonly live: boolean;
  #open = new Set<LiveConn>();
  #closing = new Set<Promise<void>>();

  constructor(faults: readonly Fault[], live = false) {
    this.live = live;
    this.current = this.#setOf(faults);
  }

  /** Replaces the faults; open connections follow when live. */
  set(faults: readonly Fault[]): void {
    this.current = this.#setOf(faults);
    if (this.#open.size === 0) return;
    const set = this.current ?? new FaultSet([]);
    for (const conn of this.#open) conn.refresh(set);
  }

  /**
   * `conn`, whose socket is closed once `closed` resolves, follows changes
   * (when live) until {@linkcode FaultBox.leave}.
   */
  join(conn: LiveConn, closed: Promise<void>): void {
    if (this.live) this.#open.add(conn);
    this.#closing.add(closed);
    closed.then(() => this.#closing.delete(closed));
  }

  /** Resolves once every socket a fault holds back (slow_close) is closed. */
  async settled(): Promise<void> {
    while (this.#closing.size > 0) await Promise.all(this.#closing);
  }

  leave(conn: LiveConn): void {
    this.#open.delete(conn);
  }

  #setOf(faults: readonly Fault[]): FaultSet | undefined {
    return this.live || faults.some((f) => isStream(f) || isDownClose(f))
      ? new FaultSet(faults)
      : undefined;
  }
}

/**
 * A draw from 0 (included) to 1 (excluded) for `fault`, against its
 * `rate`: a connection keeps its draw for a fault of a given name, so that
 * a change of its parameters hits the same connections.
 */
export type Draw = (fault: Fault) => number;

/** A new connection's draws, each made once per fault name. */
export function drawsOnce(random: Random = Math.random): Draw {
  const draws = new Map<string, number>();
  return (fault) => {
    let draw = draws.get(fault.name);
    if (draw === undefined) draws.set(fault.name, draw = random());
    return draw;
  };
}

/** A server's faults, with their client lists made ready to match. */
export class FaultSet {
  readonly faults: readonly Fault[];
  #hits: ((client: string | undefined) => boolean)[];

  constructor(faults: readonly Fault[]) {
    this.faults = faults;
    this.#hits = faults.map(clientTest);
  }

  /**
   * Whether a `down` fault closes a connection from `client` (its CIDRs
   * hold the client, and the draw falls under its rate).
   */
  downFor(
    client: string | undefined,
    draw: Draw = () => Math.random(),
  ): boolean {
    for (const [i, fault] of this.faults.entries()) {
      if (!isDownClose(fault) || !this.#hits[i](client)) continue;
      if (fault.rate >= 1 || draw(fault) < fault.rate) return true;
    }
    return false;
  }

  /**
   * The stream faults that hit one connection from `client` (an IP
   * address, or undefined for a Unix socket's), by direction: each whose
   * `clients` hold it (or has none) and whose `rate` the draw falls under.
   */
  forClient(
    client: string | undefined,
    draw: Draw = () => Math.random(),
  ): Record<FaultDirection, StreamFault[]> {
    const chosen: Record<FaultDirection, StreamFault[]> = {
      receive: [],
      send: [],
    };
    for (const [i, fault] of this.faults.entries()) {
      if (!isStream(fault) || !this.#hits[i](client)) continue;
      if (fault.rate < 1 && draw(fault) >= fault.rate) continue;
      for (const direction of fault.directions) chosen[direction].push(fault);
    }
    return chosen;
  }
}
