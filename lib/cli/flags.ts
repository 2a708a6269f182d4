// Private: the flag tables of server.ts and client.ts. Each CLI describes its
// flags once, in a table; parseArgs' options, the --help lines and the
// parsing of values all come from it. Ranges are the library's: a flag's
// parser checks only the form of its value (an integer, a choice), and the
// library's own error about the option (its `option` field) is reported
// under the flag that set it (`flagFor`). Not exported from mod.ts; nothing
// else in lib/ imports lib/cli/.

import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { cidrProblem } from "../rules/cidr.ts";

/** One flag of a CLI. */
export interface Flag<T> {
  /** Its group in --help: a key of the CLI's {@linkcode HelpGroups}. */
  group?: string;
  /** What it does, for --help; wrapped to fit. */
  help: string;
  /** The value's name in --help (`N`, `HOST`); none for a boolean flag. */
  arg?: string;
  /** Its one-letter form (`h` for `-h`). */
  short?: string;
  /** Other names with the same meaning, listed in --help as "also". */
  aliases?: readonly string[];
  /** The default, as --help shows it. */
  default?: string;
  /**
   * The library option it sets, when not its name in camelCase: errors
   * about that option are reported under this flag.
   */
  option?: string;
  /** It may be given more than once; its value is then a list. */
  multiple?: boolean;
  /** Flags that cannot be given with this one. */
  excludes?: readonly string[];
  /**
   * Flags that must be given with this one; `"a|b"` is met by either.
   */
  requires?: readonly string[];
  /** Turns the text given into the value; throws a {@link UsageError}. */
  parse?: (text: string) => T;
}

/** A CLI's flags, by name (without `--`), in --help's order. */
export type FlagTable = Record<string, Flag<unknown>>;

/**
 * The values given on a command line, by flag name: what its parser returns,
 * or `true` for a boolean flag.
 */
export type FlagValues<T extends FlagTable> = {
  -readonly [K in keyof T]?: T[K] extends {
    multiple: true;
    parse: (text: string) => infer V;
  } ? V[]
    : T[K] extends { parse: (text: string) => infer V } ? V
    : boolean;
};

/** What {@linkcode parseFlags} found on a command line. */
export interface ParsedFlags<T extends FlagTable> {
  values: FlagValues<T>;
  positionals: string[];
  /** How each flag given was spelled (`--num-workers`), by flag name. */
  spelled: Partial<Record<keyof T, string>>;
}

/** A bad command line: the CLI prints it and exits with {@link EXIT_USAGE}. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Exit codes of both CLIs, as documented in their `--help` and README. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_FORCED = 130;

/** Prints `message` as one line on stderr. */
export function printError(message: string): void {
  console.error(`error: ${message.replaceAll("\n", " ")}`);
}

/**
 * Prints a {@link UsageError} as one line pointing at --help and returns
 * {@link EXIT_USAGE}; rethrows anything else.
 */
export function usageExit(error: unknown): number {
  if (!(error instanceof UsageError)) throw error;
  printError(`${error.message} (see --help)`);
  return EXIT_USAGE;
}

/**
 * Parses `args` by `table`: unknown flags, missing values and bad values are
 * {@link UsageError}s naming the flag as it was typed, as is giving a flag
 * and its alias together.
 */
