/**
 * The echo server's command line: an RFC 862 TCP echo server with limits,
 * graceful shutdown on Ctrl+C or SIGTERM, and structured logs on stderr.
 *
 * ```sh
 * deno task server                         # 127.0.0.1:9000
 * deno task server --port 0 --log-format json
 * deno run --allow-net jsr:@tcp-echo/tcp-echo/server --help
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { getLogger } from "@logtape/logtape";
import denoJson from "./deno.json" with { type: "json" };
import { serveEcho } from "./lib/serve_echo.ts";
import { formatAddr } from "./lib/_helpers.ts";
import {
  choiceFlag,
  configureLogging,
  EXIT_FAILURE,
  EXIT_FORCED,
  EXIT_OK,
  EXIT_USAGE,
  integerFlag,
  isParseArgsError,
  LOG_FORMATS,
  LOG_LEVELS,
  printError,
  UsageError,
  usageMessage,
} from "./lib/_cli.ts";

/**
 * Signals closer together than this are one Ctrl+C: the terminal signals the
 * whole process group and `deno task` forwards the signal as well.
 */
const SAME_PRESS_MS = 200;
const MAX_MS = 2 ** 31 - 1;

const HELP = `Usage: deno task server [options]

An RFC 862 TCP echo server: every byte each client sends comes back, in order,
binary-safe; when a client half-closes, what is still owed is echoed and the
connection closed.

Options:
  --hostname HOST          address to listen on (default: 127.0.0.1)
  --port PORT              port to listen on, 0 for any free port (default: 9000)
  --max-connections N      most connections at once; more are closed at once
                           (default: unlimited)
  --idle-timeout MS        close a connection after MS ms with no data either
                           way; 0 never does (default: 0)
  --grace-period MS        on shutdown, how long open connections may finish
                           before they are closed (default: 5000)
  --log-level LEVEL        trace, debug, info, warning or error (default: info)
  --log-format FORMAT      pretty or json (default: pretty)
  -h, --help               print this help and exit
  -V, --version            print the version and exit

When ready it prints "Listening on HOST:PORT" on stdout; logs go to stderr.
Ctrl+C or SIGTERM stops accepting and waits for open connections up to the
grace period; a second Ctrl+C stops at once.

Exit codes:
  0    stopped cleanly
  1    runtime failure (such as the port being in use or a host that does not resolve)
  2    usage error (unknown flag or bad flag value)
  130  stopped at once by a second Ctrl+C or SIGTERM`;

const logger = getLogger(["tcp-echo", "cli"]);

function parseFlags(args: string[]) {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      hostname: { type: "string" },
      port: { type: "string" },
      "max-connections": { type: "string" },
      "idle-timeout": { type: "string" },
      "grace-period": { type: "string" },
      "log-level": { type: "string" },
      "log-format": { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
  });
  const hostname = values.hostname ?? "127.0.0.1";
  if (hostname === "") throw new UsageError("Invalid --hostname: empty");
  return {
    help: values.help ?? false,
    version: values.version ?? false,
    hostname,
    port: integerFlag("--port", values.port, 0, 65535) ?? 9000,
    maxConnections: integerFlag(
      "--max-connections",
      values["max-connections"],
      1,
      Number.MAX_SAFE_INTEGER,
    ),
    idleTimeout: integerFlag(
      "--idle-timeout",
      values["idle-timeout"],
      0,
      MAX_MS,
    ),
    gracePeriod: integerFlag(
      "--grace-period",
      values["grace-period"],
      0,
      MAX_MS,
    ),
    logLevel: choiceFlag(
      "--log-level",
      values["log-level"],
      LOG_LEVELS,
      "info",
    ),
    logFormat: choiceFlag(
      "--log-format",
      values["log-format"],
      LOG_FORMATS,
      "pretty",
    ),
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
  await configureLogging(flags.logLevel, flags.logFormat);

  const stop = new AbortController();
  let server;
  try {
    server = serveEcho({
      hostname: flags.hostname,
      port: flags.port,
      maxConnections: flags.maxConnections,
      idleTimeout: flags.idleTimeout,
      gracePeriod: flags.gracePeriod,
      signal: stop.signal,
    });
  } catch (error) {
    const address = formatAddr({ hostname: flags.hostname, port: flags.port });
    printError(`Cannot listen on ${address}: ${(error as Error).message}`);
    return EXIT_FAILURE;
  }
  console.log(`Listening on ${formatAddr(server.addr)}`);

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
  await server.finished;
  for (const [signal, handler] of handlers) {
    Deno.removeSignalListener(signal, handler);
  }
  logger.info("Stopped: {accepted} connections served, {rejected} rejected", {
    ...server.stats,
  });
  return forced ? EXIT_FORCED : EXIT_OK;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
