// Private: one load test's schedule, free of I/O and told the time: when
// each connection's round trips are due (a fixed slot each with a rate,
// flat out without), when round trips start to count (after the warm-up)
// and stop (the duration, or the count), when one counts and what latency
// it had (from when it was due, so that a server that falls behind is not
// flattered), how long round trips in flight at the end may finish, when a
// connection is replaced by a new one (`reconnectEvery`), and how long
// connects and TLS handshakes took.
// Both load engines drive it: lib/client/stream_load.ts over Deno's sockets and
// lib/native/load_loop.ts over libc, on their own clocks. Not exported from
// mod.ts.

import type * as Hdr from "npm:hdr-histogram-js@^3.0.1";
import {
  encodeHistogram,
  type Latency,
  latencyHistogram,
  latencySummary,
} from "./latency.ts";

/** What a load test measured of its connects and handshakes. */
export interface PhaseFigures {
  /** Connects counted (the measured part's, reconnects included). */
  connects: number;
  /** How long they took, in µs: connect() to connected. */
  connectLatencyUs: Latency;
  /** Their histogram, as {@linkcode encodeHistogram} encodes it. */
  connectLatencyHistogram: string;
  /** With TLS: handshakes counted, after their connects. */
  handshakes?: number;
  /** How long they took, in µs: connected to the handshake's end. */
  handshakeLatencyUs?: Latency;
  handshakeLatencyHistogram?: string;
}

/** The longest the end waits for round trips in flight. */
const DRAIN_MS = 1000;

/**
 * How long round trips in flight at the end may take to finish: a second,
 * or the round-trip `timeout` if that is shorter (0: no timeout).
 */
export function drainMs(timeout: number): number {
  return timeout > 0 ? Math.min(DRAIN_MS, timeout) : DRAIN_MS;
}

/** What a schedule is made from, as loadTest checked it. */
export interface SchedulePlan {
  connections: number;
  /** Round trips in all (Infinity with a duration alone). */
  count: number;
  /** Round trips each connection makes at most. */
  countPerConnection: number;
  /** Round trips a second over all connections; flat out when undefined. */
  rate: number | undefined;
  /** Milliseconds a round trip may take (0: no limit). */
  timeout: number;
  /** Milliseconds at the start whose round trips are not counted. */
  warmup: number;
  /** Milliseconds measured after the warm-up; undefined: until the count. */
  duration: number | undefined;
  /**
   * Round trips a connection makes before it is closed and another opened
   * in its place (Infinity: never).
   */
  reconnectEvery: number;
}

/** One connection's place in the schedule. */
export interface Slot {
  /** When its next round trip is due (with a rate). */
  due: number;
  /** Round trips it has begun. */
  mine: number;
  /** Round trips it has begun on its current connection. */
  onSocket: number;
}

/** What a connection does next. */
export type Next =
  | { t: "begin"; since: number }
  | { t: "wait"; until: number }
  /** Close the connection and open another (then ask again). */
  | { t: "reconnect" }
  | { t: "done" };

/** One load test's schedule and counts. */
export class LoadSchedule {
  readonly plan: SchedulePlan;
  readonly startedAt: number;
  /** When round trips start to count (after the warm-up). */
  readonly measuredFrom: number;
  /** When the measured part ends, with a duration; Infinity without. */
  readonly deadline: number;
  /** Milliseconds between one connection's round trips, with a rate. */
  readonly interval: number;
  readonly histogram: Hdr.Histogram = latencyHistogram();
  /** How long connects took, and TLS handshakes after them. */
  readonly connectHistogram: Hdr.Histogram = latencyHistogram();
  readonly handshakeHistogram: Hdr.Histogram = latencyHistogram();
  /** Round trips begun, and counted. */
  started = 0;
  completed = 0;
  /** Connects and handshakes counted (see {@linkcode connected}). */
  connects = 0;
  handshakes = 0;
  /** When the last counted round trip ended, or the stop. */
  endedAt: number;
  /** When round trips still in flight after the stop are abandoned. */
  drainUntil = Infinity;
  #stopped = false;

