/**
 * The echo server's command line: an RFC 862 TCP echo server (or a line
 * echo, broadcast relay or chat) with limits, an operator console, graceful
 * shutdown on Ctrl+C or SIGTERM, and structured logs on stderr.
 *
 * ```sh
 * deno task server                         # 127.0.0.1:9000
 * deno task server --port 0 --log-format json
 * deno task server --mode chat --operator  # type lines to talk to everyone
 * deno run --allow-net jsr:@tcp-echo/tcp-echo/server --help
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { getLogger } from "@logtape/logtape";
import denoJson from "./deno.json" with { type: "json" };
import { MAX_WORKERS, serveEcho } from "./lib/serve_echo.ts";
import { type EchoServer, MODES } from "./lib/types.ts";
import { formatAddr, plural } from "./lib/_helpers.ts";
import {
  choiceFlag,
  configureLogging,
  decodeLine,
  EXIT_FAILURE,
  EXIT_FORCED,
  EXIT_OK,
  EXIT_USAGE,
  integerFlag,
  isParseArgsError,
  LOG_FORMATS,
  LOG_LEVELS,
  printError,
  readLines,
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
connection closed. --mode turns it into a line echo, a broadcast relay or a
chat.

Modes:
  echo        raw bytes back, as sent (default)
  line        each newline-terminated line back as sent; a line that is
              exactly "exit" or "quit" closes the connection
  broadcast   every line from any client to every client, the sender
              included, unchanged, in the order the server received them
  chat        like broadcast, for people: "<name> text" lines, join and
              leave notices, rooms, and the commands /nick NAME, /join ROOM,
              /who and /quit; newcomers get the room's recent lines
In every line mode a line over --max-line-bytes gets
"ERR line too long (max N bytes)" back and its connection is closed.

Options:
  --mode MODE              echo, line, broadcast or chat (default: echo)
  --hostname HOST          address to listen on; a name listens on the first
                           address it resolves to only (localhost: 127.0.0.1;
                           give ::1 for IPv6) (default: 127.0.0.1)
  --port PORT              port to listen on, 0 for any free port (default: 9000)
  --max-connections N      most connections at once; more are closed at once
                           (default: unlimited)
  --idle-timeout MS        close a connection after MS ms with no data either
                           way; 0 never does (default: 0)
  --grace-period MS        on shutdown, how long open connections may finish;
                           then the server stops reading, sends what is in
                           flight, half-closes and closes within 1 s
                           (default: 5000)
  --max-line-bytes N       longest line the line modes accept, without its
                           line ending (default: 8192)
  --channel-capacity N     most lines waiting to be sent to one client; a
                           client that lets more pile up is disconnected
                           (default: 100)
  --channel-bytes N        most bytes waiting to be sent to one client
                           (default: 1048576)
  --history N              lines of its room a chat newcomer gets (default: 20)
  --operator               read lines from stdin and send each to every client
                           ("[server] text" in broadcast and chat mode)
  --workers N|auto         serve on N threads (auto: one per core; at most 4
                           per core), each with its own listener on the same
                           port (SO_REUSEPORT, Linux only; needs deno run
                           --unstable-net, which the server task has)
                           (default: 1)
  --log-level LEVEL        trace, debug, info, warning or error (default: info)
  --log-format FORMAT      pretty or json (default: pretty)
  -h, --help               print this help and exit
  -V, --version            print the version and exit

When ready it prints "Listening on HOST:PORT" on stdout; logs go to stderr.
Ctrl+C or SIGTERM stops accepting and waits for open connections up to the
grace period (broadcast and chat clients are sent "[server] shutting down"
and closed); a second Ctrl+C stops at once.

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
      mode: { type: "string" },
      "max-line-bytes": { type: "string" },
      "channel-capacity": { type: "string" },
      "channel-bytes": { type: "string" },
      history: { type: "string" },
      operator: { type: "boolean" },
      workers: { type: "string" },
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
    mode: choiceFlag("--mode", values.mode, MODES, "echo"),
    maxLineBytes: integerFlag(
      "--max-line-bytes",
      values["max-line-bytes"],
      1,
      16 * 1024 * 1024,
    ),
    channelCapacity: integerFlag(
      "--channel-capacity",
      values["channel-capacity"],
      2,
      MAX_MS,
    ),
    channelBytes: integerFlag(
      "--channel-bytes",
      values["channel-bytes"],
      1,
      Number.MAX_SAFE_INTEGER,
    ),
    history: integerFlag("--history", values.history, 0, MAX_MS),
    operator: values.operator ?? false,
    workers: workersFlag(values.workers),
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

function workersFlag(value: string | undefined): number | "auto" {
  if (value === "auto") return "auto";
  const n = value === undefined ? 1 : /^\d+$/.test(value) ? Number(value) : 0;
  if (n < 1 || n > MAX_WORKERS) {
    throw new UsageError(
      `Invalid --workers: expected an integer from 1 to ${MAX_WORKERS} (4 per core) or auto, got '${value}'`,
    );
  }
  return n;
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
      mode: flags.mode,
      maxLineBytes: flags.maxLineBytes,
      channelCapacity: flags.channelCapacity,
      channelBytes: flags.channelBytes,
      history: flags.history,
      workers: flags.workers,
      signal: stop.signal,
    });
  } catch (error) {
    // "Cannot use channelBytes: …" names the option; name the flag instead.
    const message = (error as Error).message.replace(
      /^Cannot use (\w+)/,
      (_, name: string) =>
        `Invalid --${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
    );
    if (message !== (error as Error).message) {
      // An option the library refused (a RangeError), or workers where they
      // cannot run (no Linux, no --unstable-net, no read access).
      printError(
        error instanceof RangeError ? `${message} (see --help)` : message,
      );
      return EXIT_USAGE;
    }
    const address = formatAddr({ hostname: flags.hostname, port: flags.port });
    printError(`Cannot listen on ${address}: ${(error as Error).message}`);
    return EXIT_FAILURE;
  }
  try {
    await server.ready;
  } catch (error) {
    printError(`Cannot start workers: ${(error as Error).message}`);
    stop.abort();
    await server.finished;
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
  const operator = flags.operator ? operatorConsole(server) : undefined;
  await server.finished;
  await operator?.stop();
  for (const [signal, handler] of handlers) {
    Deno.removeSignalListener(signal, handler);
  }
  const { stats } = server;
  logger.info(
    `Stopped: {accepted} ${
      plural(stats.accepted, "connection")
    } served, {rejected} rejected`,
    { ...stats },
  );
  return forced ? EXIT_FORCED : EXIT_OK;
}

/**
 * Sends each line of stdin to every client until stdin ends or `stop()` is
 * called.
 */
function operatorConsole(server: EchoServer): { stop(): Promise<void> } {
  const reader = Deno.stdin.readable.getReader();
  let stopped = false;
  (async () => {
    logger.info("Operator console: each line you type goes to every client");
    for await (const line of readLines(reader)) {
      const text = decodeLine(line);
      if (text === undefined) {
        logger.warning("Operator line not sent: it is not valid UTF-8");
      } else {
        const clients = server.announce(text);
        logger.debug(
          `Operator line sent to {clients} ${plural(clients, "client")}`,
          { clients },
        );
      }
    }
    if (!stopped) logger.info("Operator console closed: stdin ended");
  })().catch((error) =>
    logger.error("Operator console failed: {error}", { error })
  );
  return {
    stop() {
      stopped = true;
      return reader.cancel();
    },
  };
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
