/**
 * The echo client's command line: sends a message (or stdin) to an echo
 * server and prints the echo, checking every byte of it; or, interactively,
 * sends lines as you type them and prints what the server sends.
 *
 * ```sh
 * deno task client "hi"                      # prints: hi
 * printf 'any bytes' | deno task client -    # stdin in, echo out, byte for byte
 * deno task client                           # on a terminal: interactive
 * deno task client --connections 50 --count 10000 --size 64   # load test
 * deno task client --port 7 --timeout 2000 hello world
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import denoJson from "./deno.json" with { type: "json" };
import { echoOnce } from "./lib/echo_once.ts";
import { echoStream } from "./lib/echo_stream.ts";
import { formatAddr } from "./lib/_helpers.ts";
import { runSession } from "./lib/_session.ts";
import { type LoadReport, loadTest } from "./lib/load_test.ts";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  integerFlag,
  isParseArgsError,
  numberFlag,
  printError,
  UsageError,
  usageMessage,
} from "./lib/_cli.ts";

const HELP = `Usage: deno task client [options] MESSAGE...
       deno task client [options] -
       deno task client [options] [--interactive]
       deno task client [options] --connections N (--count N | --duration S)

Sends MESSAGE (several words are joined with spaces) to a TCP echo server,
half-closes, and prints the echo and a newline. With -, sends stdin as raw
bytes until EOF and writes the echo to stdout byte for byte, no newline added.
Every byte of the echo is checked against what was sent.

Interactive (with no MESSAGE on a terminal, or with --interactive): sends each
line of stdin as soon as it is complete and prints everything the server sends
as it arrives, for any server: echo, line, broadcast, chat, or nc -l. On a
terminal, control characters but TAB and line endings (escape sequences, a
bare CR) print as U+FFFD instead of acting on the terminal. Ctrl+D
or a line "exit" (not sent) half-closes and ends once the server closes (or
after --timeout); the server closing first ends it with a notice on stderr.

Load test (with --connections, --count or --duration): each connection sends
a message, waits for its whole echo, checks it byte for byte and repeats. It
prints round trips, round trips/s, MB/s each way, latency percentiles from an
HDR histogram, errors and its own CPU time. Any error makes the exit code 1.

Options:
  --hostname HOST   server address (default: 127.0.0.1)
  --port PORT       server port (default: 9000)
  --timeout MS      how long to wait for the server: to connect, and for each
                    echoed chunk while bytes are owed; interactively, to close
                    once the input has ended; 0 waits forever (default: 10000)
  -i, --interactive  talk to the server line by line
  --connections N   load test: connections at once (alias --num-clients;
                    default: 1)
  --count N         load test: round trips in all (alias --max-count;
                    default: 1000 unless --duration)
  --duration S      load test: run for S seconds instead of a count
  --size N          load test: message size in bytes (default: 64)
  --message TEXT    load test: send TEXT instead of --size random bytes
  --rate N          load test: aim for N round trips/s in all; latency counts
                    from when each was due (default: flat out)
  --report-interval S  load test: seconds between progress reports when
                    stderr is not a terminal (default: 5)
  --json            load test: print the report as one JSON object
  -h, --help        print this help and exit
  -V, --version     print the version and exit

Exit codes:
  0  the echo matched what was sent; interactively, the session ended; a
     load test had no error
  1  connection refused or reset, timeout, or an echo that differs, is short
     or is too long; any error in a load test
  2  usage error (unknown flag, bad flag value, no message)`;

function parseFlags(args: string[]) {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      hostname: { type: "string" },
      port: { type: "string" },
      timeout: { type: "string" },
      interactive: { type: "boolean", short: "i" },
      connections: { type: "string" },
      "num-clients": { type: "string" },
      count: { type: "string" },
      "max-count": { type: "string" },
      duration: { type: "string" },
      size: { type: "string" },
      message: { type: "string" },
      rate: { type: "string" },
      "report-interval": { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
  });
  const hostname = values.hostname ?? "127.0.0.1";
  if (hostname === "") throw new UsageError("Invalid --hostname: empty");
  const help = values.help ?? false;
  const version = values.version ?? false;
  const common = {
    help,
    version,
    hostname,
    port: integerFlag("--port", values.port, 1, 65535) ?? 9000,
    timeout: integerFlag("--timeout", values.timeout, 0, 2 ** 31 - 1),
  };
  const load = parseLoadFlags(values);
  if (load !== undefined) {
    if (positionals.length > 0 || values.interactive) {
      throw new UsageError(
        "Unexpected MESSAGE or --interactive in a load test: use --message",
      );
    }
    return { ...common, interactive: false, load, message: undefined };
  }
  const interactive = values.interactive ??
    (positionals.length === 0 && Deno.stdin.isTerminal());
  if (interactive && positionals.length > 0) {
    throw new UsageError(
      "Unexpected MESSAGE with --interactive: type the lines instead",
    );
  }
  if (positionals.length === 0 && !interactive && !help && !version) {
    throw new UsageError(
      "Missing MESSAGE: give the text to send, - for stdin, or --interactive",
    );
  }
  return {
    ...common,
    interactive,
    load,
    message: positionals.length === 1 && positionals[0] === "-"
      ? undefined
      : positionals.join(" "),
  };
}

async function main(args: string[]): Promise<number> {
  let flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    if (!(error instanceof UsageError) && !isParseArgsError(error)) throw error;
    printError(`${usageMessage(error as Error)} (see --help)`);
    return EXIT_USAGE;
  }
  if (flags.help) {
    console.log(HELP);
    return EXIT_OK;
  }
  if (flags.version) {
    console.log(denoJson.version);
    return EXIT_OK;
  }
  const { hostname, port, timeout } = flags;
  const options = { hostname, port, timeout };
  if (flags.load !== undefined) {
    return await runLoad({ hostname, port, timeout, ...flags.load });
  }
  try {
    if (flags.interactive) {
      const end = await runSession({
        ...options,
        timeout: timeout ?? 10000,
        input: Deno.stdin.readable,
        output: Deno.stdout.writable,
        terminal: Deno.stdout.isTerminal(),
      });
      if (end === "server") console.error("Connection closed by server");
      if (end === "timeout") {
        console.error(
          `Server did not close within ${timeout ?? 10000} ms: closed`,
        );
      }
    } else if (flags.message === undefined) {
      await echoStream(Deno.stdin.readable, options)
        .pipeTo(Deno.stdout.writable);
    } else {
      console.log(await echoOnce(flags.message, options));
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const what = flags.interactive ? "Session with" : "Echo via";
    printError(`${what} ${formatAddr({ hostname, port })} failed: ${reason}`);
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

type LoadFlags = NonNullable<ReturnType<typeof parseLoadFlags>>;

/** The load-test flags, or `undefined` when none was given. */
function parseLoadFlags(values: Record<string, string | boolean | undefined>) {
  const names = [
    "connections",
    "num-clients",
    "count",
    "max-count",
    "duration",
    "size",
    "message",
    "rate",
    "report-interval",
    "json",
  ];
  if (!names.some((name) => values[name] !== undefined)) return undefined;
  const str = (name: string) => values[name] as string | undefined;
  const either = (name: string, alias: string) => {
    if (str(name) !== undefined && str(alias) !== undefined) {
      throw new UsageError(`Give --${name} or --${alias}, not both`);
    }
    return [
      `--${str(name) !== undefined ? name : alias}`,
      str(name) ?? str(alias),
    ] as const;
  };
  const [connectionsFlag, connections] = either("connections", "num-clients");
  const [countFlag, count] = either("count", "max-count");
  if (count !== undefined && str("duration") !== undefined) {
    throw new UsageError(`Give ${countFlag} or --duration, not both`);
  }
  if (str("size") !== undefined && str("message") !== undefined) {
    throw new UsageError("Give --size or --message, not both");
  }
  if (str("message") === "") throw new UsageError("Invalid --message: empty");
  const duration = numberFlag("--duration", str("duration"));
  const size = integerFlag("--size", str("size"), 1, 64 * 1024 * 1024);
  return {
    connections: integerFlag(connectionsFlag, connections, 1, 1_000_000) ?? 1,
    count: integerFlag(countFlag, count, 1, Number.MAX_SAFE_INTEGER),
    duration: duration === undefined ? undefined : duration * 1000,
    message: str("message") ?? size ?? 64,
    rate: numberFlag("--rate", str("rate")),
    reportInterval:
      (numberFlag("--report-interval", str("report-interval")) ?? 5) * 1000,
    json: values.json === true,
  };
}

