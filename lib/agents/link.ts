// Private: what load agents and their coordinator keep in Redis, and how
// they reach it: one place that names the keys. Under the key prefix K:
//
// - `K:load:agents`, a hash: each agent's name and what it says of itself
//   (plan version, engine, host); `K:load:alive:NAME` lives 5 s and each
//   agent renews its own every second;
// - `K:load:plans`, a stream of plans, each for one agent;
// - `K:load:run:RUN`, a stream of what the agents of run RUN say (progress
//   every second, then their report), and `K:load:run:RUN:stop`, where a
//   coordinator stops them. Both expire a day after the run.
//
// Not exported from mod.ts.

import type * as Redis from "npm:redis@^5.12.1";
import { importLazily } from "../_lazy.ts";
import { clientOptions, shownUrl } from "../relay/redis_bus.ts";

type Client = ReturnType<typeof Redis.createClient>;

/** Milliseconds an agent counts as alive after its last heartbeat. */
export const ALIVE_MS = 5000;
/** Milliseconds between an agent's heartbeats (and progress reports). */
export const BEAT_MS = 1000;
/** Seconds a run's streams are kept. */
const RUN_TTL_S = 86_400;

/** What an agent says of itself. */
export interface AgentInfo {
  name: string;
  version: number;
  engine: "default" | "native";
  host: string;
}

/** What an agent says of a run: progress, its report, or why it cannot. */
export type AgentEvent =
  | {
    kind: "progress";
    agent: string;
    elapsedMs: number;
    roundTrips: number;
    rate: number;
    errors: number;
    /** The latencies so far (see LoadProgress). */
    latencyHistogram?: string;
  }
  | { kind: "report"; agent: string; report: unknown }
  | { kind: "refused"; agent: string; reason: string };

/** One connection to Redis, with the keys of a prefix. */
export class LoadLink {
  readonly key: string;
  readonly url: string;
  #client: Client;
  #closed = false;

  private constructor(client: Client, url: string, key: string) {
    this.#client = client;
    this.url = url;
    this.key = key;
  }

