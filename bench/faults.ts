/**
 * `deno task bench:faults`: how exactly faults do what they say, and what
 * they cost when they hit nobody (issue 23's timing cells; the outcomes that
 * are exact are tests). Our server on CPU 0 (the default engine, the one
 * that acts faults out), the load in this process on CPU 1:
 *
 * - Faults off cost nothing measurable: server µs of CPU per round trip at
 *   64 B × 50 (the native load client, 1 s warm-up) with no faults, and
 *   with a fault installed that spares this client (`clients` elsewhere);
 *   and what `--control` costs, when open connections follow the changes
 *   (every connection through the faults' layer), with no faults.
 * - `latency` 100 ms on what the server sends: the median round trip rises
 *   by 100 ms ± 5 % (10 connections).
 * - `latency` 100 ms with a normal jitter of 20 ms: the round trips' standard
 *   deviation is 20 ms ± 10 %.
 * - `bandwidth` 1 MB/s: a 5 MB echo takes 5 s ± 5 %.
 *
 * ```sh
 * deno task bench:faults                      # 3 repetitions of 5 s
 * deno task bench:faults --reps 1 --duration 1 --bytes 1000000
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { echoOnce, loadTest } from "../mod.ts";
import { decodeHistogram } from "../lib/client/latency.ts";
import {
  benchFlags,
  DENO,
  fmt,
  LOCK,
  markdown,
  middle,
  pinSelf,
  positive,
  ROOT,
  start,
} from "./_harness.ts";

const USAGE =
  `Usage: deno task bench:faults [--reps N] [--duration S] [--bytes N]

  --reps N       repetitions, taking turns (default: 3)
  --duration S   seconds each load runs, after a 1 s warm-up (default: 5)
  --bytes N      the bandwidth cell's echo, at 1 MB/s (default: 5000000)
  --before REF   the commit whose server the first cell compares with (default:
                 b6ac5a7^, the last before issue 23; none: leave it out)
  --help         print this and exit`;

/**
 * The default engine's server, with `faults` (each a --fault) and `more`;
 * `root`: another checkout's (the code before issue 23).
 */
function server(
  faults: string[],
  more: string[] = [],
  root = ROOT,
): string[] {
  return [
    DENO,
    "run",
    root === ROOT ? LOCK : `--lock=${root}deno.lock`,
    "--allow-net",
    `--allow-read=${root}lib`,
    `${root}server.ts`,
    ...["--port", "0", "--log-level", "error"],
    ...faults.flatMap((fault) => ["--fault", fault]),
    ...more,
  ];
}

interface Options {
  reps: number;
  duration: number;
  bytes: number;
  /** A checkout of the code before issue 23, for the first cell. */
  before: string | undefined;
}

/** One repetition's figures. */
interface Cells {
  /** Server µs of CPU per round trip: no faults, a fault sparing us. */
  cpuNone: number;
  cpuSpared: number;
  /** The same with --control, no faults: every connection through faults. */
  cpuLive: number;
  /** No faults, the code before issue 23 (NaN without it). */
  cpuBefore: number;
  /** Median round trip without and with 100 ms of latency (µs). */
  p50None: number;
  p50Latency: number;
  /** The round trips' standard deviation with a normal jitter (µs). */
  jitterSd: number;
  /** Seconds the bandwidth cell's echo took. */
  bandwidthS: number;
  errors: number;
}

async function repetition(o: Options, pinned: boolean): Promise<Cells> {
  const errorsOf = (
    r: {
      connectErrors: number;
      mismatches: number;
      otherErrors: number;
      closedBeforeEcho: number;
    },
  ) => r.connectErrors + r.mismatches + r.otherErrors + r.closedBeforeEcho;
  let errors = 0;
  const cpu = async (faults: string[], more: string[] = [], root = ROOT) => {
    await using s = await start(server(faults, more, root), pinned);
    const before = await s.cpuMs();
    const report = await loadTest({
      port: s.port,
      engine: "native",
      connections: 50,
      message: 64,
      warmup: 1000,
      duration: o.duration * 1000,
    });
    errors += errorsOf(report);
    // The warm-up's CPU is in the delta too; so is its count, below.
    const spent = await s.cpuMs() - before;
    const trips = report.roundTripsPerSecond * (o.duration + 1);
    return spent * 1000 / trips;
  };
  const cpuNone = await cpu([]);
  const cpuSpared = await cpu(["latency:ms=100,clients=192.0.2.0/24"]);
  const cpuLive = await cpu([], ["--control", "127.0.0.1:0"]);
  const cpuBefore = o.before === undefined ? NaN : await cpu([], [], o.before);
  const rtt = async (faults: string[]) => {
    await using s = await start(server(faults), pinned);
    const report = await loadTest({
      port: s.port,
      connections: 10,
      duration: o.duration * 1000,
      warmup: 500,
    });
    errors += errorsOf(report);
    return report;
  };
  const p50None = (await rtt([])).latencyUs.p50;
  const p50Latency = (await rtt(["latency:ms=100,direction=send"])).latencyUs
    .p50;
  const jittered = await rtt([
    "latency:ms=100,jitter=20,distribution=normal,direction=send",
  ]);
  const histogram = decodeHistogram(jittered.latencyHistogram);
  const jitterSd = histogram.stdDeviation;
  histogram.destroy();
  await using thin = await start(
    server(["bandwidth:bytesPerSecond=1000000,direction=send"]),
    pinned,
  );
  const payload = new Uint8Array(o.bytes).fill(0x61);
  const started = performance.now();
  const echo = await echoOnce(payload, { port: thin.port, timeout: 60_000 });
  const bandwidthS = (performance.now() - started) / 1000;
  if (echo.length !== payload.length) errors++;
  return {
    cpuNone,
    cpuSpared,
    cpuLive,
    cpuBefore,
    p50None,
    p50Latency,
    jitterSd,
    bandwidthS,
    errors,
  };
}

