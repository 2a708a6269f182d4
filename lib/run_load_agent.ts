import { hostname as osHostname } from "node:os";
import { loadTest, type LoadTestOptions } from "./load.ts";
import { optionError } from "./_helpers.ts";
import { addressList } from "./rules/cidr.ts";
import { type AgentInfo, BEAT_MS, LoadLink } from "./agents/link.ts";
import { type LoadPlan, PLAN_VERSION, planOptions } from "./agents/plan.ts";

/** Options for {@linkcode runLoadAgent}. */
export interface LoadAgentOptions {
  /** The Redis that carries the plans: `redis://`, `rediss://`, `unix://`. */
  redis: string;
  /**
   * The prefix of every key, as the coordinator's (and a server's
   * `redisKey`).
   *
   * @default {"tcp-echo"}
   */
  redisKey?: string;
  /**
   * This agent's name, unique among the agents of that Redis.
   *
   * @default {`${hostname}-${pid}`}
   */
  name?: string;
  /** The engine the agent runs its part with (see loadTest's `engine`). */
  engine?: LoadTestOptions["engine"];
  /** With `engine: "native"`, how it drives its sockets. */
  nativeIo?: LoadTestOptions["nativeIo"];
  /**
   * This machine's source addresses for every run (see loadTest's
   * `sourceAddresses`), instead of any the plan names.
   */
  sourceAddresses?: readonly string[];
  /**
   * The addresses (CIDR blocks or addresses) a plan may aim at; a plan for
   * any other target, or for a Unix socket, is refused. Anyone who can
   * write to the Redis can otherwise make the agent connect anywhere it
   * can reach.
   */
  allow?: readonly string[];
  /**
   * This machine's clock in milliseconds, used only for how long to wait:
   * a run starts when Redis' clock (`TIME`) says, whatever this one says.
   *
   * @default {performance.now}
   */
  now?: () => number;
  /** Called as runs start and end, for a log. */
  onRun?: (event: LoadAgentEvent) => void;
}

/** What a {@linkcode LoadAgent} tells of its runs. */
export type LoadAgentEvent =
  | { kind: "start"; run: string; connections: number; lateMs: number }
  | { kind: "end"; run: string; roundTrips: number; errors: number }
  | { kind: "refused"; run: string; reason: string };

/** A running load agent. */
export interface LoadAgent extends AsyncDisposable {
  /** Its name, as its reports say it. */
  readonly name: string;
  /** Resolves once it has stopped (after `close()`). */
  readonly finished: Promise<void>;
  /** Stops waiting for plans (and the run under way), and leaves Redis. */
  close(): Promise<void>;
}

/**
 * Runs a load agent: it says it is there on a Redis, waits for a plan that
 * a coordinator ({@linkcode loadTest} with `agents`) sends it, runs its part
 * of the test with its own engine at the time Redis' clock says, reports
 * its progress every second and then its report, and waits for the next.
 *
 * @example An agent, until it is closed
 * ```ts ignore
 * import { runLoadAgent } from "@tcp-echo/tcp-echo";
 *
 * await using agent = await runLoadAgent({ redis: "redis://127.0.0.1:6379" });
 * await agent.finished;
 * ```
 *
 * @throws {Error} Redis cannot be reached: `Redis at URL: why`.
 * @throws {RangeError} An `allow` entry is not an address or CIDR block.
 */
