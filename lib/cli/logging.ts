// Private: how the CLIs set up logging. Not exported from mod.ts.

import {
  configure,
  getAnsiColorFormatter,
  getConsoleSink,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
} from "../_logtape.ts";
import { LOG_CATEGORY } from "../_helpers.ts";
import { UsageError } from "./flags.ts";

/**
 * What `--log-level` accepts, most verbose first: LogTape's levels and the
 * other usual spellings of them (syslog's, Python's, Go's), so that
 * `--log-level warn` works.
 */
const LOG_LEVEL_NAMES: Record<string, LogLevel> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warn: "warning",
  warning: "warning",
  err: "error",
  error: "error",
  fatal: "fatal",
  crit: "fatal",
  critical: "fatal",
};

/** The levels as --help lists them. */
export const LOG_LEVELS_HELP =
  "trace, debug, info, warning (or warn), error (or err) or fatal";

/** Parses a `--log-level` value in any of its usual spellings. */
export function logLevel(text: string): LogLevel {
  const name = text.toLowerCase();
  if (!Object.hasOwn(LOG_LEVEL_NAMES, name)) {
    throw new UsageError(`expected one of ${LOG_LEVELS_HELP}`);
  }
  return LOG_LEVEL_NAMES[name];
}
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
 * `record` with its message rendered as the text logs render it (strings
 * bare, not quoted as JSON would quote them).
 */
function renderedBare(record: LogRecord): LogRecord {
  const text = record.message.map((part, i) =>
    i % 2 === 0 || typeof part === "string" ? String(part) : Deno.inspect(part)
  ).join("");
  return { ...record, message: [text] };
}

/** JSON lines, each record's message rendered by {@linkcode renderedBare}. */
function jsonFormatter(): (record: LogRecord) => string {
  const json = getJsonLinesFormatter({ message: "rendered" });
  return (record) => json(renderedBare(record));
}

/**
 * Sends this package's logs to stderr at `level` and above, one line a
 * record: text (coloured on a terminal) or JSON lines.
 */
export async function configureLogging(
  level: LogLevel,
  format: (typeof LOG_FORMATS)[number],
): Promise<void> {
  // JSON carries the message as the text logs show it, and the template's
  // values in "properties" (to filter and group on).
  const formatter = format === "json"
    ? jsonFormatter()
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