/** The last commit before issue 23 (its first: b6ac5a7, the fault spec). */
const BEFORE = "b6ac5a7^";

/**
 * The code at `ref` of this repository, in a folder of its own (`git
 * archive`), or why there is none (no git, a shallow clone, `none`).
 */
async function checkoutOf(
  ref: string,
): Promise<
  { dir: string; why?: undefined } | { dir?: undefined; why: string }
> {
  if (ref === "none") return { why: "--before none" };
  const dir = await Deno.makeTempDir({ prefix: "tcp-echo-before-" });
  const done = await new Deno.Command("bash", {
    args: [
      "-c",
      'git -C "$1" archive "$2" | tar -x -C "$3"',
      "bash",
      ROOT,
      ref,
      dir,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output().catch((error) => ({
    code: 1,
    stderr: new TextEncoder().encode((error as Error).message),
  }));
  if (done.code === 0) return { dir: `${dir}/` };
  await Deno.remove(dir, { recursive: true });
  const why = new TextDecoder().decode(done.stderr).trim().split("\n")[0];
  return { why: `no ${ref} here: ${why}` };
}

async function main(): Promise<void> {
  const values = benchFlags(USAGE, () =>
    parseArgs({
      options: {
        reps: { type: "string", default: "3" },
        duration: { type: "string", default: "5" },
        bytes: { type: "string", default: "5000000" },
        before: { type: "string", default: BEFORE },
        help: { type: "boolean" },
      },
      strict: true,
    }).values);
  const checkout = await checkoutOf(values.before);
  await using _removed = {
    [Symbol.asyncDispose]: () =>
      checkout.dir === undefined
        ? Promise.resolve()
        : Deno.remove(checkout.dir, { recursive: true }),
  };
  const o: Options = {
    reps: Math.round(positive("reps", values.reps)),
    duration: positive("duration", values.duration),
    bytes: Math.round(positive("bytes", values.bytes)),
    before: checkout.dir,
  };
  const pinned = await pinSelf();
  const cells: Cells[] = [];
  for (let rep = 1; rep <= o.reps; rep++) {
    console.error(`== repetition ${rep} of ${o.reps}`);
    cells.push(await repetition(o, pinned));
  }
  const m = (pick: (c: Cells) => number) => middle(cells.map(pick));
  const added = m((c) => c.p50Latency - c.p50None) / 1000;
  const sd = m((c) => c.jitterSd) / 1000;
  const seconds = m((c) => c.bandwidthS);
  const expectedS = o.bytes / 1_000_000;
  const within = (x: number, target: number, share: number) =>
    Math.abs(x - target) <= target * share ? "yes" : "no";
  console.log(
    [
      `${
        new Date().toISOString()
      }, Deno ${Deno.version.deno}, server on CPU 0, load on CPU 1${
        pinned ? "" : " (not pinned: no taskset)"
      }; median of ${o.reps} repetitions of ${o.duration} s; errors in all runs: ${
        cells.reduce((sum, c) => sum + c.errors, 0)
      }`,
      "",
      markdown(["cell", "measured", "target", "within"], [
        [
          `64 B × 50: server µs CPU/round trip, no faults: before issue 23 (${values.before}) → now`,
          checkout.dir === undefined
            ? `n/a (${checkout.why})`
            : `${fmt(m((c) => c.cpuBefore), 2)} → ${
              fmt(m((c) => c.cpuNone), 2)
            } (${fmt(m((c) => c.cpuNone / c.cpuBefore), 2)}×)`,
          "no measurable cost",
          "",
        ],
        [
          "64 B × 50: server µs CPU/round trip, no faults → a fault sparing us",
          `${fmt(m((c) => c.cpuNone), 2)} → ${fmt(m((c) => c.cpuSpared), 2)} (${
            fmt(m((c) => c.cpuSpared / c.cpuNone), 2)
          }×)`,
          "no measurable cost",
          "",
        ],
        [
          "64 B × 50: server µs CPU/round trip, --control (open connections follow), no faults",
          `${fmt(m((c) => c.cpuLive), 2)} (${
            fmt(m((c) => c.cpuLive / c.cpuNone), 2)
          }×)`,
          "the price of following",
          "",
        ],
        [
          "latency 100 ms: the median round trip rises by (ms)",
          fmt(added, 1),
          "100 ± 5 %",
          within(added, 100, 0.05),
        ],
        [
          "latency 100 ms, normal jitter 20 ms: standard deviation (ms)",
          fmt(sd, 1),
          "20 ± 10 %",
          within(sd, 20, 0.1),
        ],
        [
          `bandwidth 1 MB/s: a ${fmt(o.bytes / 1e6, 1)} MB echo takes (s)`,
          fmt(seconds, 2),
          `${fmt(expectedS, 1)} ± 5 %`,
          within(seconds, expectedS, 0.05),
        ],
      ]),
    ].join("\n"),
  );
}

if (import.meta.main) await main();
