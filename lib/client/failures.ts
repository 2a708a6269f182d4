// Private: a load test's failures as both engines count and word them
// (lib/load_test.ts, lib/native/load_loop.ts), so that a report reads the
// same whichever engine made it. Not exported from mod.ts.

/** What failed: a connect, an echo that differs, or anything else. */
export type FailureKind = "connect" | "mismatch" | "other";

/** How many failure messages a report keeps. */
const MAX_MESSAGES = 5;

/** A load test's failures: counts by kind, and the first few messages. */
export class Failures {
  connectErrors = 0;
  mismatches = 0;
  otherErrors = 0;
  readonly errorMessages: string[] = [];

  /** Counts a failure of `kind`, keeping its message if there is room. */
  add(kind: FailureKind, message: string): void {
    if (kind === "connect") this.connectErrors++;
    else if (kind === "mismatch") this.mismatches++;
    else this.otherErrors++;
    if (this.errorMessages.length < MAX_MESSAGES) {
      this.errorMessages.push(message);
    }
  }

  /** Failures of every kind. */
  get total(): number {
    return this.connectErrors + this.mismatches + this.otherErrors;
  }

  /** The counts and messages, as a report carries them. */
  report(): {
    connectErrors: number;
    mismatches: number;
    otherErrors: number;
    errorMessages: string[];
  } {
    const { connectErrors, mismatches, otherErrors, errorMessages } = this;
    return { connectErrors, mismatches, otherErrors, errorMessages };
  }
}

/** The failure messages both engines give. */
export const failure = {
  differs: (at: number): string =>
    `Echo differs from what was sent at byte ${at}`,
  tooLong: (bytes: number): string =>
    `Echo is longer than what was sent (${bytes} bytes)`,
  closedEarly: (received: number, expected: number): string =>
    `Server closed after ${received} of ${expected} echoed bytes`,
  roundTripTimeout: (ms: number): string =>
    `Round trip timed out after ${ms} ms`,
};
