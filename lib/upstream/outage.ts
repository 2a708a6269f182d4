// Private: proxy mode's view of its upstream's health, free of I/O and
// told the time: connects fail and succeed, and it says when an outage
// starts (the first failure after a success: log it) and when it ends
// (the first success after failures: log how long and how many), so that
// an outage is logged once, not once per client. Not exported from mod.ts.

import type { LogRecord } from "../core/records.ts";

/** What to say about a change of the upstream's health, if anything. */
export type OutageNews =
  | { news: "down"; reason: string }
  | { news: "up"; failures: number; ms: number };

/** What to log of `news` about the upstream at `upstream`. */
export function outageRecord(upstream: string, news: OutageNews): LogRecord {
  return news.news === "down"
    ? {
      level: "warning",
      message:
        "Upstream {upstream} unreachable: {reason}; its clients are closed until it answers",
      properties: { upstream, reason: news.reason },
    }
    : {
      level: "info",
      message:
        "Upstream {upstream} answers again, after {ms} ms and {failures} failed connects",
      properties: { upstream, ms: news.ms, failures: news.failures },
    };
}

/** The upstream's health, as the connects to it show. */
export class Outage {
  #down = false;
  #since = 0;
  #failures = 0;

  /** Whether the last connect failed. */
  get down(): boolean {
    return this.#down;
  }

  /** A connect failed at `now` for `reason`: news when an outage starts. */
  failed(now: number, reason: string): OutageNews | undefined {
    this.#failures++;
    if (this.#down) return undefined;
    this.#down = true;
    this.#since = now;
    this.#failures = 1;
    return { news: "down", reason };
  }

  /** A connect succeeded at `now`: news when an outage ends. */
  reached(now: number): OutageNews | undefined {
    if (!this.#down) return undefined;
    this.#down = false;
    return { news: "up", failures: this.#failures, ms: now - this.#since };
  }
}
