// Private: the client CLI's load test: progress on stderr, the report on
// stdout. Not exported from mod.ts.

import {
  type LatencySummary,
  type LoadProgress,
  type LoadReport,
  loadTest,
  type LoadTestOptions,
} from "../load.ts";
import { EXIT_FAILURE, EXIT_OK, printError } from "./flags.ts";
import { tlsHint } from "./tls_hints.ts";
import {
  type AgentPart,
  type CoordinatedReport,
  coordinateLoad,
} from "../coordinate_load.ts";

/** The exit code of a test on agents that lost one. */
export const EXIT_DEGRADED = 3;

/** How client.ts runs a load test. */
export interface LoadRun extends LoadTestOptions {
  /** Print the report as one JSON object. */
  json: boolean;
  /** Where to write the percentile distribution, if anywhere. */
  histogramFile?: string;
  /** Where to draw the latency chart, if anywhere, and this run's name. */
  plotFile?: string;
  label?: string;
  /** Milliseconds between progress lines when stderr is not a terminal. */
  reportInterval: number;
  /** Over UDP, the % of datagrams that may go unanswered; any by default. */
  maxLoss?: number;
  /** With `agents` and `plotFile`: each agent's latency in the chart too. */
  plotAgents?: boolean;
  /** Run on agents through Redis (`--agents`), rather than here. */
  agents?: {
    redis: string;
    redisKey?: string;
    agents: number;
    agentsTimeout?: number;
  };
}

/**
 * Runs a load test, shows progress on stderr and the report on stdout, and
 * returns the exit code.
 *
 * @throws {RangeError} An option is out of range (its `option` field names it).
 */