export function parseFlags<T extends FlagTable>(
  table: T,
  args: string[],
  allowPositionals: boolean,
): ParsedFlags<T> {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {};
  for (const [name, flag] of Object.entries(table)) {
    const type = flag.arg === undefined ? "boolean" : "string";
    const multiple = flag.multiple ? { multiple: true } : {};
    options[name] = {
      type,
      ...multiple,
      ...(flag.short ? { short: flag.short } : {}),
    };
    for (const alias of flag.aliases ?? []) {
      options[alias] = { type, ...multiple };
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals });
  } catch (error) {
    if (!isParseArgsError(error)) throw error;
    // Drop parseArgs' long hint about positionals: one line is enough.
    throw new UsageError(
      (error as Error).message.replace(/\. To specify a positional.*$/s, ""),
    );
  }
  const values: Record<string, unknown> = {};
  const spelled: Record<string, string> = {};
  for (const [name, flag] of Object.entries(table)) {
    for (const given of [name, ...(flag.aliases ?? [])]) {
      const text = parsed.values[given];
      if (text === undefined) continue;
      if (spelled[name] !== undefined) {
        throw new UsageError(`Give ${spelled[name]} or --${given}, not both`);
      }
      spelled[name] = `--${given}`;
      const parse = (one: string | boolean) =>
        typeof one === "string" && flag.parse
          ? parseValue(flag.parse, one, `--${given}`)
          : one;
      values[name] = Array.isArray(text) ? text.map(parse) : parse(text);
    }
  }
  for (const [name, flag] of Object.entries(table)) {
    if (spelled[name] === undefined) continue;
    for (const other of flag.excludes ?? []) {
      if (spelled[other] !== undefined) {
        throw new UsageError(
          `Give ${spelled[name]} or ${spelled[other]}, not both`,
        );
      }
    }
    for (const needed of flag.requires ?? []) {
      const either = needed.split("|");
      if (either.every((other) => spelled[other] === undefined)) {
        throw new UsageError(
          `Give ${either.map((o) => `--${o}`).join(" or ")} with ${
            spelled[name]
          }`,
        );
      }
    }
  }
  return {
    values: values as FlagValues<T>,
    positionals: parsed.positionals,
    spelled: spelled as Partial<Record<keyof T, string>>,
  };
}

function parseValue<T>(parse: (text: string) => T, text: string, as: string) {
  try {
    return parse(text);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    throw new UsageError(`Invalid ${as}: ${error.message}, got '${text}'`);
  }
}