  /**
   * Connects (retrying after a loss, forever, as Redis restarts).
   *
   * @throws {Error} Redis cannot be reached within `timeoutMs`: `Redis at
   * URL: why`.
   */
  static async open(
    url: string,
    key: string,
    timeoutMs = 5000,
  ): Promise<LoadLink> {
    const { createClient } = await importLazily<typeof Redis>(
      "npm:redis@^5.12.1",
    );
    const base = clientOptions(url);
    const client = createClient(
      {
        ...base,
        socket: {
          ...base?.socket,
          connectTimeout: timeoutMs,
          reconnectStrategy: (retries: number) =>
            Math.min(50 * 2 ** retries, 1000),
        },
      } as Parameters<typeof createClient>[0],
    );
    // The first failure is the answer; later ones are retried.
    let fail: (error: Error) => void = () => {};
    client.on("error", (error: Error) => fail(error));
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        client.connect(),
        new Promise((_, reject) => {
          fail = reject;
          timer = setTimeout(
            () => reject(new Error(`no answer within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      await client.ping();
    } catch (error) {
      client.destroy();
      throw new Error(`Redis at ${shownUrl(url)}: ${(error as Error).message}`);
    } finally {
      clearTimeout(timer);
      fail = () => {};
    }
    return new LoadLink(client, url, key);
  }

  /** A second connection, for blocking reads. */
  duplicate(): Promise<LoadLink> {
    return LoadLink.open(this.url, this.key);
  }

  /** Redis' clock, in milliseconds. */
  async time(): Promise<number> {
    const reply = await this.#client.time() as unknown;
    if (reply instanceof Date) return reply.getTime();
    const [seconds, micros] = reply as [string, string];
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  /** Says that `info`'s agent is here, for ALIVE_MS more. */
  async beat(info: AgentInfo): Promise<void> {
    await this.#client.hSet(
      `${this.key}:load:agents`,
      info.name,
      JSON.stringify(info),
    );
    await this.#client.set(`${this.key}:load:alive:${info.name}`, "1", {
      PX: ALIVE_MS,
    });
  }

  /** The agent `name` has gone: it is no longer listed. */
  async leave(name: string): Promise<void> {
    await this.#client.hDel(`${this.key}:load:agents`, name);
    await this.#client.del(`${this.key}:load:alive:${name}`);
  }

  /** The agents alive now, by name. */
  async agents(): Promise<AgentInfo[]> {
    const all = await this.#client.hGetAll(`${this.key}:load:agents`);
    const found: AgentInfo[] = [];
    for (const [name, text] of Object.entries(all)) {
      if (!await this.alive(name)) continue;
      try {
        found.push({ ...JSON.parse(text), name });
      } catch {
        // Not an agent's: skipped.
      }
    }
    return found.sort((a, b) => a.name < b.name ? -1 : 1);
  }

  /** Whether the agent `name` beat within ALIVE_MS. */
  async alive(name: string): Promise<boolean> {
    return await this.#client.exists(`${this.key}:load:alive:${name}`) === 1;
  }

  /** The id of the plans stream's last entry (where an agent starts). */
  async lastPlanId(): Promise<string> {
    const [last] = await this.#client.xRevRange(
      `${this.key}:load:plans`,
      "+",
      "-",
      { COUNT: 1 },
    );
    return last?.id ?? "0";
  }

  /** Sends a plan to its agent. */
  async sendPlan(plan: unknown, agent: string): Promise<void> {
    await this.#client.xAdd(
      `${this.key}:load:plans`,
      "*",
      { agent, plan: JSON.stringify(plan) },
      { TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold: 1000 } },
    );
  }

  /**
   * The plans after `after`, waiting up to `blockMs` for one: each with its
   * id, the agent it is for, and its JSON.
   */
  async plans(
    after: string,
    blockMs: number,
  ): Promise<{ id: string; agent: string; plan: string }[]> {
    const reply = await this.#client.xRead(
      { key: `${this.key}:load:plans`, id: after },
      { BLOCK: blockMs, COUNT: 100 },
    );
    const found: { id: string; agent: string; plan: string }[] = [];
    // deno-lint-ignore no-explicit-any
    for (const stream of (reply ?? []) as any[]) {
      for (const { id, message } of stream.messages) {
        found.push({ id, agent: message.agent, plan: message.plan });
      }
    }
    return found;
  }

  /** Says `event` in run `run`'s stream. */
  async say(run: string, event: AgentEvent): Promise<void> {
    const key = `${this.key}:load:run:${run}`;
    await this.#client.xAdd(key, "*", { event: JSON.stringify(event) });
    await this.#client.expire(key, RUN_TTL_S);
  }

  /** What the agents said in run `run` after `after`, waiting `blockMs`. */
  async heard(
    run: string,
    after: string,
    blockMs: number,
  ): Promise<{ id: string; event: AgentEvent }[]> {
    const reply = await this.#client.xRead(
      { key: `${this.key}:load:run:${run}`, id: after },
      { BLOCK: blockMs, COUNT: 1000 },
    );
    const found: { id: string; event: AgentEvent }[] = [];
    // deno-lint-ignore no-explicit-any
    for (const stream of (reply ?? []) as any[]) {
      for (const { id, message } of stream.messages) {
        try {
          found.push({ id, event: JSON.parse(message.event) });
        } catch {
          // Not an agent's event: skipped.
        }
      }
    }
    return found;
  }

  /** Stops run `run` on every agent. */
  async stop(run: string): Promise<void> {
    const key = `${this.key}:load:run:${run}:stop`;
    await this.#client.set(key, "1", { EX: RUN_TTL_S });
  }

  /** Whether run `run` was stopped. */
  async stopped(run: string): Promise<boolean> {
    return await this.#client.exists(`${this.key}:load:run:${run}:stop`) ===
      1;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
  }
}
