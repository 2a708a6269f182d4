// Private: the latency histogram of a load test, as both engines keep it
// (lib/client/stream_load.ts, lib/native/load_loop.ts), and its summary. Not
// exported from mod.ts.

import type * as Hdr from "npm:hdr-histogram-js@^3.0.1";
import { importLazily } from "../_lazy.ts";

const hdr = await importLazily<typeof Hdr>("npm:hdr-histogram-js@^3.0.1");

/** Highest latency the histogram tracks: one hour, in microseconds. */
const MAX_LATENCY_US = 3_600_000_000;

/** Latency figures, in microseconds. */
export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** An HDR histogram of round-trip times in µs, 3 significant digits. */
export function latencyHistogram(): Hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: MAX_LATENCY_US,
    numberOfSignificantValueDigits: 3,
  });
}

/**
 * `h` compressed and in base64, as HdrHistogram's tools exchange histograms
 * (a few hundred bytes): what crosses from a worker, and what a report
 * carries for plots.
 */
export function encodeHistogram(h: Hdr.Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** A histogram that {@linkcode encodeHistogram} encoded; free it after. */
export function decodeHistogram(encoded: string): Hdr.Histogram {
  return hdr.decodeFromCompressedBase64(encoded);
}

/**
 * The figures of `h`, which it then frees. HDR histograms answer with the
 * top of the value's bucket (3 significant digits), which can lie just above
 * the largest value recorded; no percentile is above the maximum, so each is
 * capped there.
 */
export function latencySummary(h: Hdr.Histogram): Latency {
  const percentile = (p: number) =>
    Math.min(h.getValueAtPercentile(p), h.maxValue);
  const summary = {
    p50: percentile(50),
    p90: percentile(90),
    p99: percentile(99),
    p999: percentile(99.9),
    max: h.maxValue,
    mean: h.mean,
  };
  h.destroy();
  return summary;
}