/** Whether `error` came from `parseArgs` rejecting the command line. */
function isParseArgsError(error: unknown): boolean {
  return error instanceof TypeError &&
    String((error as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS");
}

/**
 * The flag to name in an error about library option `option`: the one that
 * set it, as the user spelled it; `undefined` when no flag sets it.
 */
export function flagFor<T extends FlagTable>(
  table: T,
  spelled: Partial<Record<keyof T, string>>,
  option: string,
): string | undefined {
  const names = Object.keys(table).filter((name) =>
    (table[name].option ?? camelCase(name)) === option
  );
  const name = names.find((name) => spelled[name] !== undefined) ?? names[0];
  return name === undefined ? undefined : spelled[name] ?? `--${name}`;
}

function camelCase(name: string): string {
  return name.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
}

const NAME_COLUMN = 25;
const WIDTH = 79;

/** --help and --version, as both CLIs have them, in their "logging" group. */
export const HELP_FLAGS = {
  help: {
    group: "logging",
    short: "h",
    help: "print the common options and exit; --help all: every option, " +
      "--help TOPIC: one group",
  },
  version: {
    group: "logging",
    short: "V",
    help: "print the version and exit",
  },
} satisfies Record<string, Flag<unknown>>;

/** A group of flags in --help, and whether plain --help shows it. */
export interface HelpGroup {
  title: string;
  common?: boolean;
  /** Text shown under the title when the group is asked for by name. */
  intro?: string;
}

/** A CLI's groups of flags, by topic name, in --help's order. */
export type HelpGroups = Record<string, HelpGroup>;

/**
 * The topic of a `--help` (`-h`) on the command line, as curl takes it:
 * `""` for plain --help (the common options), `all`, or a group's name
 * (`--help tls`, `--help=tls`); `undefined` without --help. The topic's
 * word is taken out of `args`, so that the rest parses as usual.
 */
export function helpTopic(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") return undefined;
    if (arg.startsWith("--help=")) {
      args.splice(i, 1, "--help");
      return arg.slice("--help=".length);
    }
    if (arg !== "--help" && arg !== "-h") continue;
    const next = args[i + 1];
    if (next !== undefined && !next.startsWith("-")) {
      args.splice(i + 1, 1);
      return next;
    }
    return "";
  }
  return undefined;
}

/**
 * The option lines of --help for `topic` (see {@linkcode helpTopic}): the
 * common groups, every group, or one; each group under its title.
 *
 * @throws {UsageError} `topic` is no group's name.
 */
export function groupedHelp(
  table: FlagTable,
  groups: HelpGroups,
  topic: string,
): string {
  if (topic !== "" && topic !== "all" && !Object.hasOwn(groups, topic)) {
    throw new UsageError(
      `Unknown help topic '${topic}': give all, or one of ${
        Object.keys(groups).join(", ")
      }`,
    );
  }
  const shown = Object.entries(groups).filter(([name, group]) =>
    topic === "all" || topic === name || (topic === "" && group.common)
  );
  return shown.map(([name, group]) => {
    const flags = Object.fromEntries(
      Object.entries(table).filter(([, flag]) => flag.group === name),
    );
    const intro = group.intro !== undefined && topic !== ""
      ? `${group.intro}\n\n`
      : "";
    return `${group.title}:\n${intro}${flagHelp(flags)}`;
  }).join("\n\n");
}

/** A CLI's --help: what comes before its options and after them. */
export interface HelpPage {
  /** Usage lines and what the command does. */
  head: string;
  table: FlagTable;
  groups: HelpGroups;
  /** Examples and exit codes. */
  tail: string;
}

/**
 * The --help text of `page` for `topic` (see {@linkcode helpTopic}): the
 * whole page with the common groups (`""`) or every group (`all`), or one
 * group's options alone.
 *
 * @throws {UsageError} `topic` is no group's name.
 */
export function helpText(page: HelpPage, topic: string): string {
  const options = groupedHelp(page.table, page.groups, topic);
  if (topic !== "" && topic !== "all") return options;
  const more = topic === "" ? `\n${moreTopics(page.groups)}\n` : "";
  return `${page.head}\n\n${options}\n${more}\n${page.tail}`;
}

/**
 * The line plain --help ends its options with: the groups it left out, as
 * topics.
 */
export function moreTopics(groups: HelpGroups): string {
  const rest = Object.entries(groups).filter(([, group]) => !group.common)
    .map(([name]) => name);
  return wrap(
    `More options: --help all, or --help TOPIC, one of ${rest.join(", ")}.`,
    WIDTH,
  ).join("\n");
}

/** The --help lines of `table`'s flags, wrapped to 79 columns. */
export function flagHelp(table: FlagTable): string {
  const lines: string[] = [];
  for (const [name, flag] of Object.entries(table)) {
    const arg = flag.arg === undefined ? "" : ` ${flag.arg}`;
    const head = `  ${flag.short ? `-${flag.short}, ` : ""}--${name}${arg}`;
    let text = flag.help;
    if (flag.aliases?.length) {
      text += ` (also ${flag.aliases.map((a) => `--${a}`).join(", ")})`;
    }
    if (flag.default !== undefined) text += ` (default: ${flag.default})`;
    const body = wrap(text, WIDTH - NAME_COLUMN - 2);
    if (head.length < NAME_COLUMN) {
      lines.push(`${head.padEnd(NAME_COLUMN)}  ${body[0]}`);
    } else {
      lines.push(head, `${" ".repeat(NAME_COLUMN + 2)}${body[0]}`);
    }
    for (const line of body.slice(1)) {
      lines.push(`${" ".repeat(NAME_COLUMN + 2)}${line}`);
    }
  }
  return lines.join("\n");
}

/** Breaks `text` into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}

/** Parses a whole number (its range is the library's to check). */
export function integer(text: string): number {
  const n = /^-?\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError("expected an integer");
  return n;
}

/** The one word every flag takes for "no limit". */
export const UNLIMITED = "unlimited";

/**
 * Parses a limit that can be off: a positive whole number, or `unlimited`
 * (the library's `Infinity`).
 */
export function limit(text: string): number {
  if (text === UNLIMITED) return Infinity;
  const n = /^-?\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`expected a positive integer or ${UNLIMITED}`);
  }
  return n;
}

/**
 * Parses a timeout in milliseconds where `unlimited` (the library's 0) means
 * never; the range is the library's to check.
 */
export function timeout(text: string): number {
  return text === UNLIMITED ? 0 : integer(text);
}

/**
 * Parses a wait in milliseconds where `unlimited` (the library's
 * `Infinity`) means for as long as it takes.
 */
