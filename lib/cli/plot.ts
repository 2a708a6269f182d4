// Private: latency pictures for people: a histogram's percentile
// distribution in HdrHistogram's text format, and a latency-by-percentile
// chart in SVG, drawn by Vega-Lite (no browser needed). A chart keeps its
// runs' data inside it, so that a later run with another label is drawn
// beside them. Used by the client CLI (--histogram, --plot) and by
// `deno task bench`. Not exported from mod.ts.

import type * as Vega from "npm:vega@^6.2.0";
import type * as VegaLite from "npm:vega-lite@^6.4.1";
import { decodeHistogram } from "../client/latency.ts";
import { importLazily } from "../_lazy.ts";

const vega = await importLazily<typeof Vega>("npm:vega@^6.2.0");
const { compile } = await importLazily<typeof VegaLite>(
  "npm:vega-lite@^6.4.1",
);

/** One run on a chart: its name, and latency (ms) by 1 / (1 - percentile). */
export interface Run {
  label: string;
  points: { x: number; ms: number }[];
}

/**
 * The percentile distribution of an encoded histogram of µs (a load
 * report's `latencyHistogram`), in ms, as HdrHistogram prints it: the text
 * its plotter and wrk2's users read.
 */
export function percentileDistribution(encoded: string): string {
  const histogram = decodeHistogram(encoded);
  try {
    return histogram.outputPercentileDistribution(5, 1000);
  } finally {
    histogram.destroy();
  }
}

/** A run's points: each line of its percentile distribution but the last. */
export function runOf(label: string, encoded: string): Run {
  const points = [];
  for (const line of percentileDistribution(encoded).split("\n")) {
    const fields = line.trim().split(/\s+/).map(Number);
    // Value, percentile, count, 1/(1-percentile): the 100 % line has none.
    if (fields.length !== 4 || fields.some((n) => !Number.isFinite(n))) {
      continue;
    }
    points.push({ x: fields[3], ms: fields[0] });
  }
  return { label, points };
}

const METADATA =
  /<metadata id="tcp-echo-latency"><!\[CDATA\[(.*?)\]\]><\/metadata>/s;

/** The runs a chart we drew keeps inside it; none for any other file. */
export function runsIn(svg: string): Run[] {
  const match = METADATA.exec(svg);
  if (match === null) return [];
  try {
    const runs = JSON.parse(match[1]);
    return Array.isArray(runs) ? runs : [];
  } catch {
    return [];
  }
}

/** The tick marks of the percentile axis, as 1 / (1 - percentile). */
const TICKS = [2, 10, 100, 1000, 10_000, 100_000, 1_000_000];

/**
 * The chart of `runs`: latency (ms) against percentile on a logarithmic
 * axis (50 %, 90 %, 99 %, 99.9 %, …), one line per run, with its data kept
 * in a `<metadata>` element.
 */
export async function latencyChart(
  runs: readonly Run[],
  title = "Latency by percentile",
): Promise<string> {
  const values = runs.flatMap((run) =>
    run.points.map((p) => ({ run: run.label, x: p.x, ms: p.ms }))
  );
  const top = Math.max(2, ...values.map((v) => v.x));
  const { spec } = compile({
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    width: 640,
    height: 360,
    background: "white",
    data: { values },
    mark: { type: "line", interpolate: "step-after", strokeWidth: 2 },
    encoding: {
      x: {
        field: "x",
        type: "quantitative",
        title: "percentile",
        scale: { type: "log", domain: [1, TICKS.find((t) => t >= top)!] },
        axis: {
          values: TICKS,
          labelExpr: "format(100 - 100 / datum.value, '.4~f') + ' %'",
        },
      },
      y: { field: "ms", type: "quantitative", title: "latency (ms)" },
      color: {
        field: "run",
        type: "nominal",
        title: null,
        sort: runs.map((run) => run.label),
        legend: { orient: "bottom", direction: "vertical", labelLimit: 600 },
      },
    },
  });
  const view = new vega.View(vega.parse(spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  // The runs, for the next run to add itself to; "]]>" cannot end the
  // section early: JSON writes ">" inside strings as \u003e here.
  const data = JSON.stringify(runs).replaceAll(">", "\\u003e");
  return svg.replace(
    /<svg[^>]*>/,
    (open) =>
      `${open}<metadata id="tcp-echo-latency"><![CDATA[${data}]]></metadata>`,
  );
}

/**
 * Draws `run` into the chart at `path`: beside the runs already there if
 * it is one of ours (replacing a run of the same label), else alone.
 */
export async function plotRun(path: string, run: Run): Promise<void> {
  let existing: Run[] = [];
  try {
    existing = runsIn(await Deno.readTextFile(path));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const runs = [...existing.filter((r) => r.label !== run.label), run];
  await Deno.writeTextFile(path, await latencyChart(runs));
}

/**
 * Writes a load test's latency files where asked: the percentile
 * distribution, the chart (with this run under `label`, by default the
 * server's address). Throws "Cannot write PATH: why" for a file it cannot
 * write.
 */
export async function writeLatencyFiles(
  report: { address: string; latencyHistogram: string },
  files: { histogramFile?: string; plotFile?: string; label?: string },
): Promise<void> {
  const { address, latencyHistogram } = report;
  const { histogramFile, plotFile, label = address } = files;
  const write = async (path: string, writing: () => Promise<void>) => {
    try {
      await writing();
    } catch (error) {
      throw new Error(`Cannot write ${path}: ${(error as Error).message}`);
    }
  };
  if (histogramFile !== undefined) {
    await write(
      histogramFile,
      () =>
        Deno.writeTextFile(
          histogramFile,
          percentileDistribution(latencyHistogram),
        ),
    );
  }
  if (plotFile !== undefined) {
    await write(
      plotFile,
      () => plotRun(plotFile, runOf(label, latencyHistogram)),
    );
  }
}
