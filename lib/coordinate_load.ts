import type { LoadProgress, LoadReport } from "./load.ts";
import { assertPositive, formatAddr } from "./_helpers.ts";
import {
  type AgentEvent,
  type AgentInfo,
  BEAT_MS,
  LoadLink,
} from "./agents/link.ts";
import { addHistograms } from "./agents/merge.ts";
import {
  type LoadPlan,
  PLAN_VERSION,
  planJson,
  type PlanOptions,
  splitPlan,
  spreadOverHosts,
} from "./agents/plan.ts";
import { mergeReports } from "./agents/merge.ts";

/** Options for {@linkcode coordinateLoad}: a load test, and its agents. */
export interface CoordinateLoadOptions extends PlanOptions {
  /** The Redis the agents wait on. */
  redis: string;
  /**
   * The prefix of every key, as the agents'.
   *
   * @default {"tcp-echo"}
   */
  redisKey?: string;
  /** How many agents run the test: the connections, count and rate split among them. */
  agents: number;
  /**
   * Milliseconds to wait for that many agents.
   *
   * @default {30000}
   */
  agentsTimeout?: number;
  /**
   * Milliseconds from the plans' sending to the start, by Redis' clock:
   * time for every agent to get its plan.
   *
   * @default {1500}
   */
  startDelay?: number;
  /** Called about every `progressInterval` ms with the agents' sum. */
  onProgress?: (progress: LoadProgress & { agents: number }) => void;
  /**
   * How often `onProgress` is called.
   *
   * @default {1000}
   */
  progressInterval?: number;
  /** Aborting it stops every agent's run; the report covers what was done. */
  signal?: AbortSignal;
}

/** An agent's progress, as it says it. */
type ProgressEvent = Extract<AgentEvent, { kind: "progress" }>;

/**
 * What an agent lost mid-run had done by its last progress, as a report
 * to merge: its round trips, errors and latencies; the rest as `like` (an
 * agent's report of the same run) says, or as the plan does.
 */
function partialReport(
  part: AgentPart,
  last: ProgressEvent,
  load: PlanOptions,
  like: LoadReport | undefined,
): LoadReport {
  const latency = addHistograms([last.latencyHistogram!]);
  const none = addHistograms([]);
  const { message = 64 } = load;
  const messageBytes = like?.messageBytes ??
    (typeof message === "number"
      ? message
      : typeof message === "string"
      ? new TextEncoder().encode(message).length
      : message.length);
  const seconds = last.elapsedMs / 1000;
  return {
    address: like?.address ?? load.path ??
      formatAddr({
        hostname: load.hostname ?? "127.0.0.1",
        port: load.port ?? 9000,
      }),
    connections: part.connections,
    connected: part.connections,
    messageBytes,
    roundTrips: last.roundTrips,
    durationMs: last.elapsedMs,
    roundTripsPerSecond: seconds > 0 ? last.roundTrips / seconds : 0,
    megabytesPerSecond: seconds > 0
      ? last.roundTrips * messageBytes / seconds / 1e6
      : 0,
    latencyUs: latency.summary,
    latencyHistogram: latency.histogram,
    connects: 0,
    connectLatencyUs: none.summary,
    connectLatencyHistogram: none.histogram,
    lost: 0,
    connectErrors: 0,
    closedBeforeEcho: 0,
    mismatches: 0,
    otherErrors: last.errors,
    resets: 0,
    closes: 0,
    timeouts: 0,
    errorMessages: last.errors > 0
      ? [`${last.errors} errors before it was lost (${part.problem})`]
      : [],
    cpuMs: 0,
  };
}

/** How long an agent's heartbeat may stay missing before it counts as gone. */
const GONE_MS = 2 * BEAT_MS;

/** One agent's part of a {@linkcode CoordinatedReport}. */
export interface AgentPart {
  /** The agent's name. */
  name: string;
  /** The host it runs on. */
  host: string;
  /** The engine it ran its part with. */
  engine: "default" | "native";
  /** Its connections, round trips (a count) and rate in the plan. */
  connections: number;
  /** Its own report, when it sent one. */
  report?: LoadReport;
  /** Round trips and errors as last heard (its report's, if it sent one). */
  roundTrips: number;
  /** Errors as last heard (see `roundTrips`). */
  errors: number;
  /**
   * Why it has no report: it went (no heartbeat for 5 s), it refused the
   * plan, or it did not report in time.
   */
  problem?: string;
  /**
   * Without a report: its part up to its last progress (round trips,
   * errors, latencies) is in the merged report, which says so.
   */
  partial?: boolean;
}

