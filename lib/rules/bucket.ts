// Private: a token bucket for one connection, free of I/O and of clocks:
// the caller says what time it is. `maxBytesPerSecond` reads through it on
// both drivers (lib/transport/throttled.ts, lib/native/loop.ts). Not
// exported from mod.ts.

/** A bucket holding one second's worth of `rate`, full at the start. */
export class TokenBucket {
  readonly rate: number;
  #tokens: number;
  #stamp: number;

  /** `rate` tokens a second, starting full at `now` (milliseconds). */
  constructor(rate: number, now: number) {
    this.rate = rate;
    this.#tokens = rate;
    this.#stamp = now;
  }

  /** Whole tokens there are at `now`: how much may be taken. */
  available(now: number): number {
    this.#tokens = Math.min(
      this.rate,
      this.#tokens + Math.max(0, now - this.#stamp) * this.rate / 1000,
    );
    this.#stamp = now;
    return Math.floor(this.#tokens);
  }

  /** Takes `n` tokens (after {@linkcode available} said there were). */
  take(n: number): void {
    this.#tokens -= n;
  }

  /** Milliseconds from `now` until one whole token is there. */
  waitMs(now: number): number {
    const tokens = this.available(now);
    return tokens >= 1 ? 0 : (1 - this.#tokens) * 1000 / this.rate;
  }
}