export function wait(text: string): number {
  return text === UNLIMITED ? Infinity : integer(text);
}

/**
 * Parses `HOST:PORT` (`[ADDRESS]:PORT` for IPv6); the port's range is the
 * library's to check.
 */
export function hostPort(text: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d+)$/.exec(text);
  if (match === null) {
    throw new UsageError("expected HOST:PORT ([ADDRESS]:PORT for IPv6)");
  }
  return { hostname: match[1] ?? match[2], port: Number(match[3]) };
}

/** Parses a positive decimal number such as `0.5`. */
export function decimal(text: string): number {
  const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(n > 0) || !Number.isFinite(n)) {
    throw new UsageError("expected a positive number");
  }
  return n;
}

/** Parses a percentage from 0 to 100, such as `0.5`. */
export function percent(text: string): number {
  const n = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= 100)) {
    throw new UsageError("expected a percentage from 0 to 100");
  }
  return n;
}

/** Makes a parser that accepts one of `choices`. */
export function choice<T extends string>(
  choices: readonly T[],
): (text: string) => T {
  return (text) => {
    if (!(choices as readonly string[]).includes(text)) {
      throw new UsageError(`expected one of ${choices.join(", ")}`);
    }
    return text as T;
  };
}

/** Reads the file a flag names, as text (a PEM certificate or key). */
export function textFile(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotCapable
      ? "no read permission (--allow-read)"
      : (error as Error).message.replace(/: \w+ '.*'$/, "");
    throw new UsageError(`cannot read it (${reason})`);
  }
}

/**
 * Makes a parser of a file to write later (after a load test, say), checked
 * now so that a bad path fails before the work: its folder must exist and
 * be writable, and its name must end in `extension` when one is given.
 */
export function outputFile(extension?: string): (path: string) => string {
  return (path) => {
    if (path === "") throw new UsageError("empty");
    if (
      extension !== undefined && !path.toLowerCase().endsWith(extension)
    ) {
      throw new UsageError(`expected a file name ending in ${extension}`);
    }
    const folder = dirname(path);
    const write = Deno.permissions.querySync({ name: "write", path });
    if (write.state !== "granted") {
      throw new UsageError(
        "cannot write it (no write permission: --allow-write)",
      );
    }
    if (!isDirectoryPath(folder)) {
      throw new UsageError(`cannot write it (no folder ${folder})`);
    }
    if (isDirectoryPath(path)) {
      throw new UsageError("cannot write it (a folder)");
    }
    return path;
  };
}

/** Whether `path` is a folder we can see. */
function isDirectoryPath(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** Parses an IP address or CIDR block (its range is checked here). */
export function cidr(value: string): string {
  const problem = cidrProblem(value);
  if (problem !== undefined) {
    throw new UsageError(problem.replace(/^".*?" /, "").replace(/^is /, ""));
  }
  return value;
}

/**
 * Reads a file of addresses and CIDR blocks, one a line; `#` starts a
 * comment, and blank lines are skipped.
 */
export function cidrFile(path: string): string[] {
  const entries: string[] = [];
  textFile(path).split("\n").forEach((raw, i) => {
    const entry = raw.replace(/#.*/, "").trim();
    if (entry === "") return;
    const problem = cidrProblem(entry);
    if (problem !== undefined) {
      throw new UsageError(`line ${i + 1}: ${problem}`);
    }
    entries.push(entry);
  });
  return entries;
}

/** Parses any text but the empty string. */
export function text(value: string): string {
  if (value === "") throw new UsageError("empty");
  return value;
}

/** A comma-separated list of ALPN protocols (`h2,http/1.1`). */
export function protocolList(value: string): string[] {
  const protocols = value.split(",");
  if (protocols.some((p) => p === "")) {
    throw new UsageError("a comma-separated list of protocols, none empty");
  }
  return protocols;
}

/** `--tls-key FILE`: the key of `--tls-cert`, on either CLI. */
export const TLS_KEY_FLAG = {
  group: "tls",
  arg: "FILE",
  option: "key",
  requires: ["tls-cert"],
  help: "the PEM private key of --tls-cert",
  parse: textFile,
} as const satisfies Flag<string>;