/** Runs a load test, shows progress on stderr and the report on stdout. */
async function runLoad(
  options: LoadFlags & {
    hostname: string;
    port: number;
    timeout: number | undefined;
  },
): Promise<number> {
  const live = Deno.stderr.isTerminal();
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  const encoder = new TextEncoder();
  let report: LoadReport;
  try {
    report = await loadTest({
      hostname: options.hostname,
      port: options.port,
      connections: options.connections,
      count: options.count,
      duration: options.duration,
      message: options.message,
      rate: options.rate,
      timeout: options.timeout,
      signal: stop.signal,
      progressInterval: live ? 250 : options.reportInterval,
      onProgress: (p) => {
        const text = `${(p.elapsedMs / 1000).toFixed(1)} s: ${
          p.roundTrips.toLocaleString("en-US")
        } round trips, ${
          Math.round(p.rate).toLocaleString("en-US")
        }/s, ${p.errors} errors`;
        // On a terminal one line, rewritten in place; otherwise a line each.
        Deno.stderr.writeSync(
          encoder.encode(live ? `\r${text}\x1b[K` : `${text}\n`),
        );
      },
    });
  } catch (error) {
    // loadTest counts network failures in its report; it throws only for
    // an option out of range, which is a usage error.
    if (!(error instanceof RangeError)) throw error;
    printError(`Invalid load test: ${error.message}`);
    return EXIT_USAGE;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    if (live) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  }
  console.log(options.json ? JSON.stringify(report) : formatReport(report));
  const errors = report.connectErrors + report.mismatches + report.otherErrors;
  if (errors > 0) {
    const more = errors > 1 ? ` (and ${errors - 1} more)` : "";
    printError(
      `${errors} error${errors === 1 ? "" : "s"} against ${report.address}: ${
        report.errorMessages[0]
      }${more}`,
    );
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

/** The report as a few aligned lines for people. */
function formatReport(r: LoadReport): string {
  const n = (x: number, digits = 0) =>
    x.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  const us = (x: number) => x < 1000 ? `${n(x)} µs` : `${n(x / 1000, 2)} ms`;
  const l = r.latencyUs;
  const seconds = r.durationMs / 1000;
  return [
    `target       ${r.address}, ${r.connected} of ${r.connections} connections, ${r.messageBytes}-byte messages`,
    `round trips  ${n(r.roundTrips)} in ${n(seconds, 2)} s: ${
      n(r.roundTripsPerSecond)
    }/s, ${n(r.megabytesPerSecond, 2)} MB/s each way`,
    `latency      p50 ${us(l.p50)}, p90 ${us(l.p90)}, p99 ${us(l.p99)}, p99.9 ${
      us(l.p999)
    }, max ${us(l.max)}`,
    `errors       ${r.connectErrors} connect, ${r.mismatches} mismatched echoes, ${r.otherErrors} other`,
    `client CPU   ${n(r.cpuMs / 1000, 2)} s (${
      n(seconds > 0 ? r.cpuMs / r.durationMs * 100 : 0)
    } % of one core)`,
  ].join("\n");
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
