// Private to the benchmarks: starting a server under test on its CPU,
// reading its CPU time and memory, and the tables' formatting.

import { parseArgs } from "node:util";
import { Lines } from "../tests/_process.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
/** The lockfile for every `deno run` a benchmark spawns (see deno.json). */
export { LOCK } from "../tests/_process.ts";
export const DENO = Deno.execPath();
const CLK_TCK = 100;

/** Exit codes of the benchmark tasks, as the CLIs have them. */
export const EXIT_USAGE = 2;

/**
 * A benchmark's flags, from `parse` (a strict `parseArgs` with a `help`
 * flag): with `--help`, prints `usage` and exits 0; a bad command line is
 * one line on stderr and exit 2, not a stack trace.
 */
export function benchFlags<V extends { help?: boolean }>(
  usage: string,
  parse: () => V,
): V {
  let values: V;
  try {
    values = parse();
  } catch (error) {
    // parseArgs' hint about positionals is a second sentence: one is enough.
    const message = (error as Error).message.replace(/\. To specify.*$/s, "");
    usageError(message);
  }
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  return values;
}

/**
 * `--reps N` and `--duration S` (and `--help`), the flags of a benchmark that
 * repeats one measurement: the repetitions, and the seconds of each.
 */
export function repsAndDuration(
  usage: string,
  defaults: { reps: string; duration: string },
): { reps: number; duration: number } {
  const values = benchFlags(usage, () =>
    parseArgs({
      options: {
        reps: { type: "string", default: defaults.reps },
        duration: { type: "string", default: defaults.duration },
        help: { type: "boolean" },
      },
      strict: true,
    }).values);
  return {
    reps: Math.round(positive("reps", values.reps)),
    duration: positive("duration", values.duration),
  };
}

/** Prints `error: MESSAGE (see --help)` and exits 2. */
export function usageError(message: string): never {
  console.error(`error: ${message} (see --help)`);
  Deno.exit(EXIT_USAGE);
}

/** `text` of flag `name` as a positive number, or a usage error. */
export function positive(name: string, text: string): number {
  const n = Number(text);
  if (!(n > 0) || !Number.isFinite(n)) {
    usageError(`Invalid --${name}: expected a positive number, got '${text}'`);
  }
  return n;
}

/** CPU time (user and system) process `pid` has used, in ms. */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 1000 / CLK_TCK;
}

/**
 * Moves this process to CPU 1 (the server gets CPU 0) with taskset, if
 * there are two CPUs and taskset exists. Returns whether it did.
 */
export async function pinSelf(): Promise<boolean> {
  if (navigator.hardwareConcurrency < 2) return false;
  try {
    const { success } = await new Deno.Command("taskset", {
      args: ["-p", "-c", "1", String(Deno.pid)],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** A server under test, started by {@linkcode start}. */
export interface Server extends AsyncDisposable {
  port: number;
  /** The server's stderr, when `start` was given extra arguments. */
  stderr?: Lines;
  cpuMs(): Promise<number>;
  rssKb(): Promise<number>;
}

/**
 * Starts the server `base` runs, with `extra` arguments (on CPU 0 when
 * pinning), and waits for its port. With
 * `extra` arguments, its stderr is kept rather than shown.
 */
export async function start(
  base: string[],
  pinned: boolean,
  extra?: string[],
): Promise<Server> {
  const [command, ...args] = [...base, ...extra ?? []];
  const child = new Deno.Command(pinned ? "taskset" : command, {
    args: pinned ? ["-c", "0", command, ...args] : args,
    stdin: "null",
    stdout: "piped",
    stderr: extra ? "piped" : "inherit",
  }).spawn();
  const stdout = new Lines(child.stdout);
  const stderr = extra ? new Lines(child.stderr) : undefined;
  const line = await stdout.waitFor(/^Listening on /);
  // HOST:PORT, or a WebSocket's ws://HOST:PORT/ws.
  const port = Number(line.match(/:(\d+)(?:\/\w*)?$/)![1]);
  // taskset execs the server, so the PID is the server's own.
  const pid = child.pid;
  return {
    port,
    stderr,
    cpuMs: () => cpuMs(pid),
    async rssKb() {
      const status = await Deno.readTextFile(`/proc/${pid}/status`);
      return Number(status.match(/VmRSS:\s+(\d+) kB/)![1]);
    },
    async [Symbol.asyncDispose]() {
      child.kill("SIGKILL");
      await child.status;
      await stdout.done;
      await stderr?.done;
    },
  };
}

/** The median of `values` (the lower middle one of an even count). */
export function middle(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** A figure for a table: `failed` when there is none. */
export function fmt(x: number | undefined, digits: number): string {
  return x === undefined || Number.isNaN(x)
    ? "failed"
    : x.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
}

/** A Markdown table of `header` and `rows`. */
export function markdown(header: string[], rows: string[][]): string {
  return [header, header.map(() => "---"), ...rows]
    .map((r) => `| ${r.join(" | ")} |`).join("\n");
}
