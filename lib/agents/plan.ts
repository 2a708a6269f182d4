// Private: a load test spread over agents, free of I/O: the plan a
// coordinator sends (loadTest's options as JSON, of one version), and how
// one test splits among agents exactly, as k6's execution segments do: the
// parts' connections, round trips and rates add up to what was asked; and
// which agents take part, spread over their machines. Not exported from
// mod.ts.

import { optionError } from "../_helpers.ts";
import type { LoadTestOptions } from "../types.ts";

/** The plan format's version; an agent of another refuses the plan. */
export const PLAN_VERSION = 1;

/** loadTest's options that cross to an agent (no callbacks, no engine). */
export type PlanOptions = Omit<
  LoadTestOptions,
  "onProgress" | "progressInterval" | "signal" | "engine" | "nativeIo"
>;

/** What an agent is asked to run, and when. */
export interface LoadPlan {
  version: number;
  /** The run's id, which its reports name. */
  run: string;
  /** The agent it is for. */
  agent: string;
  /** The agent's part of the test, as JSON (see {@linkcode planJson}). */
  options: Record<string, unknown>;
  /** When to start, in milliseconds of Redis' clock (`TIME`). */
  startAt: number;
}

/** `options` as JSON: a message of bytes goes in base64. */
export function planJson(options: PlanOptions): Record<string, unknown> {
  const { message, ...rest } = options;
  return {
    ...rest,
    ...(message instanceof Uint8Array
      ? { messageBase64: btoa(String.fromCharCode(...message)) }
      : message === undefined
      ? {}
      : { message }),
  };
}

/** What {@linkcode planJson} made, back as options. */
export function planOptions(json: Record<string, unknown>): PlanOptions {
  const { messageBase64, ...rest } = json;
  if (typeof messageBase64 !== "string") return rest as PlanOptions;
  const text = atob(messageBase64);
  const message = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) message[i] = text.charCodeAt(i);
  return { ...rest, message } as PlanOptions;
}

/**
 * `total` split in parts weighted by `weights`, in whole numbers that add
 * up to `total`: each part its share rounded down, and what is left one
 * each to the parts that lost the most to rounding (the first on a tie).
 */
export function splitExactly(total: number, weights: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => total * w / sum);
  const parts = exact.map(Math.floor);
  let left = total - parts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i])
    .sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of order) {
    if (left <= 0) break;
    parts[i]++;
    left--;
  }
  return parts;
}

/**
 * The parts of a test of `options` for `agents` agents: connections split
 * as evenly as they go (the first get one more), and the round trips (a
 * `count`) and the `rate` in proportion to them, exactly. Everything else
 * (the message, the duration, `countPerConnection`) is each part's as it
 * is.
 *
 * @throws {RangeError} Fewer connections than agents, or a count or rate
 * too small to give each agent some.
 */
export function splitPlan(options: PlanOptions, agents: number): PlanOptions[] {
  const connections = options.connections ?? 1;
  if (connections < agents) {
    throw optionError(
      "connections",
      `${connections} cannot be split among ${agents} agents: give at least one connection each`,
    );
  }
  const each = splitExactly(connections, new Array(agents).fill(1));
  const counts = options.count === undefined || options.count === Infinity
    ? undefined
    : splitExactly(options.count, each);
  if (counts !== undefined && counts.some((c) => c === 0)) {
    throw optionError(
      "count",
      `${options.count} round trips cannot be split among ${agents} agents: give at least one each`,
    );
  }
  const { rate } = options;
  const rates = rate === undefined
    ? undefined
    : Number.isInteger(rate) && rate >= agents
    ? splitExactly(rate, each)
    : each.map((c) => rate * c / connections);
  return each.map((c, i) => ({
    ...options,
    connections: c,
    ...(counts === undefined ? {} : { count: counts[i] }),
    ...(rates === undefined ? {} : { rate: rates[i] }),
  }));
}

/**
 * `wanted` of `agents` (sorted by name), spread over their machines: one
 * from each host in turn (hosts in the order of their first agent by
 * name), so that the load leaves from as many machines as it can; the
 * picked ones by name.
 */
export function spreadOverHosts<A extends { name: string; host: string }>(
  agents: readonly A[],
  wanted: number,
): A[] {
  const byHost = new Map<string, A[]>();
  for (const agent of agents) {
    const list = byHost.get(agent.host) ?? [];
    list.push(agent);
    byHost.set(agent.host, list);
  }
  const queues = [...byHost.values()];
  const picked: A[] = [];
  for (let round = 0; picked.length < wanted; round++) {
    const before = picked.length;
    for (const queue of queues) {
      if (round < queue.length && picked.length < wanted) {
        picked.push(queue[round]);
      }
    }
    if (picked.length === before) break;
  }
  return picked.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}
