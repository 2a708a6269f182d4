/**
 * `deno task bench:websocket`: WebSocket echo, 64 B messages over 50
 * connections, our server (`--websocket-only`, the default engine) against
 * Node with the ws package (`npm:ws`, run under Node), same run, taking
 * turns: round trips a second, and the server's µs of CPU per round trip.
 * The server runs on CPU 0 and the load (our client, over its own frames)
 * on CPU 1; both servers face the same client.
 *
 * ```sh
 * deno task bench:websocket                  # 3 repetitions of 5 s
 * deno task bench:websocket --reps 1 --duration 1
 * ```
 *
 * @module
 */

import { loadTest } from "../mod.ts";
import {
  DENO,
  fmt,
  LOCK,
  markdown,
  middle,
  pinSelf,
  repsAndDuration,
  ROOT,
  type Server,
  start,
} from "./_harness.ts";

const USAGE = `Usage: deno task bench:websocket [--reps N] [--duration S]

  --reps N       repetitions, taking turns (default: 3)
  --duration S   seconds each load runs, after a 1 s warm-up (default: 5)
  --help         print this and exit`;

/** The ws package the lockfile names (puppeteer-core's own). */
const WS = "ws@8.23.1";

/**
 * Where Deno keeps `WS` (fetched into its cache if it is not there), for
 * `bench/node_ws_echo.mjs`; the WebSocket tests run that server too.
 */
export async function wsPackageDir(): Promise<string> {
  await import(`npm:${WS}`);
  const info = await new Deno.Command(DENO, {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const { npmCache } = JSON.parse(new TextDecoder().decode(info.stdout));
  const [name, version] = WS.split("@");
  return `${npmCache}/registry.npmjs.org/${name}/${version}`;
}

/** One repetition's figures, for each server. */
interface Cells {
  ours: { perSecond: number; cpuUs: number };
  node: { perSecond: number; cpuUs: number };
  errors: number;
}

async function measure(
  server: Server,
  url: string,
  duration: number,
): Promise<{ perSecond: number; cpuUs: number; errors: number }> {
  const before = await server.cpuMs();
  const report = await loadTest({
    websocket: url,
    connections: 50,
    message: 64,
    warmup: 1000,
    duration: duration * 1000,
  });
  const spent = await server.cpuMs() - before;
  // The warm-up's CPU is in the delta too; so is its count, here.
  const trips = report.roundTripsPerSecond * (duration + 1);
  return {
    perSecond: report.roundTripsPerSecond,
    cpuUs: spent * 1000 / trips,
    errors: report.connectErrors + report.mismatches + report.otherErrors +
      report.closedBeforeEcho,
  };
}

async function main(): Promise<void> {
  const { reps, duration } = repsAndDuration(USAGE, {
    reps: "3",
    duration: "5",
  });
  const wsDir = await wsPackageDir();
  const pinned = await pinSelf();
  const ours = [
    DENO,
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-sys=hostname",
    `${ROOT}server.ts`,
    ...["--websocket", "127.0.0.1:0", "--websocket-only"],
    ...["--log-level", "error"],
  ];
  const node = ["node", `${ROOT}bench/node_ws_echo.mjs`, "0", wsDir];
  const cells: Cells[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    console.error(`== repetition ${rep} of ${reps}`);
    const run = async (command: string[]) => {
      await using server = await start(command, pinned);
      return await measure(
        server,
        `ws://127.0.0.1:${server.port}/ws`,
        duration,
      );
    };
    const a = await run(ours);
    const b = await run(node);
    cells.push({ ours: a, node: b, errors: a.errors + b.errors });
  }
  const m = (pick: (c: Cells) => number) => middle(cells.map(pick));
  console.log(
    [
      `${
        new Date().toISOString()
      }, Deno ${Deno.version.deno}, Node ${await nodeVersion()}, ${WS}; server on CPU 0, load on CPU 1${
        pinned ? "" : " (not pinned: no taskset)"
      }; median of ${reps} repetitions of ${duration} s; errors in all runs: ${
        cells.reduce((sum, c) => sum + c.errors, 0)
      }`,
      "",
      markdown([
        "WebSocket echo, 64 B × 50",
        "round trips/s",
        "server µs CPU/round trip",
      ], [
        [
          "ours (--websocket-only, default engine)",
          fmt(m((c) => c.ours.perSecond), 0),
          fmt(m((c) => c.ours.cpuUs), 2),
        ],
        [
          `Node ${WS.replace("@", " ")}`,
          fmt(m((c) => c.node.perSecond), 0),
          fmt(m((c) => c.node.cpuUs), 2),
        ],
        [
          "ours ÷ Node",
          `${fmt(m((c) => c.ours.perSecond / c.node.perSecond), 2)}×`,
          `${fmt(m((c) => c.ours.cpuUs / c.node.cpuUs), 2)}×`,
        ],
      ]),
    ].join("\n"),
  );
}

async function nodeVersion(): Promise<string> {
  const out = await new Deno.Command("node", {
    args: ["--version"],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

if (import.meta.main) await main();
