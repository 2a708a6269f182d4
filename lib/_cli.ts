// Private helpers for server.ts and client.ts: flag values, exit codes and
// logging set-up. Not exported from mod.ts.

import {
  configure,
  getAnsiColorFormatter,
  getConsoleSink,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
} from "@logtape/logtape";
import { LOG_CATEGORY } from "./_helpers.ts";
import { lineContent, LineSplitter } from "./_lines.ts";

/** The longest line {@linkcode readLines} accepts from a terminal or pipe. */
export const MAX_INPUT_LINE = 16 * 1024 * 1024;

/** Exit codes of both CLIs, as documented in their `--help` and README. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_FORCED = 130;

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

/** A bad command line: the CLI prints it and exits with {@link EXIT_USAGE}. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Whether `error` came from `parseArgs` rejecting the command line. */
export function isParseArgsError(error: unknown): boolean {
  return error instanceof TypeError &&
    String((error as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS");
}

/**
 * Parses the value of an integer flag such as `--port`, or returns
 * `undefined` when the flag was not given.
 */
export function integerFlag(
  flag: string,
  value: string | undefined,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `Invalid ${flag}: expected an integer from ${min} to ${max}, got '${value}'`,
    );
  }
  return n;
}

/**
 * Parses the value of a positive decimal flag such as `--duration`, or
 * returns `undefined` when the flag was not given.
 */
export function numberFlag(
  flag: string,
  value: string | undefined,
): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || n <= 0) {
    throw new UsageError(
      `Invalid ${flag}: expected a positive number, got '${value}'`,
    );
  }
  return n;
}

/** Checks that `value` is one of `choices`, or returns `fallback` if unset. */
export function choiceFlag<T extends string>(
  flag: string,
  value: string | undefined,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(
      `Invalid ${flag}: expected one of ${choices.join(", ")}, got '${value}'`,
    );
  }
  return value as T;
}

/** The one-line message of a usage error, without parseArgs' long hint. */
export function usageMessage(error: Error): string {
  return error.message.replace(/\. To specify a positional argument.*$/s, "");
}

/** Prints `message` as one line on stderr. */
export function printError(message: string): void {
  console.error(`error: ${message.replaceAll("\n", " ")}`);
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

/**
 * Yields each line `reader` delivers, with its ending (`\n` or `\r\n`), and
 * a last line without one. Ends when the stream ends or the reader is
 * cancelled.
 *
 * @throws {RangeError} A line is longer than {@linkcode MAX_INPUT_LINE}.
 */
export async function* readLines(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const splitter = new LineSplitter(MAX_INPUT_LINE);
  while (true) {
    const { done, value } = await reader.read();
    const lines = done ? [splitter.end()] : splitter.push(value);
    for (const line of lines) if (line !== undefined) yield line;
    if (splitter.tooLong) {
      throw new RangeError(
        `Cannot read line: longer than ${MAX_INPUT_LINE} bytes`,
      );
    }
    if (done) return;
  }
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** A line's text without its ending, or `undefined` if it is not UTF-8. */
export function decodeLine(line: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(lineContent(line));
  } catch {
    return undefined;
  }
}
