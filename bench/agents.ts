/**
 * `deno task bench:agents`: what coordination through Redis costs. The same
 * load (64 B × 50 connections on the default engine, against our server on
 * the native engine) run by this process alone, and by one load agent in
 * this process that a coordinator here starts through a real redis-server,
 * taking turns: round trips a second, and the cost in %. The server runs
 * on CPU 0, the load on CPU 1.
 *
 * ```sh
 * deno task bench:agents                  # 5 repetitions of 5 s
 * deno task bench:agents --reps 1 --duration 1
 * ```
 *
 * @module
 */

import { coordinateLoad, loadTest, runLoadAgent } from "../mod.ts";
import { startRedis } from "../tests/_redis.ts";
import {
  DENO,
  fmt,
  LOCK,
  markdown,
  middle,
  pinSelf,
  repsAndDuration,
  ROOT,
  start,
} from "./_harness.ts";

const USAGE = `Usage: deno task bench:agents [--reps N] [--duration S]

  --reps N       repetitions, taking turns (default: 5)
  --duration S   seconds each load runs, after a 1 s warm-up (default: 5)
  --help         print this and exit`;

/** The load both ways run. */
const LOAD = { connections: 50, message: 64, warmup: 1000 } as const;

async function main(): Promise<void> {
  const flags = repsAndDuration(USAGE, { reps: "5", duration: "5" });
  const { reps } = flags;
  const duration = flags.duration * 1000;
  const pinned = await pinSelf();
  await using redis = await startRedis();
  await using server = await start([
    DENO,
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-ffi",
    `${ROOT}server.ts`,
    ...["--engine", "native", "--log-level", "error"],
  ], pinned);
  await using agent = await runLoadAgent({ redis: redis.url, name: "bench" });
  const rows: { alone: number; agent: number; errors: number }[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    console.error(`== repetition ${rep} of ${reps}`);
    const runAlone = () => loadTest({ port: server.port, ...LOAD, duration });
    const runAgent = () =>
      coordinateLoad({
        redis: redis.url,
        agents: 1,
        port: server.port,
        ...LOAD,
        duration,
        startDelay: 200,
      });
    // Taking turns in both orders, so that a drift of the machine favours
    // neither.
    let alone, coordinated;
    if (rep % 2 === 1) {
      alone = await runAlone();
      coordinated = await runAgent();
    } else {
      coordinated = await runAgent();
      alone = await runAlone();
    }
    const errors = (r: typeof alone) =>
      r.connectErrors + r.closedBeforeEcho + r.mismatches + r.otherErrors;
    rows.push({
      alone: alone.roundTripsPerSecond,
      agent: coordinated.roundTripsPerSecond,
      errors: errors(alone) + errors(coordinated) +
        (coordinated.degraded ? 1 : 0),
    });
  }
  await agent.close();
  const m = (pick: (r: (typeof rows)[number]) => number) =>
    middle(rows.map(pick));
  console.log(
    [
      `${
        new Date().toISOString()
      }, Deno ${Deno.version.deno}; server (native engine) on CPU 0, load on CPU 1${
        pinned ? "" : " (not pinned: no taskset)"
      }; median of ${reps} repetitions of ${
        duration / 1000
      } s after a 1 s warm-up; errors in all runs: ${
        rows.reduce((n, r) => n + r.errors, 0)
      }`,
      "",
      markdown(["64 B × 50, default engine", "round trips/s (median)"], [
        ["this process alone", fmt(m((r) => r.alone), 0)],
        ["one agent, through Redis", fmt(m((r) => r.agent), 0)],
        [
          "coordination costs (median of the repetitions' costs)",
          `${fmt(m((r) => (1 - r.agent / r.alone) * 100), 2)} %`,
        ],
      ]),
    ].join("\n"),
  );
}

if (import.meta.main) await main();