/** The merged report of a run on agents, and each agent's part. */
export interface CoordinatedReport extends LoadReport {
  /** The agents, in name order. */
  readonly agents: readonly AgentPart[];
  /** Some agent has no report: the merged figures leave it out. */
  readonly degraded: boolean;
}

/**
 * Runs a load test on agents ({@linkcode runLoadAgent}) that wait on a
 * Redis, on as many machines as they are: waits for `agents` of them,
 * splits the connections, the count and the rate among them exactly, starts
 * them all at one moment of Redis' clock, shows their summed progress, and
 * merges their reports into one (histograms added, percentiles from the
 * sum).
 *
 * @throws {Error} Redis cannot be reached, or too few agents came within
 * `agentsTimeout`.
 * @throws {RangeError} An option is out of range (its `option` names it).
 */
export async function coordinateLoad(
  options: CoordinateLoadOptions,
): Promise<CoordinatedReport> {
  const {
    redis,
    redisKey = "tcp-echo",
    agents: wanted,
    agentsTimeout = 30_000,
    startDelay = 1500,
    onProgress,
    progressInterval = 1000,
    signal,
    ...load
  } = options;
  assertPositive("agents", wanted, true);
  assertPositive("agentsTimeout", agentsTimeout, false);
  const parts = splitPlan(load, wanted);
  const link = await LoadLink.open(redis, redisKey);
  let reader: LoadLink | undefined;
  try {
    reader = await link.duplicate();
    const chosen = await waitForAgents(link, wanted, agentsTimeout, signal);
    const run = crypto.randomUUID().slice(0, 12);
    const startAt = await link.time() + startDelay;
    for (const [i, agent] of chosen.entries()) {
      const plan: LoadPlan = {
        version: PLAN_VERSION,
        run,
        agent: agent.name,
        options: planJson(parts[i]),
        startAt,
      };
      await link.sendPlan(plan, agent.name);
    }
    const states = chosen.map((agent, i): AgentPart => ({
      name: agent.name,
      host: agent.host,
      engine: agent.engine,
      connections: parts[i].connections ?? 1,
      roundTrips: 0,
      errors: 0,
    }));
    const lastProgress = new Map<string, ProgressEvent>();
    await follow(link, reader, run, states, lastProgress, {
      startAt,
      load,
      onProgress,
      progressInterval,
      signal,
    });
    const done = states.filter((s) => s.report !== undefined);
    const merging = [...done.map((s) => [s.name, s.report!] as const)];
    // An agent lost mid-run: what it had done by its last progress.
    for (const s of states) {
      const last = lastProgress.get(s.name);
      if (s.report !== undefined || last?.latencyHistogram === undefined) {
        continue;
      }
      s.partial = true;
      merging.push([s.name, partialReport(s, last, load, done[0]?.report)]);
    }
    if (merging.length === 0) {
      throw new Error(
        `no agent reported: ${
          states.map((s) => `${s.name} (${s.problem})`).join(", ")
        }`,
      );
    }
    const merged = mergeReports(
      merging.map(([, report]) => report),
      merging.map(([name]) => name),
    );
    return {
      ...merged,
      agents: states,
      degraded: done.length < states.length,
    };
  } finally {
    reader?.close();
    link.close();
  }
}

/**
 * `wanted` agents that are alive and speak this plan version, once there
 * are that many: spread over their machines (one from each host in turn),
 * by name within a host.
 */