  /** A schedule starting at `now` (milliseconds on the driver's clock). */
  constructor(plan: SchedulePlan, now: number) {
    this.plan = plan;
    this.startedAt = this.endedAt = now;
    this.measuredFrom = now + plan.warmup;
    this.deadline = plan.duration === undefined
      ? Infinity
      : this.measuredFrom + plan.duration;
    this.interval = plan.rate === undefined
      ? 0
      : 1000 * plan.connections / plan.rate;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Connection `index`'s slot: spread evenly over one interval. */
  slot(index: number): Slot {
    return {
      due: this.startedAt + this.interval * index / this.plan.connections,
      mine: 0,
      onSocket: 0,
    };
  }

  /**
   * What `slot`'s connection does at `now`: end (the test is over for it),
   * wait for its slot, or begin a round trip, counted from `since`. A round
   * trip behind its slot (the last ones were slow) counts from when it was
   * due; one begun on time, or after `waited` for its slot, from `now`: our
   * own timer's lateness is not the server's. A connection that has made
   * `reconnectEvery` round trips is replaced first (its driver sets
   * `onSocket` to 0 once the new one is open).
   */
  next(slot: Slot, now: number, waited = false): Next {
    const { count, countPerConnection } = this.plan;
    if (
      this.#stopped || this.started >= count ||
      slot.mine >= countPerConnection
    ) {
      return { t: "done" };
    }
    if (slot.onSocket >= this.plan.reconnectEvery) return { t: "reconnect" };
    if (this.interval === 0) return { t: "begin", since: now };
    if (slot.due > now) return { t: "wait", until: slot.due };
    return { t: "begin", since: waited ? now : slot.due };
  }

  /** `slot`'s connection begins a round trip (after `next` said so). */
  begin(slot: Slot): void {
    this.started++;
    slot.mine++;
    slot.onSocket++;
    slot.due += this.interval;
  }

  /**
   * A round trip that began at `since` ended well at `now`: counted, with
   * its latency, unless warming up or after the stop. Returns whether.
   */
  finished(since: number, now: number): boolean {
    if (now < this.measuredFrom || this.#stopped) return false;
    this.histogram.recordValue(Math.max(1, Math.round((now - since) * 1000)));
    this.completed++;
    this.endedAt = now;
    return true;
  }

  /**
   * A connect that began at `since` succeeded at `now`: its latency is
   * recorded, unless warming up or after the stop.
   */
  connected(since: number, now: number): void {
    if (this.#record(this.connectHistogram, since, now)) this.connects++;
  }

  /**
   * A TLS handshake that began at `since` finished at `now` (as above);
   * returns whether it was counted.
   */
  handshaken(since: number, now: number): boolean {
    if (!this.#record(this.handshakeHistogram, since, now)) return false;
    this.handshakes++;
    return true;
  }

  #record(histogram: Hdr.Histogram, since: number, now: number): boolean {
    if (now < this.measuredFrom || this.#stopped) return false;
    histogram.recordValue(Math.max(1, Math.round((now - since) * 1000)));
    return true;
  }

  /**
   * Ends the test at `now`: no new round trips, and none counted from now;
   * those in flight may finish until {@linkcode drainUntil}. Returns false
   * if it had ended already.
   */
  stop(now: number): boolean {
    if (this.#stopped) return false;
    this.#stopped = true;
    this.endedAt = now;
    this.drainUntil = now + drainMs(this.plan.timeout);
    return true;
  }

  /** How often round trips in flight are checked against the timeout. */
  get watchMs(): number {
    return Math.min(this.plan.timeout / 4, 1000);
  }

  /** Whether a round trip that began at `since` has timed out at `now`. */
  timedOut(since: number, now: number): boolean {
    return this.plan.timeout > 0 && since > 0 &&
      now - since > this.plan.timeout;
  }

  /** The connects' and (with `tls`) handshakes' figures; frees both. */
  phases(tls: boolean): PhaseFigures {
    const connects = {
      connects: this.connects,
      connectLatencyHistogram: encodeHistogram(this.connectHistogram),
      connectLatencyUs: latencySummary(this.connectHistogram),
    };
    if (!tls) {
      this.handshakeHistogram.destroy();
      return connects;
    }
    return {
      ...connects,
      handshakes: this.handshakes,
      handshakeLatencyHistogram: encodeHistogram(this.handshakeHistogram),
      handshakeLatencyUs: latencySummary(this.handshakeHistogram),
    };
  }

  /** The measured part's length so far. */
  get durationMs(): number {
    return Math.max(0, this.endedAt - this.measuredFrom);
  }
}
