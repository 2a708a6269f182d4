/**
 * The echo client's command line: sends a message (or stdin) to an echo
 * server and prints the echo, checking every byte of it; or, interactively,
 * sends lines as you type them and prints what the server sends.
 *
 * ```sh
 * deno task client "hi"                      # prints: hi
 * printf 'any bytes' | deno task client -    # stdin in, echo out, byte for byte
 * deno task client                           # on a terminal: interactive
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
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  integerFlag,
  isParseArgsError,
  printError,
  UsageError,
  usageMessage,
} from "./lib/_cli.ts";

const HELP = `Usage: deno task client [options] MESSAGE...
       deno task client [options] -
       deno task client [options] [--interactive]

Sends MESSAGE (several words are joined with spaces) to a TCP echo server,
half-closes, and prints the echo and a newline. With -, sends stdin as raw
bytes until EOF and writes the echo to stdout byte for byte, no newline added.
Every byte of the echo is checked against what was sent.

Interactive (with no MESSAGE on a terminal, or with --interactive): sends each
line of stdin as soon as it is complete and prints everything the server sends
as it arrives, for any server: echo, line, broadcast, chat, or nc -l. Ctrl+D
or a line "exit" (not sent) half-closes and ends once the server closes (or
after --timeout); the server closing first ends it with a notice on stderr.

Options:
  --hostname HOST   server address (default: 127.0.0.1)
  --port PORT       server port (default: 9000)
  --timeout MS      how long to wait for the server: to connect, and for each
                    echoed chunk while bytes are owed; interactively, to close
                    once the input has ended; 0 waits forever (default: 10000)
  -i, --interactive  talk to the server line by line
  -h, --help        print this help and exit
  -V, --version     print the version and exit

Exit codes:
  0  the echo matched what was sent; interactively, the session ended
  1  connection refused or reset, timeout, or an echo that differs, is short
     or is too long
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
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
  });
  const hostname = values.hostname ?? "127.0.0.1";
  if (hostname === "") throw new UsageError("Invalid --hostname: empty");
  const help = values.help ?? false;
  const version = values.version ?? false;
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
    help,
    version,
    interactive,
    message: positionals.length === 1 && positionals[0] === "-"
      ? undefined
      : positionals.join(" "),
    hostname,
    port: integerFlag("--port", values.port, 1, 65535) ?? 9000,
    timeout: integerFlag("--timeout", values.timeout, 0, 2 ** 31 - 1),
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
  try {
    if (flags.interactive) {
      const end = await runSession({
        ...options,
        timeout: timeout ?? 10000,
        input: Deno.stdin.readable,
        output: Deno.stdout.writable,
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

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
