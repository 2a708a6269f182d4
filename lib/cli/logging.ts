// Private: how the CLIs set up logging. Not exported from mod.ts.

import {
  configure,
  getAnsiColorFormatter,
  getConsoleSink,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
} from "@logtape/logtape";
import { LOG_CATEGORY } from "../_helpers.ts";

/** Log levels the `--log-level` flag accepts, most verbose first. */
export const LOG_LEVELS = [
  "trace",
  "debug",
  "info",
  "warning",
  "error",
] as const;
/** Formats the `--log-format` flag accepts. */
export const LOG_FORMATS = ["pretty", "json"] as const;

/**
 * Sends this package's logs to stderr at `level` and above, one line a
 * record: text (coloured on a terminal) or JSON lines.
 */
export async function configureLogging(
  level: LogLevel,
  format: (typeof LOG_FORMATS)[number],
): Promise<void> {
  // JSON keeps the message template (stable, easy to group on) and puts the
  // values in "properties".
  const formatter = format === "json"
    ? getJsonLinesFormatter({ message: "template" })
    : Deno.stderr.isTerminal()
    ? getAnsiColorFormatter({ timestamp: "date-time-tz", value: "bare" })
    : getTextFormatter({ timestamp: "date-time-tz", value: "bare" });
  // Every level goes to console.error, which Deno writes to stderr at once.
  const levelMap = {
    trace: "error",
    debug: "error",
    info: "error",
    warning: "error",
    error: "error",
    fatal: "error",
  } as const;
  await configure({
    sinks: { stderr: getConsoleSink({ formatter, levelMap }) },
    loggers: [
      { category: [LOG_CATEGORY], lowestLevel: level, sinks: ["stderr"] },
      {
        category: ["logtape", "meta"],
        lowestLevel: "warning",
        sinks: ["stderr"],
      },
    ],
  });
}
