// Private: a load test's failures as both engines count and word them
// (lib/client/stream_load.ts, lib/native/load_loop.ts), so that a report reads the
// same whichever engine made it. Not exported from mod.ts.

/**
 * What failed: a connect, a connection the server closed or reset before
 * echoing anything (a refusal, most likely), an echo that differs, or
 * anything else.
 */
export type FailureKind = "connect" | "refused" | "mismatch" | "other";

/**
 * Why a server closes a connection it accepted before echoing a byte, as
 * the client says it: the likely causes, for the user to check.
 */
export const REFUSAL_CAUSES =
  "it may refuse this client (access rules, connection limits) or expect " +
  "a PROXY header or TLS";

/**
 * How a connection ended before its round trip did: the server reset it,
 * closed it, or did not answer in time. A test can expect these (a fault
 * server's, say): then they are outcomes, counted, not failures.
 */
export type Ending = "reset" | "close" | "timeout";

/** Every {@linkcode Ending}. */
export const ENDINGS_EXPECTED = ["reset", "close", "timeout"] as const;

/** How many failure messages a report keeps. */
const MAX_MESSAGES = 5;

/** A load test's failures: counts by kind, and the first few messages. */
export class Failures {
  connectErrors = 0;
  closedBeforeEcho = 0;
  mismatches = 0;
  otherErrors = 0;
  /** Connections that ended early, by how (expected or not). */
  readonly endings: Record<Ending, number> = { reset: 0, close: 0, timeout: 0 };
  readonly errorMessages: string[] = [];
  readonly #expect: ReadonlySet<Ending>;

  /** Failures, with the endings `expect` names counted as outcomes. */
  constructor(expect: readonly Ending[] = []) {
    this.#expect = new Set(expect);
  }

  /**
   * Counts a failure of `kind`, keeping its message if there is room;
   * `ending` says how the connection ended, when it did. Returns true when
   * that ending was expected: counted, and no failure.
   */
  add(kind: FailureKind, message: string, ending?: Ending): boolean {
    if (ending !== undefined) {
      this.endings[ending]++;
      if (this.#expect.has(ending)) return true;
    }
    if (kind === "connect") this.connectErrors++;
    else if (kind === "refused") this.closedBeforeEcho++;
    else if (kind === "mismatch") this.mismatches++;
    else this.otherErrors++;
    if (this.errorMessages.length < MAX_MESSAGES) {
      this.errorMessages.push(message);
    }
    return false;
  }

  /** Failures of every kind. */
  get total(): number {
    return this.connectErrors + this.closedBeforeEcho + this.mismatches +
      this.otherErrors;
  }

  /** The counts and messages, as a report carries them. */
  report(): {
    connectErrors: number;
    closedBeforeEcho: number;
    mismatches: number;
    otherErrors: number;
    resets: number;
    closes: number;
    timeouts: number;
    errorMessages: string[];
  } {
    const { connectErrors, closedBeforeEcho, mismatches, otherErrors } = this;
    const { errorMessages, endings } = this;
    return {
      connectErrors,
      closedBeforeEcho,
      mismatches,
      otherErrors,
      resets: endings.reset,
      closes: endings.close,
      timeouts: endings.timeout,
      errorMessages,
    };
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
  refused: (reset: boolean): string =>
    `Server ${
      reset ? "reset" : "closed"
    } the connection before echoing anything: ${REFUSAL_CAUSES}`,
  roundTripTimeout: (ms: number): string =>
    `Round trip timed out after ${ms} ms`,
};

/**
 * A connection the server closed or reset before echoing anything: counted
 * as `refused`, apart from other failures.
 */
export class Refusal extends Error {
  /** Reset, rather than closed. */
  readonly reset: boolean;

  constructor(reset: boolean) {
    super(failure.refused(reset));
    this.name = "Refusal";
    this.reset = reset;
  }
}

/** A connection the server closed in the middle of an echo. */
export class ClosedEarly extends Error {
  constructor(received: number, expected: number) {
    super(failure.closedEarly(received, expected));
    this.name = "ClosedEarly";
  }
}

/** How `error` ended its connection, if it is one of the endings. */
export function endingOf(error: unknown): Ending | undefined {
  if (error instanceof Refusal) return error.reset ? "reset" : "close";
  if (error instanceof ClosedEarly) return "close";
  if (isReset(error)) return "reset";
  return undefined;
}

/** Whether `error` is the peer resetting the connection (or its pipe). */
export function isReset(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe;
}
