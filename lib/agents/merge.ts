// Private: one report from the agents' reports of one run, free of I/O:
// counts and bytes added, the longest duration, and the HDR histograms
// added exactly (histograms add; percentiles come from the sum, never from
// averaged percentiles). Not exported from mod.ts.

import type { LatencySummary, LoadReport } from "../types.ts";
import {
  decodeHistogram,
  encodeHistogram,
  latencyHistogram,
  latencySummary,
} from "../client/latency.ts";

/** Most error messages a merged report keeps. */
const MAX_MESSAGES = 10;

/** The counts a merged report adds up. */
const SUMS = [
  "connections",
  "connected",
  "roundTrips",
  "connects",
  "lost",
  "connectErrors",
  "closedBeforeEcho",
  "mismatches",
  "otherErrors",
  "resets",
  "closes",
  "timeouts",
  "cpuMs",
] as const;

/** Encoded histograms added into one: encoded, and its summary. */
export function addHistograms(
  encoded: readonly string[],
): { histogram: string; summary: LatencySummary } {
  const sum = latencyHistogram();
  for (const one of encoded) {
    const h = decodeHistogram(one);
    sum.add(h);
    h.destroy();
  }
  const histogram = encodeHistogram(sum);
  return { histogram, summary: latencySummary(sum) };
}

/**
 * The agents' reports as one, named by `agents` (an error message says
 * which agent it came from). The run lasted as long as its longest part:
 * its rates are over that.
 */
export function mergeReports(
  reports: readonly LoadReport[],
  agents: readonly string[],
): LoadReport {
  if (reports.length === 0) throw new RangeError("no reports to merge");
  const first = reports[0];
  const sum = (key: (typeof SUMS)[number]) =>
    reports.reduce((total, r) => total + r[key], 0);
  const sums = Object.fromEntries(SUMS.map((key) => [key, sum(key)])) as Record<
    (typeof SUMS)[number],
    number
  >;
  const durationMs = Math.max(...reports.map((r) => r.durationMs));
  const seconds = durationMs / 1000;
  const rate = (n: number) => seconds > 0 ? n / seconds : 0;
  const latency = addHistograms(reports.map((r) => r.latencyHistogram));
  const connects = addHistograms(
    reports.map((r) => r.connectLatencyHistogram),
  );
  const handshakes = reports.every((r) => r.handshakes !== undefined)
    ? addHistograms(reports.map((r) => r.handshakeLatencyHistogram!))
    : undefined;
  const handshakeCount = handshakes === undefined
    ? undefined
    : reports.reduce((total, r) => total + r.handshakes!, 0);
  const resumed = reports.some((r) => r.resumedHandshakes !== undefined)
    ? reports.reduce((total, r) => total + (r.resumedHandshakes ?? 0), 0)
    : undefined;
  const errorMessages = reports.flatMap((r, i) =>
    r.errorMessages.map((m) => `${agents[i]}: ${m}`)
  ).slice(0, MAX_MESSAGES);
  return {
    ...sums,
    address: first.address,
    messageBytes: first.messageBytes,
    durationMs,
    roundTripsPerSecond: rate(sums.roundTrips),
    megabytesPerSecond: rate(sums.roundTrips * first.messageBytes) / 1e6,
    latencyUs: latency.summary,
    latencyHistogram: latency.histogram,
    connectLatencyUs: connects.summary,
    connectLatencyHistogram: connects.histogram,
    ...(handshakes === undefined ? {} : {
      handshakes: handshakeCount,
      handshakesPerSecond: rate(handshakeCount!),
      handshakeLatencyUs: handshakes.summary,
      handshakeLatencyHistogram: handshakes.histogram,
    }),
    ...(resumed === undefined ? {} : { resumedHandshakes: resumed }),
    errorMessages,
  };
}
