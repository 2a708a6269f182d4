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

/** The line redrawn in place at the bottom of a terminal, if any. */
let liveLine: string | undefined;
const encoder = new TextEncoder();

function writeStderr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/**
 * Shows `line` in place of the last one at the bottom of stderr (a
 * terminal), below the log records; `undefined` clears it.
 */
export function showLiveLine(line: string | undefined): void {
  writeStderr(line === undefined ? "\r\x1b[K" : `\r${line}\x1b[K`);
  liveLine = line;
}

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
  const toConsole = getConsoleSink({ formatter, levelMap });
  await configure({
    sinks: {
      // A record goes above the live line (--status), which is redrawn.
      stderr: (record) => {
        if (liveLine !== undefined) writeStderr("\r\x1b[K");
        toConsole(record);
        if (liveLine !== undefined) writeStderr(`\r${liveLine}\x1b[K`);
      },
    },
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
