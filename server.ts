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

import { getLogger } from "@logtape/logtape";
import denoJson from "./deno.json" with { type: "json" };
import { serveEcho } from "./lib/serve_echo.ts";
import type { EchoServer } from "./lib/types.ts";
import { formatAddr, type OptionError, plural } from "./lib/_helpers.ts";
import {
  EXIT_FAILURE,
  EXIT_FORCED,
  EXIT_OK,
  EXIT_USAGE,
  flagFor,
  parseFlags,
  printError,
  UsageError,
} from "./lib/cli/flags.ts";
import { configureLogging } from "./lib/cli/logging.ts";
import { operatorConsole } from "./lib/cli/operator.ts";
import {
  SERVER_FLAGS,
  SERVER_HELP,
  serverOptions,
} from "./lib/cli/server_flags.ts";
import { stopOnSignals } from "./lib/cli/signals.ts";
import { showStatus } from "./lib/cli/status.ts";

const logger = getLogger(["tcp-echo", "cli"]);

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(SERVER_FLAGS, args, false);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    printError(`${error.message} (see --help)`);
    return EXIT_USAGE;
  }
  const { values: v, spelled } = parsed;
  if (v.help) {
    console.log(SERVER_HELP);
    return EXIT_OK;
  }
  if (v.version) {
    console.log(denoJson.version);
    return EXIT_OK;
  }
  await configureLogging(v["log-level"] ?? "info", v["log-format"] ?? "pretty");
  // FFI is full access: only the native engine keeps it.
  if (v.engine !== "native") Deno.permissions.revokeSync({ name: "ffi" });

  const stop = new AbortController();
  const options = serverOptions(v);
  // prom-client is loaded only for --metrics, not at every start.
  const metricsModule = v.metrics === undefined
    ? undefined
    : await import("./lib/serve_metrics.ts");
  if (v.metrics !== undefined) {
    // Before the server starts: a bad --metrics is a usage error alone.
    try {
      metricsModule!.assertMetricsOptions(v.metrics);
    } catch (error) {
      printError(
        `Invalid ${spelled.metrics}: ${
          (error as OptionError).reason
        } (see --help)`,
      );
      return EXIT_USAGE;
    }
  }
  let server: EchoServer<Deno.Addr>;
  try {
    server = serveEcho({ ...options, signal: stop.signal });
  } catch (error) {
    const { option, reason } = error as Partial<OptionError>;
    const flag = option && flagFor(SERVER_FLAGS, spelled, option);
    if (flag) {
      // A value out of range (see --help), or workers where they cannot run.
      const bad = error instanceof RangeError || error instanceof TypeError;
      const hint = bad ? " (see --help)" : "";
      printError(`Invalid ${flag}: ${reason}${hint}`);
      return EXIT_USAGE;
    }
    printError(
      `Cannot listen on ${address(options)}: ${(error as Error).message}`,
    );
    return EXIT_FAILURE;
  }
  // Before anything can be accepted: the native engine's loops accept on
  // threads of their own, and a flood of clients could take every
  // descriptor before the signal handlers had theirs.
  using signals = stopOnSignals(server, stop);
  try {
    await server.ready;
  } catch (error) {
    // A worker that failed to start, a live server on the socket path, or
    // a Redis that does not answer.
    const what = v.redis !== undefined
      ? "start"
      : v.unix === undefined
      ? "start workers"
      : `listen on ${v.unix}`;
    printError(`Cannot ${what}: ${(error as Error).message}`);
    stop.abort();
    await server.finished;
    return EXIT_FAILURE;
  }
  let metrics;
  if (v.metrics !== undefined) {
    try {
      metrics = metricsModule!.serveMetrics(server, v.metrics);
    } catch (error) {
      // Its options were checked before the server started: what is left is
      // the port (in use, or not allowed).
      printError(
        `Cannot serve metrics on ${formatAddr(v.metrics)}: ${
          (error as Error).message
        }`,
      );
      stop.abort();
      await server.finished;
      return EXIT_FAILURE;
    }
  }
  console.log(`Listening on ${formatAddr(server.addr)}`);
  if (metrics !== undefined) {
    console.log(`Metrics on http://${formatAddr(metrics.addr)}/metrics`);
  }
  const status = v.status || v["status-interval"] !== undefined
    ? showStatus(server, {
      live: Deno.stderr.isTerminal(),
      intervalMs: (v["status-interval"] ?? 1) * 1000,
    })
    : undefined;
  const operator = v.operator ? operatorConsole(server) : undefined;
  await server.finished;
  status?.[Symbol.dispose]();
  await metrics?.shutdown();
  await operator?.stop();
  const { stats } = server;
  const datagrams = stats.datagramsIn > 0
    ? `, {datagramsOut} ${plural(stats.datagramsOut, "datagram")} echoed`
    : "";
  logger.info(
    `Stopped: {accepted} ${
      plural(stats.accepted, "connection")
    } served, {rejected} rejected${datagrams}`,
    { ...stats },
  );
  return signals.forced ? EXIT_FORCED : EXIT_OK;
}

/** `where` as logs and errors show it. */
function address(where: { hostname?: string; port?: number; path?: string }) {
  return where.path ?? formatAddr({
    hostname: where.hostname ?? "127.0.0.1",
    port: where.port ?? 9000,
  });
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
