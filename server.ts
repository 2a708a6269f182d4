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

import denoJson from "./deno.json" with { type: "json" };
import { serveEcho } from "./lib/serve_echo.ts";
import type { EchoServer } from "./lib/types.ts";
import { formatAddr, type OptionError } from "./lib/_helpers.ts";
import {
  EXIT_FAILURE,
  EXIT_FORCED,
  EXIT_OK,
  EXIT_USAGE,
  flagFor,
  helpTopic,
  parseFlags,
  printError,
  textFile,
  usageExit,
} from "./lib/cli/flags.ts";
import { configureLogging } from "./lib/cli/logging.ts";
import { httpFlags } from "./lib/cli/http.ts";
import { operatorConsole } from "./lib/cli/operator.ts";
import {
  listenAddress,
  SERVER_FLAGS,
  serverHelp,
  serverOptions,
} from "./lib/cli/server_flags.ts";
import { stopOnSignals } from "./lib/cli/signals.ts";
import { reloadOnHangup, reloadUsersOnHangup } from "./lib/cli/reload.ts";
import { addUser } from "./lib/cli/add_user.ts";
import { logStopped, showStatus } from "./lib/cli/status.ts";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    const topic = helpTopic(args);
    if (topic !== undefined) {
      console.log(serverHelp(topic));
      return EXIT_OK;
    }
    parsed = parseFlags(SERVER_FLAGS, args, false);
  } catch (error) {
    return usageExit(error);
  }
  const { values: v, spelled } = parsed;
  if (v.version) {
    console.log(denoJson.version);
    return EXIT_OK;
  }
  await configureLogging(v["log-level"] ?? "info", v["log-format"] ?? "pretty");
  // FFI is full access: only the native engine keeps it.
  if (v.engine !== "native") Deno.permissions.revokeSync({ name: "ffi" });

  const usersFile = v["chat-users"];
  if (v["add-user"] !== undefined) {
    try {
      console.log(await addUser(usersFile!, v["add-user"]));
      return EXIT_OK;
    } catch (error) {
      printError(`Cannot add ${v["add-user"]}: ${(error as Error).message}`);
      return EXIT_FAILURE;
    }
  }

  const stop = new AbortController();
  const options = serverOptions(v);
  if (usersFile !== undefined) {
    try {
      options.chatUsers = textFile(usersFile);
    } catch (error) {
      printError(`Invalid --chat-users: ${(error as Error).message}`);
      return EXIT_USAGE;
    }
  }
  let startHttp;
  try {
    startHttp = await httpFlags({
      metrics: v.metrics,
      control: v.control,
      controlToken: v["control-token-file"],
      spelled: {
        metrics: spelled.metrics ?? "--metrics",
        control: spelled.control ?? "--control",
      },
    });
  } catch (error) {
    printError(`${(error as Error).message} (see --help)`);
    return EXIT_USAGE;
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
      `Cannot listen on ${listenAddress(options)}: ${(error as Error).message}`,
    );
    return EXIT_FAILURE;
  }
  // Before anything can be accepted: the native engine's loops accept on
  // threads of their own, and a flood of clients could take every
  // descriptor before the signal handlers had theirs.
  using signals = stopOnSignals(server, stop);
  // New certificates on SIGHUP, read from the same flags' files.
  using _reload = v["tls-cert"] === undefined ? undefined : reloadOnHangup(
    server,
    () => {
      const again = serverOptions(parseFlags(SERVER_FLAGS, args, false).values);
      if (!("cert" in again) || again.cert === undefined) {
        throw new Error("no --tls-cert");
      }
      const { cert, key, clientCa, clientCertOptional, sni } = again;
      return { cert, key: key!, clientCa, clientCertOptional, sni };
    },
    (option) => flagFor(SERVER_FLAGS, spelled, option),
  );
  // The chat users on SIGHUP, read from the same file.
  using _users = usersFile === undefined
    ? undefined
    : reloadUsersOnHangup(server, usersFile);
  /** A start that failed: one line, the server stopped, exit 1. */
  const failed = async (message: string) => {
    printError(message);
    stop.abort();
    await server.finished;
    return EXIT_FAILURE;
  };
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
    return await failed(`Cannot ${what}: ${(error as Error).message}`);
  }
  let http;
  try {
    http = startHttp?.(server);
  } catch (error) {
    return await failed((error as Error).message);
  }
  const websocket = server.websocketAddr &&
    `${server.tls ? "wss" : "ws"}://${formatAddr(server.websocketAddr)}/ws`;
  console.log(
    v["websocket-only"]
      ? `Listening on ${websocket}`
      : `Listening on ${formatAddr(server.addr)}`,
  );
  if (websocket !== undefined && !v["websocket-only"]) {
    console.log(`WebSocket on ${websocket}`);
  }
  for (const line of http?.lines ?? []) console.log(line);
  const status = v.status || v["status-interval"] !== undefined
    ? showStatus(server, {
      live: Deno.stderr.isTerminal(),
      intervalMs: (v["status-interval"] ?? 1) * 1000,
    })
    : undefined;
  const operator = v.operator ? operatorConsole(server) : undefined;
  await server.finished;
  status?.[Symbol.dispose]();
  await Promise.all(http?.servers.map((s) => s.shutdown()) ?? []);
  await operator?.stop();
  logStopped(server.stats);
  return signals.forced ? EXIT_FORCED : EXIT_OK;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