async function waitForAgents(
  link: LoadLink,
  wanted: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<AgentInfo[]> {
  const deadline = Date.now() + timeoutMs;
  let seen: AgentInfo[] = [];
  while (true) {
    seen = await link.agents();
    const fit = seen.filter((a) => a.version === PLAN_VERSION);
    if (fit.length >= wanted) return spreadOverHosts(fit, wanted);
    if (Date.now() >= deadline || signal?.aborted) {
      const others = seen.filter((a) => a.version !== PLAN_VERSION);
      throw new Error(
        `${fit.length} of ${wanted} agents came within ${timeoutMs / 1000} s${
          fit.length > 0 ? ` (${fit.map((a) => a.name).join(", ")})` : ""
        }${
          others.length > 0
            ? `; refused for another plan version: ${
              others.map((a) => `${a.name} (${a.version})`).join(", ")
            }`
            : ""
        }`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Reads what the agents of `run` say until each has reported, refused, or
 * gone; stops them on `signal`.
 */
async function follow(
  link: LoadLink,
  reader: LoadLink,
  run: string,
  states: AgentPart[],
  lastProgress: Map<string, ProgressEvent>,
  context: {
    startAt: number;
    load: PlanOptions;
    onProgress: CoordinateLoadOptions["onProgress"];
    progressInterval: number;
    signal: AbortSignal | undefined;
  },
): Promise<void> {
  const { load, signal } = context;
  const byName = new Map(states.map((s) => [s.name, s]));
  const rates = new Map<string, number>();
  let after = "0";
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    link.stop(run).catch(() => {});
  };
  signal?.addEventListener("abort", stop, { once: true });
  // A run with a duration ends by then (plus a margin for the last round
  // trips, the reports and a Redis restart); one of a count, when every
  // agent has reported or gone.
  const deadline = load.duration === undefined
    ? Infinity
    : Date.now() + (context.startAt - await link.time()) +
      (load.warmup ?? 0) + load.duration + (load.timeout ?? 10_000) + 30_000;
  const silentSince = new Map<string, number>();
  const started = performance.now();
  let lastShown = started;
  try {
    const open = () =>
      states.filter((s) => s.report === undefined && !s.problem);
    while (open().length > 0) {
      if (Date.now() > deadline) {
        for (const s of open()) s.problem = "no report in time";
        break;
      }
      let heard: Awaited<ReturnType<LoadLink["heard"]>> = [];
      try {
        heard = await reader.heard(run, after, 250);
      } catch {
        // Redis is away: the agents keep their reports until it is back.
        await new Promise((resolve) => setTimeout(resolve, 250));
        continue;
      }
      for (const { id, event } of heard) {
        after = id;
        const state = byName.get(event.agent);
        if (state === undefined || state.report !== undefined) continue;
        if (event.kind === "progress") {
          lastProgress.set(state.name, event);
          state.roundTrips = event.roundTrips;
          state.errors = event.errors;
          rates.set(state.name, event.rate);
          state.problem = undefined;
        } else if (event.kind === "report") {
          const report = event.report as LoadReport;
          state.report = report;
          state.roundTrips = report.roundTrips;
          state.errors = report.connectErrors + report.closedBeforeEcho +
            report.mismatches + report.otherErrors;
          rates.delete(state.name);
        } else {
          state.problem = `refused: ${event.reason}`;
        }
      }
      // An agent without a heartbeat for ALIVE_MS has gone (seen twice,
      // GONE_MS apart, in case Redis restarted and lost the heartbeats).
      for (const s of open()) {
        let alive = true;
        try {
          alive = await link.alive(s.name);
        } catch {
          // Redis is away: nobody is judged.
        }
        if (alive) {
          silentSince.delete(s.name);
        } else if (!silentSince.has(s.name)) {
          silentSince.set(s.name, Date.now());
        } else if (Date.now() - silentSince.get(s.name)! > GONE_MS) {
          s.problem = "gone (no heartbeat)";
          rates.delete(s.name);
        }
      }
      const now = performance.now();
      if (
        context.onProgress !== undefined &&
        now - lastShown >= context.progressInterval
      ) {
        lastShown = now;
        context.onProgress({
          elapsedMs: now - started,
          roundTrips: states.reduce((n, s) => n + s.roundTrips, 0),
          rate: [...rates.values()].reduce((a, b) => a + b, 0),
          errors: states.reduce((n, s) => n + s.errors, 0),
          agents: states.filter((s) => !s.problem).length,
        });
      }
    }
  } finally {
    signal?.removeEventListener("abort", stop);
  }
  if (signal?.aborted) stop();
}