export async function runLoadAgent(
  options: LoadAgentOptions,
): Promise<LoadAgent> {
  const {
    redisKey = "tcp-echo",
    name = `${osHostname()}-${Deno.pid}`,
    engine = "default",
    now = () => performance.now(),
  } = options;
  let allow: ReturnType<typeof addressList> | undefined;
  try {
    allow = options.allow && addressList(options.allow);
  } catch (error) {
    throw optionError("allow", (error as Error).message);
  }
  const link = await LoadLink.open(options.redis, redisKey);
  let reader: LoadLink;
  try {
    reader = await link.duplicate();
  } catch (error) {
    link.close();
    throw error;
  }
  const info: AgentInfo = {
    name,
    version: PLAN_VERSION,
    engine,
    host: osHostname(),
  };
  let closed = false;
  let current: AbortController | undefined;
  const beat = () => link.beat(info).catch(() => {});
  await link.beat(info);
  const beating = setInterval(beat, BEAT_MS);
  const say = async (run: string, event: Parameters<LoadLink["say"]>[1]) => {
    // Redis may be restarting: the report waits for it (a minute at most).
    for (let tries = 0; tries < 240 && !closed; tries++) {
      try {
        return await link.say(run, event);
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  };

  /** Why `plan` may not run here, if it may not. */
  const refusal = (plan: LoadPlan): string | undefined => {
    if (plan.version !== PLAN_VERSION) {
      return `plan version ${plan.version}, but agent ${name} runs version ${PLAN_VERSION}: run the same version of tcp-echo on both`;
    }
    if (allow === undefined) return undefined;
    const target = plan.options as { hostname?: string; path?: string };
    if (target.path !== undefined) {
      return `agent ${name} allows ${
        allow.entries.join(", ")
      } only, not a Unix socket`;
    }
    const host = target.hostname ?? "127.0.0.1";
    if (allow.match(host) === undefined) {
      return `agent ${name} allows ${
        allow.entries.join(", ")
      } only, not ${host}`;
    }
    return undefined;
  };

  const runPlan = async (plan: LoadPlan) => {
    const { run } = plan;
    const why = refusal(plan);
    if (why !== undefined) {
      options.onRun?.({ kind: "refused", run, reason: why });
      return await say(run, { kind: "refused", agent: name, reason: why });
    }
    // When to start, by Redis' clock: only durations of this one count.
    const redisNow = await link.time();
    const startLocal = now() + (plan.startAt - redisNow);
    const stop = new AbortController();
    current = stop;
    const watch = setInterval(() => {
      link.stopped(run).then((yes) => yes && stop.abort(), () => {});
    }, 250);
    try {
      while (now() < startLocal && !stop.signal.aborted) {
        await new Promise((resolve) =>
          setTimeout(resolve, Math.min(50, startLocal - now()))
        );
      }
      if (stop.signal.aborted) return;
      options.onRun?.({
        kind: "start",
        run,
        connections: Number(plan.options.connections ?? 1),
        lateMs: Math.max(0, now() - startLocal),
      });
      let report;
      try {
        report = await loadTest({
          ...planOptions(plan.options),
          engine,
          nativeIo: options.nativeIo,
          ...(options.sourceAddresses === undefined
            ? {}
            : { sourceAddresses: options.sourceAddresses }),
          signal: stop.signal,
          progressInterval: BEAT_MS,
          progressHistogram: true,
          onProgress: (p) => {
            link.say(run, {
              kind: "progress",
              agent: name,
              elapsedMs: p.elapsedMs,
              roundTrips: p.roundTrips,
              rate: p.rate,
              errors: p.errors,
              latencyHistogram: p.latencyHistogram,
            }).catch(() => {});
          },
        });
      } catch (error) {
        const reason = (error as Error).message;
        options.onRun?.({ kind: "refused", run, reason });
        return await say(run, { kind: "refused", agent: name, reason });
      }
      await say(run, { kind: "report", agent: name, report });
      options.onRun?.({
        kind: "end",
        run,
        roundTrips: report.roundTrips,
        errors: report.connectErrors + report.closedBeforeEcho +
          report.mismatches + report.otherErrors,
      });
    } finally {
      clearInterval(watch);
      current = undefined;
    }
  };

  const finished = (async () => {
    let after = await reader.lastPlanId().catch(() => "$");
    while (!closed) {
      let plans;
      try {
        plans = await reader.plans(after, 1000);
      } catch {
        if (closed) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
        continue;
      }
      for (const { id, agent, plan } of plans) {
        after = id;
        if (agent !== name || closed) continue;
        let parsed: LoadPlan;
        try {
          parsed = JSON.parse(plan);
        } catch {
          continue;
        }
        await runPlan(parsed);
      }
    }
  })();

  const close = async () => {
    if (closed) return;
    closed = true;
    current?.abort();
    clearInterval(beating);
    await link.leave(name).catch(() => {});
    reader.close();
    await finished.catch(() => {});
    link.close();
  };
  return {
    name,
    finished,
    close,
    [Symbol.asyncDispose]: close,
  };
}
