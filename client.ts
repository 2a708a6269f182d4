/**
 * The echo client's command line: sends a message (or stdin) to an echo
 * server and prints the echo, checking every byte of it.
 *
 * ```sh
 * deno task client "hi"                      # prints: hi
 * printf 'any bytes' | deno task client -    # stdin in, echo out, byte for byte
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

Sends MESSAGE (several words are joined with spaces) to a TCP echo server,
half-closes, and prints the echo and a newline. With -, sends stdin as raw
bytes until EOF and writes the echo to stdout byte for byte, no newline added.
Every byte of the echo is checked against what was sent.

Options:
  --hostname HOST   server address (default: 127.0.0.1)
  --port PORT       server port (default: 9000)
  --timeout MS      how long to wait for the server: to connect, and for each
                    echoed chunk while bytes are owed; 0 waits forever
                    (default: 10000)
  -h, --help        print this help and exit
  -V, --version     print the version and exit

Exit codes:
  0  the echo matched what was sent
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
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
  });
  const hostname = values.hostname ?? "127.0.0.1";
  if (hostname === "") throw new UsageError("Invalid --hostname: empty");
  const help = values.help ?? false;
  const version = values.version ?? false;
  if (positionals.length === 0 && !help && !version) {
    throw new UsageError(
      "Missing MESSAGE: give the text to send, or - for stdin",
    );
  }
  return {
    help,
    version,
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
    if (flags.message === undefined) {
      await echoStream(Deno.stdin.readable, options)
        .pipeTo(Deno.stdout.writable);
    } else {
      console.log(await echoOnce(flags.message, options));
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    printError(`Echo via ${formatAddr({ hostname, port })} failed: ${reason}`);
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
