// Private: how the server CLI stops on Ctrl+C and SIGTERM. Not exported from
// mod.ts.

import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY } from "../_helpers.ts";
import type { EchoServer } from "../types.ts";

const logger = getLogger([LOG_CATEGORY, "cli"]);

/**
 * Signals closer together than this are one Ctrl+C: the terminal signals the
 * whole process group and `deno task` forwards the signal as well.
 */
const SAME_PRESS_MS = 200;

/** What {@linkcode stopOnSignals} returns. */
export interface SignalHandling extends Disposable {
  /** Whether a second signal stopped the server at once. */
  readonly forced: boolean;
}

/**
 * On the first SIGINT or SIGTERM, shuts `server` down gracefully; on a
 * second one (not part of the same key press), aborts `stop`: the hard stop.
 * Disposing it removes the signal listeners.
 */
export function stopOnSignals(
  server: EchoServer<Deno.Addr>,
  stop: AbortController,
): SignalHandling {
  let firstSignalAt: number | undefined;
  let forced = false;
  const onSignal = (signal: Deno.Signal) => () => {
    const now = performance.now();
    if (firstSignalAt === undefined) {
      firstSignalAt = now;
      logger.info("Received {signal}: shutting down (again to stop at once)", {
        signal,
      });
      server.shutdown();
    } else if (now - firstSignalAt >= SAME_PRESS_MS && !forced) {
      forced = true;
      logger.warning("Received {signal} again: stopping now", { signal });
      stop.abort();
    }
  };
  const handlers = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ] as const;
  for (const [signal, handler] of handlers) {
    Deno.addSignalListener(signal, handler);
  }
  return {
    get forced() {
      return forced;
    },
    [Symbol.dispose]() {
      for (const [signal, handler] of handlers) {
        Deno.removeSignalListener(signal, handler);
      }
    },
  };
}
