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

import denoJson from "./deno.json" with { type: "json" };
import { echoOnce } from "./lib/echo_once.ts";
import { EchoError, echoStream } from "./lib/echo_stream.ts";
import { formatAddr, type OptionError } from "./lib/_helpers.ts";
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  flagFor,
  helpTopic,
  parseFlags,
  printError,
  usageExit,
} from "./lib/cli/flags.ts";
import {
  checkClientFlags,
  CLIENT_FLAGS,
  clientHelp,
  clientTarget,
  LOAD_FLAGS,
} from "./lib/cli/client_flags.ts";
import { configureLogging } from "./lib/cli/logging.ts";
import { runSession, stdout } from "./lib/cli/session.ts";
import { tlsHint } from "./lib/cli/tls_hints.ts";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    const topic = helpTopic(args);
    if (topic !== undefined) {
      console.log(clientHelp(topic));
      return EXIT_OK;
    }
    parsed = parseFlags(CLIENT_FLAGS, args, true);
    checkClientFlags(parsed);
  } catch (error) {
    return usageExit(error);
  }
  const { values: v, spelled, positionals } = parsed;
  if (v.version) {
    console.log(denoJson.version);
    return EXIT_OK;
  }
  await configureLogging(v["log-level"] ?? "warning", "pretty");
  // FFI is full access: only the native engine keeps it.
  if (v.engine !== "native") Deno.permissions.revokeSync({ name: "ffi" });
  const target = clientTarget(v);
  const message = v.message ?? positionals.join(" ");
  const interactive = v.interactive ??
    (positionals.length === 0 && v.message === undefined &&
      Deno.stdin.isTerminal());
  try {
    if (v.agent) {
      const { runAgent } = await import("./lib/cli/agent.ts");
      return await runAgent({
        redis: v.redis!,
        redisKey: v["redis-key"],
        name: v["agent-name"],
        engine: v.engine,
        nativeIo: v["native-io"],
        allow: v["agent-allow"],
        sourceAddresses: v["source-address"],
      });
    }
    if (LOAD_FLAGS.some((name) => spelled[name] !== undefined)) {
      const perClient = spelled.count === undefined && v.duration === undefined
        ? (spelled["num-clients"] === undefined ? undefined : 1)
        : undefined;
      // Loaded for a load test only: HdrHistogram with it.
      const { runLoad } = await import("./lib/cli/load.ts");
      return await runLoad({
        ...target,
        connections: v.connections ?? v["num-clients"],
        count: v.count,
        countPerConnection: v["max-count"] ?? perClient,
        duration: v.duration === undefined ? undefined : v.duration * 1000,
        warmup: v.warmup === undefined ? undefined : v.warmup * 1000,
        reconnectEvery: v["reconnect-every"],
        expect: v.expect,
        message: v.message ?? v.size,
        rate: v.rate,
        engine: v.engine,
        nativeIo: v["native-io"],
        json: v.json ?? false,
        histogramFile: v.histogram,
        plotFile: v.plot,
        label: v.label,
        maxLoss: v["max-loss"],
        reportInterval: (v["report-interval"] ?? 5) * 1000,
        sourceAddresses: v["source-address"],
        plotAgents: v["plot-agents"],
        agents: v.agents === undefined ? undefined : {
          redis: v.redis!,
          redisKey: v["redis-key"],
          agents: v.agents,
          agentsTimeout: v["agents-timeout"] === undefined
            ? undefined
            : v["agents-timeout"] * 1000,
        },
      });
    } else if (interactive) {
      const timeout = v.timeout ?? 10000;
      const end = await runSession({
        ...target,
        timeout,
        input: Deno.stdin.readable,
        output: Deno.stdout.writable,
        terminal: Deno.stdout.isTerminal(),
        downloadDir: v["download-dir"] ?? ".",
      });
      if (end === "server") console.error("Connection closed by server");
      if (end === "timeout") {
        console.error(`Server did not close within ${timeout} ms: closed`);
      }
    } else if (message === "-" && v.message === undefined) {
      await echoStream(Deno.stdin.readable, { ...target, raw: v.raw })
        .pipeTo(stdout(v.raw ?? false));
    } else if (v.raw) {
      const bytes = new TextEncoder().encode(message);
      const reply = await echoOnce(bytes, { ...target, raw: true });
      await ReadableStream.from([reply]).pipeTo(stdout(true));
    } else {
      console.log(await echoOnce(message, target));
    }
  } catch (error) {
    const { option, reason } = error as Partial<OptionError>;
    const flag = option && flagFor(CLIENT_FLAGS, spelled, option);
    if (flag) {
      printError(`Invalid ${flag}: ${reason} (see --help)`);
      return EXIT_USAGE;
    }
    const address = v.ws ?? v.unix ?? formatAddr({
      hostname: v.hostname ?? "127.0.0.1",
      port: v.port ?? 9000,
    });
    if (v.agents !== undefined) {
      printError(`Load test on agents failed: ${(error as Error).message}`);
      return EXIT_FAILURE;
    }
    const what = interactive ? "Session with" : "Echo via";
    // A reply that is not an echo at all: an info or line mode answer.
    const answer = error instanceof EchoError && error.problem === "differs" &&
      error.at === 0;
    const message = (error as Error).message;
    const hint = answer
      ? " (not an echo? --raw prints any reply)"
      : tlsHint(message);
    printError(`${what} ${address} failed: ${message}${hint}`);
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