export async function runLoad(run: LoadRun): Promise<number> {
  const {
    json,
    reportInterval,
    maxLoss,
    histogramFile,
    plotFile,
    label,
    agents,
    plotAgents,
    ...options
  } = run;
  const live = Deno.stderr.isTerminal();
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  const encoder = new TextEncoder();
  let report: LoadReport;
  try {
    const progress = {
      signal: stop.signal,
      progressInterval: live ? 250 : reportInterval,
      onProgress: (p: LoadProgress & { agents?: number }) => {
        const text = `${(p.elapsedMs / 1000).toFixed(1)} s: ${
          p.roundTrips.toLocaleString("en-US")
        } round trips, ${
          Math.round(p.rate).toLocaleString("en-US")
        }/s, ${p.errors} errors${
          p.agents === undefined ? "" : `, ${p.agents} agents`
        }`;
        // On a terminal one line, rewritten in place; otherwise a line each.
        Deno.stderr.writeSync(
          encoder.encode(live ? `\r${text}\x1b[K` : `${text}\n`),
        );
      },
    };
    report = agents === undefined
      ? await loadTest({ ...options, ...progress })
      : await coordinateLoad({ ...options, ...agents, ...progress });
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    if (live) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  }
  console.log(
    json ? JSON.stringify(report) : formatReport(
      report,
      options.udp ?? false,
      // Expected endings reconnect too.
      options.reconnectEvery !== undefined || (options.expect ?? []).length > 0,
      options.expect ?? [],
    ) + agentLines(report),
  );
  if (histogramFile !== undefined || plotFile !== undefined) {
    // Vega is loaded only for these files, not at every start.
    const { writeLatencyFiles } = await import("./plot.ts");
    try {
      await writeLatencyFiles(report, { histogramFile, plotFile, label });
      const parts = (report as Partial<CoordinatedReport>).agents ?? [];
      for (const part of plotAgents ? parts : []) {
        if (part.report === undefined) continue;
        await writeLatencyFiles(part.report, { plotFile, label: part.name });
      }
    } catch (error) {
      printError((error as Error).message);
      return EXIT_FAILURE;
    }
  }
  const errors = report.connectErrors + report.closedBeforeEcho +
    report.mismatches + report.otherErrors;
  if (errors > 0) {
    const more = errors > 1 ? ` (and ${errors - 1} more)` : "";
    const [first] = report.errorMessages;
    printError(
      `${errors} error${
        errors === 1 ? "" : "s"
      } against ${report.address}: ${first}${tlsHint(first)}${more}`,
    );
    return EXIT_FAILURE;
  }
  if ((report as CoordinatedReport).degraded) {
    const lost = (report as CoordinatedReport).agents.filter((a) =>
      a.report === undefined
    );
    printError(
      `${lost.length} of ${
        (report as CoordinatedReport).agents.length
      } agents have no report: ${
        lost.map((a) => `${a.name} (${a.problem})`).join(", ")
      }`,
    );
    return EXIT_DEGRADED;
  }
  const loss = lossPercent(report);
  if (options.udp && report.lost > 0) {
    // Each loss cost its socket a whole --timeout: the usual cause is a
    // rate limit on the server, which ours has by default.
    console.error(
      `note: ${report.lost.toLocaleString("en-US")} datagram${
        report.lost === 1 ? "" : "s"
      } got no reply within --timeout (${
        options.timeout ?? 10_000
      } ms), each holding its socket that long: a server may drop datagrams over a rate limit (ours answers --udp-rate a second from one address, 1000 by default)`,
    );
  }
  if (maxLoss !== undefined && loss > maxLoss) {
    printError(
      `${
        loss.toFixed(2)
      } % of datagrams to ${report.address} got no reply, more than --max-loss ${maxLoss}`,
    );
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

/** With source addresses, how many connects each made (20 at most). */
function sourceLines(r: LoadReport): string[] {
  if (r.sourceConnects === undefined) return [];
  const all = Object.entries(r.sourceConnects);
  const used = all.filter(([, n]) => n > 0).length;
  const shown = all.slice(0, 20).map(([a, n]) => `${a} ${n}`).join(", ");
  return [
    `sources      ${used} of ${all.length} used: ${shown}${
      all.length > 20 ? `, and ${all.length - 20} more` : ""
    }`,
  ];
}

/** A line per agent after a report of a test on agents; none otherwise. */
function agentLines(report: LoadReport): string {
  const { agents } = report as Partial<CoordinatedReport>;
  if (agents === undefined) return "";
  const n = (x: number) => x.toLocaleString("en-US");
  const line = (a: AgentPart) =>
    `agent        ${a.name} (${a.host}, ${a.engine}): ${a.connections} connections, ${
      n(a.roundTrips)
    } round trips${
      a.report === undefined
        ? a.partial
          ? ` by its last progress, ${a.problem}: partial, in the figures above up to then`
          : ` as last heard, ${a.problem}: not in the figures above`
        : `, ${n(Math.round(a.report.roundTripsPerSecond))}/s, p99 ${
          n(a.report.latencyUs.p99)
        } µs`
    }, ${a.errors} errors`;
  return "\n" + agents.map(line).join("\n");
}

/** The share of datagrams that got no reply, in %. */
function lossPercent(r: LoadReport): number {
  const sent = r.roundTrips + r.mismatches + r.lost;
  return sent === 0 ? 0 : r.lost / sent * 100;
}

/**
 * The report as a few aligned lines for people; connects' latency with
 * `reconnects` or TLS, handshakes' with TLS.
 */
function formatReport(
  r: LoadReport,
  udp: boolean,
  reconnects: boolean,
  expect: readonly string[],
): string {
  const n = (x: number, digits = 0) =>
    x.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  const us = (x: number) => x < 1000 ? `${n(x)} µs` : `${n(x / 1000, 2)} ms`;
  const l = r.latencyUs;
  const seconds = r.durationMs / 1000;
  const percentiles = (l: LatencySummary) =>
    `p50 ${us(l.p50)}, p90 ${us(l.p90)}, p99 ${us(l.p99)}, p99.9 ${
      us(l.p999)
    }, max ${us(l.max)}`;
  const phases: string[] = [];
  if (reconnects || r.handshakes !== undefined) {
    phases.push(
      `connects     ${n(r.connects)}: ${percentiles(r.connectLatencyUs)}`,
    );
  }
  if (r.handshakes !== undefined && r.handshakeLatencyUs !== undefined) {
    const resumed = r.resumedHandshakes === undefined
      ? ""
      : `, ${n(r.resumedHandshakes)} resumed`;
    phases.push(
      `handshakes   ${n(r.handshakes)} (${
        n(r.handshakesPerSecond ?? 0)
      }/s${resumed}): ${percentiles(r.handshakeLatencyUs)}`,
    );
  }
  // Refusals have their own count: the line is for endings beyond them.
  const ended = r.resets + r.closes + r.timeouts;
  if (expect.length > 0 || ended > r.closedBeforeEcho) {
    phases.push(
      `endings      ${n(r.resets)} resets, ${n(r.closes)} closes, ${
        n(r.timeouts)
      } timeouts${expect.length > 0 ? ` (${expect.join(", ")} expected)` : ""}`,
    );
  }
  return [
    `target       ${r.address}, ${
      reconnects
        ? `${r.connections} connections, ${n(r.connected)} opened in turn`
        : `${r.connected} of ${r.connections} connections`
    }, ${r.messageBytes}-byte messages`,
    `round trips  ${n(r.roundTrips)} in ${n(seconds, 2)} s: ${
      n(r.roundTripsPerSecond)
    }/s, ${n(r.megabytesPerSecond, 2)} MB/s each way`,
    `latency      ${percentiles(l)}`,
    ...phases,
    `errors       ${r.connectErrors} connect, ${r.closedBeforeEcho} closed before any echo, ${r.mismatches} mismatched echoes, ${r.otherErrors} other${
      r.lost > 0 || udp
        ? `, ${r.lost} lost (${lossPercent(r).toFixed(2)} %)`
        : ""
    }`,
    ...sourceLines(r),
    `client CPU   ${n(r.cpuMs / 1000, 2)} s (${
      n(seconds > 0 ? r.cpuMs / r.durationMs * 100 : 0)
    } % of one core)${
      r.nativeIo === undefined ? "" : `, native engine on ${r.nativeIo}`
    }`,
  ].join("\n");
}
