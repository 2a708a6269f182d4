// Private: the relay's bus through Redis, so that relays on several
// instances (processes or machines) apply one order of events: every event
// is appended to a Redis stream (XADD), and every instance reads every entry
// (XREAD from the last id it applied) and applies it, its own included, so
// that each instance's rules (names, rooms, history) come out the same.
// node-redis (npm:redis) talks to Redis. Not exported from mod.ts.
//
// Guarantees:
// - one order: the stream's;
// - exactly once: each entry carries its instance and a sequence number, and
//   an entry already applied (a publish retried after a lost reply) is
//   skipped;
// - no ghosts: an instance refreshes a key with a time to live, and any
//   instance that sees another's key gone appends that it is gone; an
//   orderly stop appends it at once.

import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import type * as Redis from "npm:redis@^5.12.1";
import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY } from "../_helpers.ts";
import { importLazily } from "../_lazy.ts";
import type { ClusterStatus } from "../types.ts";
import type { Bus, Member, RelayEvent, RelayState, Replica } from "./relay.ts";
import {
  decodeEvents,
  encodeEvents,
  Kind,
  type WireEvent,
} from "./redis_entry.ts";
import { assertInteger, optionError } from "../_helpers.ts";
import type { ServeEchoOptions } from "../types.ts";

const logger = getLogger([LOG_CATEGORY, "redis"]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

/** How often an instance says it is alive, and how long that holds. */
export const HEARTBEAT_MS = 3000;
export const ALIVE_MS = 10_000;
/** The stream keeps about this many entries (`XADD … MAXLEN ~`). */
export const STREAM_LENGTH = 100_000;
/**
 * Entries between two snapshots an instance writes of the cluster's state,
 * so that one that starts after the stream has been trimmed loads the
 * snapshot and reads on from it: well under {@linkcode STREAM_LENGTH}.
 */
export const SNAPSHOT_EVERY = 10_000;
/** Most lines an instance holds, unsent, while Redis is away. */
export const HOLD_LIMIT = 10_000;
/** Entries read at a time, and how long a read waits for new ones. */
const READ_COUNT = 1000;
const READ_BLOCK_MS = 1000;

/** Options of {@linkcode RedisBus.connect}. */
export interface RedisBusOptions {
  /** `redis://`, `rediss://` or `unix:///path/to/redis.sock`. */
  url: string;
  /** Prefix of every key, so that several clusters share one Redis. */
  key: string;
  /** Most lines held, unsent, while Redis is away. */
  holdLimit: number;
  /** @default {STREAM_LENGTH} */
  streamLength?: number;
  /** @default {SNAPSHOT_EVERY} */
  snapshotEvery?: number;
}

/** A snapshot: the state once the stream's entries up to `id` applied. */
interface Snapshot {
  id: string;
  /** The next sequence number to apply, by instance. */
  next: [string, number][];
  /** Every member's peer, by key (`instance/member`). */
  peers: Record<string, string>;
  relay: RelayState;
}

/** Whether stream id `a` comes before `b`. */
function before(a: string, b: string): boolean {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am < bm || (am === bm && as < bs);
}

type Client = ReturnType<typeof Redis.createClient>;

/** `url` as it may be shown: its password, if any, is `***`. */
export function shownUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/, "$1:***@");
}

/** Connection options for node-redis from our URL forms. */
export function clientOptions(
  url: string,
): Parameters<typeof Redis.createClient>[0] {
  if (url.startsWith("unix://")) {
    return {
      socket: { path: decodeURIComponent(new URL(url).pathname), tls: false },
    };
  }
  return { url };
}

/** The bus of one instance in a cluster that shares a Redis stream. */
export class RedisBus implements Bus {
  deliver: ((event: RelayEvent) => void) | undefined;
  replica: Replica | undefined;
  /** This instance, as its entries name it. */
  readonly instance: string = crypto.randomUUID().slice(0, 12);
  #options: RedisBusOptions;
  // Set by #connect: node-redis is loaded only by a server with `redis`.
  #writer!: Client;
  #reader!: ReturnType<Client["withTypeMapping"]>;
  #stream: string;
  /** The sequence number of this instance's last entry. */
  #seq = 0;
  /** Lines published and not yet acknowledged by Redis. */
  #held = 0;
  /** Events published in this turn, for the next entry, and their lines' callbacks. */
  #turn: WireEvent[] = [];
  #turnDelivered: ((() => void) | undefined)[] = [];
  #turnLines = 0;
  #flushing = false;
  #ids = new WeakMap<Member, number>();
  #locals = new Map<number, Member>();
  #nextMember = 1;
  /** Other instances' members, by `instance/member`, and back. */
  #standIns = new Map<string, Member>();
  #standInKeys = new WeakMap<Member, string>();
  /** Entries applied since the last snapshot this instance wrote. */
  #sinceSnapshot = 0;
  /** The next sequence number to apply, by instance. */
  #next = new Map<string, number>();
  /** Entries that came ahead of an earlier one of theirs, by instance. */
  #early = new Map<string, Map<number, Record<string, Buffer>>>();
  /** By entry of this instance: its lines' callbacks, in order. */
  #delivered = new Map<number, ((() => void) | undefined)[]>();
  #lastId = "0";
  #closed = false;
  /**
   * The clients (writer, reader) without a connection now: Redis is away
   * from the first one's loss until every one is back, one outage.
   */
  #down = new Set<Client>();
  #downSince = 0;
  #reading: Promise<void> = Promise.resolve();
  /** The last read's error, said once; empty once reads work. */
  #readError = "";
  #heartbeat: ReturnType<typeof setInterval> | undefined;

  /** Resolves once connected; rejects if Redis cannot be reached. */
  readonly ready: Promise<void>;
  #readerClient!: Client;
  /** Entries made before the connection was up, in order, with their lines. */
  #backlog: [Record<string, string | Buffer>, number][] | undefined = [];

  /**
   * Connects to Redis and starts reading the stream from its start (its
   * retained entries rebuild the cluster's state here). Until `ready`,
   * what is published waits here, in order.
   */
  constructor(options: RedisBusOptions, timeoutMs = 5000) {
    this.#options = options;
    this.#stream = `${options.key}:stream`;
    this.ready = this.#connect(timeoutMs);
    this.ready.catch(() => {}); // Whoever awaits it sees the error.
  }

  async #connect(timeoutMs: number): Promise<void> {
    const url = shownUrl(this.#options.url);
    const { createClient, RESP_TYPES } = await importLazily<typeof Redis>(
      "npm:redis@^5.12.1",
    );
    const base = clientOptions(this.#options.url);
    const config = {
      ...base,
      socket: {
        ...base?.socket,
        connectTimeout: timeoutMs,
        reconnectStrategy: (retries: number) =>
          Math.min(50 * 2 ** retries, 2000),
      },
    } as Parameters<typeof createClient>[0];
    this.#writer = createClient(config);
    this.#readerClient = createClient(config);
    this.#reader = this.#readerClient.withTypeMapping({
      [RESP_TYPES.BLOB_STRING]: Buffer,
    });
    const clients = [this.#writer, this.#readerClient];
    // One set of listeners for the client's life: removing one with off()
    // was seen to silence node-redis's later events under Deno.
    let connecting = true;
    let fail: (error: Error) => void = () => {};
    for (const client of clients) {
      client.on("error", (error: Error) => {
        if (connecting) fail(error);
        else this.#outage(client, error.message);
      });
      // A drop that the first reconnect repairs is an outage too.
      client.on("reconnecting", () => {
        if (!connecting) this.#outage(client, "connection lost");
      });
      client.on("ready", () => this.#recovered(client));
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.all(clients.map((c) => c.connect())),
        new Promise((_, reject) => {
          // The first failure is the answer: no waiting for retries.
          fail = (error) =>
            reject(new Error(`Redis at ${url}: ${error.message}`));
          timer = setTimeout(() =>
            reject(
              new Error(
                `Redis at ${url} did not answer within ${timeoutMs} ms`,
              ),
            ), timeoutMs);
        }),
      ]);
      // Connected is not usable: a password missing, a command the user may
      // not run, or the key taken by something else fail here, not later.
      const type = await this.#writer.type(this.#stream);
      if (type !== "stream" && type !== "none") {
        throw new Error(
          `${this.#stream} is a ${type}, not a stream (choose another key prefix)`,
        );
      }
      await this.#alive();
      await this.#loadSnapshot();
    } catch (error) {
      this.#closed = true;
      for (const client of clients) client.destroy();
      const { message } = error as Error;
      throw message.startsWith("Redis at ")
        ? error
        : new Error(`Redis at ${url}: ${message}`);
    } finally {
      clearTimeout(timer);
      connecting = false;
    }
    const backlog = this.#backlog ?? [];
    this.#backlog = undefined;
    for (const [fields, lines] of backlog) this.#append(fields, lines);
    this.#reading = this.#readLoop();
    this.#heartbeat = setInterval(() => this.#beat(), HEARTBEAT_MS);
  }

  /**
   * Adds `event` to this turn's entry: the events published in one turn of
   * the event loop (a burst of lines from many clients) go in one entry.
   */
  publish(event: RelayEvent): boolean {
    switch (event.t) {
      case "join": {
        const id = this.#nextMember++;
        this.#ids.set(event.member, id);
        this.#locals.set(id, event.member);
        const { peer, certName } = event.member;
        this.#add(
          Kind.Join,
          id,
          encoder.encode(
            certName === undefined ? peer : `${peer}\0${certName}`,
          ),
        );
        break;
      }
      case "leave":
        this.#add(Kind.Leave, this.#ids.get(event.member) ?? 0, EMPTY);
        break;
      case "line":
        if (this.#held >= this.#options.holdLimit) return false;
        this.#held++;
        this.#turnLines++;
        this.#turnDelivered.push(event.delivered);
        this.#add(Kind.Line, this.#ids.get(event.member) ?? 0, event.line);
        break;
      case "announce":
        this.#add(Kind.Announce, 0, encoder.encode(event.text));
        break;
    }
    return true;
  }

  #add(kind: Kind, member: number, bytes: Uint8Array): void {
    this.#turn.push({ kind, member, bytes });
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(() => this.#flush());
  }

  /** Makes this turn's events one entry, and appends it. */
  #flush(): Promise<void> {
    this.#flushing = false;
    if (this.#turn.length === 0) return Promise.resolve();
    const seq = ++this.#seq;
    if (this.#turnLines > 0) this.#delivered.set(seq, this.#turnDelivered);
    const bytes = encodeEvents(this.#turn);
    const fields = {
      i: this.instance,
      s: String(seq),
      e: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length),
    };
    const lines = this.#turnLines;
    this.#turn = [];
    this.#turnDelivered = [];
    this.#turnLines = 0;
    return this.#append(fields, lines);
  }

  /**
   * Appends an entry; its lines count as held until Redis has it. Resolves
   * once this first try is done.
   */
  #append(
    fields: Record<string, string | Buffer>,
    lines: number,
  ): Promise<void> {
    if (this.#backlog !== undefined) {
      this.#backlog.push([fields, lines]);
      return Promise.resolve();
    }
    return this.#writer.xAdd(
      this.#stream,
      "*",
      fields as Record<string, string>,
      {
        TRIM: {
          strategy: "MAXLEN",
          strategyModifier: "~",
          threshold: this.#options.streamLength ?? STREAM_LENGTH,
        },
      },
    ).then(
      () => {
        this.#held -= lines;
      },
      (error: Error) => {
        // The client reconnects and retries what it had queued; an entry
        // lost with its socket is appended again (a duplicate is skipped).
        if (this.#closed) return;
        logger.debug("Redis append failed, again: {error}", {
          error: error.message,
        });
        setTimeout(() => this.#append(fields, lines), 100);
      },
    );
  }

  /** Says this instance is alive, for {@linkcode ALIVE_MS}. */
  async #alive(): Promise<void> {
    await this.#writer.set(
      `${this.#options.key}:alive:${this.instance}`,
      "1",
      { PX: ALIVE_MS },
    );
  }

  /** Says this instance is alive, and appends that silent ones are gone. */
  async #beat(): Promise<void> {
    if (this.#closed) return;
    const { key } = this.#options;
    try {
      await this.#alive();
      for (const instance of this.#next.keys()) {
        if (instance === this.instance) continue;
        const alive = await this.#writer.exists(`${key}:alive:${instance}`);
        if (alive === 0) this.#add(Kind.Gone, 0, encoder.encode(instance));
      }
    } catch {
      // Redis is away: the outage is logged once, elsewhere.
    }
  }

  async #readLoop(): Promise<void> {
    while (!this.#closed) {
      let reply;
      try {
        reply = await this.#reader.xRead(
          { key: this.#stream, id: this.#lastId },
          { BLOCK: READ_BLOCK_MS, COUNT: READ_COUNT },
        );
      } catch (error) {
        if (this.#closed) return;
        // A lost connection is an outage, logged once elsewhere; Redis
        // refusing the read (an ACL changed, the key replaced) is said once.
        const { message } = error as Error;
        if (this.#down.size === 0 && message !== this.#readError) {
          logger.error("Redis refuses to be read: {error}", { error: message });
        }
        this.#readError = message;
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      this.#readError = "";
      // deno-lint-ignore no-explicit-any
      for (const stream of (reply ?? []) as any[]) {
        for (const { id, message } of stream.messages) {
          this.#lastId = id.toString();
          this.#take(message as Record<string, Buffer>);
          this.#sinceSnapshot++;
        }
      }
      const every = this.#options.snapshotEvery ?? SNAPSHOT_EVERY;
      if (this.#sinceSnapshot >= every) await this.#saveSnapshot();
      // What was read is delivered before more is read: the relay's queue
      // holds one read's lines at most, and Redis keeps the rest.
      else if (reply !== null) await this.replica?.idle();
    }
  }

  /**
   * Takes one entry of the stream: each instance's entries are applied in
   * their sequence, once. An entry appended again after its reply was lost
   * is skipped; one that a retry put ahead of an earlier one waits for it.
   */
  #take(entry: Record<string, Buffer>): void {
    const instance = entry.i?.toString() ?? "";
    const seq = Number(entry.s?.toString());
    let next = this.#next.get(instance) ?? seq;
    if (seq < next) return; // Applied already.
    let early = this.#early.get(instance);
    if (early === undefined) this.#early.set(instance, early = new Map());
    early.set(seq, entry);
    while (early.has(next)) {
      const ready = early.get(next)!;
      early.delete(next);
      this.#next.set(instance, ++next);
      this.#apply(instance, next - 1, ready);
    }
  }

  /** Applies one entry's events, in its instance's order. */
  #apply(instance: string, seq: number, entry: Record<string, Buffer>): void {
    const self = instance === this.instance;
    const callbacks = self ? this.#delivered.get(seq) : undefined;
    if (callbacks) this.#delivered.delete(seq);
    let lines = 0;
    let events: WireEvent[];
    try {
      events = entry.e ? decodeEvents(entry.e) : [];
    } catch (error) {
      logger.error("Skipping a stream entry of {instance}: {error}", {
        instance,
        error: (error as Error).message,
      });
      for (const delivered of callbacks ?? []) delivered?.();
      return;
    }
    for (const { kind, member: id, bytes } of events) {
      const key = `${instance}/${id}`;
      switch (kind) {
        case Kind.Join: {
          const m = self
            ? this.#locals.get(id)
            : this.#standIn(instance, id, ...joined(bytes));
          if (m) this.deliver?.({ t: "join", member: m });
          break;
        }
        case Kind.Leave: {
          const m = self ? this.#locals.get(id) : this.#standIns.get(key);
          if (m === undefined) break;
          if (self) this.#locals.delete(id);
          else this.#standIns.delete(key);
          this.deliver?.({ t: "leave", member: m });
          break;
        }
        case Kind.Line: {
          const delivered = callbacks?.[lines++];
          // A line of a member that left already, or of one this instance
          // never saw join (its join trimmed away before a snapshot).
          const m = self ? this.#locals.get(id) : this.#standIns.get(key);
          if (m === undefined) {
            delivered?.();
            break;
          }
          this.deliver?.({
            t: "line",
            member: m,
            line: bytes.slice(),
            delivered,
          });
          break;
        }
        case Kind.Announce:
          this.deliver?.({ t: "announce", text: decoder.decode(bytes) });
          break;
        case Kind.Gone:
          this.#gone(decoder.decode(bytes));
          break;
      }
    }
  }

  /**
   * Writes the cluster's state as of the last entry applied, once the relay
   * has delivered everything (nothing is applied meanwhile: this is the read
   * loop). Every instance writes one every `snapshotEvery` entries; the last
   * written wins, and any is good while the stream still holds the entries
   * after it. Not while an instance's entries wait for an earlier one.
   */
  async #saveSnapshot(): Promise<void> {
    if (this.replica === undefined) return;
    for (const early of this.#early.values()) if (early.size > 0) return;
    await this.replica.idle();
    const peers: Record<string, string> = {};
    const relay = this.replica.save((m) => {
      const key = this.#keyOf(m);
      peers[key] = m.peer;
      return key;
    });
    const snapshot: Snapshot = {
      id: this.#lastId,
      next: [...this.#next],
      peers,
      relay,
    };
    try {
      await this.#writer.set(
        `${this.#options.key}:snapshot`,
        JSON.stringify(snapshot),
      );
      this.#sinceSnapshot = 0;
    } catch {
      // Redis is away: the next batch tries again.
    }
  }

  /** A member's key in snapshots: `instance/member`. */
  #keyOf(m: Member): string {
    const local = this.#ids.get(m);
    return local === undefined
      ? this.#standInKeys.get(m)!
      : `${this.instance}/${local}`;
  }

  /**
   * Starts from the last snapshot, if the stream still holds every entry
   * after it; otherwise from the stream's start, which is whole unless it
   * has been trimmed past the snapshot (then said once).
   */
  async #loadSnapshot(): Promise<void> {
    const text = await this.#writer.get(`${this.#options.key}:snapshot`);
    if (text === null || this.replica === undefined) return;
    const snapshot = JSON.parse(text) as Snapshot;
    const [first] = await this.#writer.xRange(this.#stream, "-", "+", {
      COUNT: 1,
    });
    if (first === undefined || before(snapshot.id, first.id)) {
      // The stream no longer has what came after the snapshot, or is new.
      if (first !== undefined) {
        logger.warning(
          "The cluster's snapshot ({snapshot}) is older than the stream's first entry ({first}): starting from that entry, with what the stream still holds",
          { snapshot: snapshot.id, first: first.id },
        );
      }
      return;
    }
    this.#next = new Map(snapshot.next);
    this.replica.load(snapshot.relay, (key) => {
      const slash = key.indexOf("/");
      return this.#standIn(
        key.slice(0, slash),
        key.slice(slash + 1),
        snapshot.peers[key] ?? "",
      );
    });
    this.#lastId = snapshot.id;
  }

  /** Another instance's member, as a stand-in whose lines go nowhere here. */
  #standIn(
    instance: string,
    id: string | number,
    peer: string,
    certName?: string,
  ): Member {
    const key = `${instance}/${id}`;
    let m = this.#standIns.get(key);
    if (m === undefined) {
      m = {
        peer,
        certName,
        name: "",
        room: "",
        quitting: false,
        // Its own instance delivers its lines.
        out: { post: () => true, seal() {} },
        dropQueueFull() {},
      };
      this.#standIns.set(key, m);
      this.#standInKeys.set(m, key);
    }
    return m;
  }

  /** An instance is gone: its members leave, everywhere at once. */
  #gone(instance: string): void {
    if (instance === this.instance) return;
    this.#next.delete(instance);
    this.#early.delete(instance);
    for (const [key, m] of this.#standIns) {
      if (!key.startsWith(`${instance}/`)) continue;
      this.#standIns.delete(key);
      this.deliver?.({ t: "leave", member: m });
    }
  }

  /** The link now: up, lines held, and how far behind the stream. */
  async status(): Promise<ClusterStatus> {
    let lagSeconds: number | undefined;
    if (this.#down.size === 0 && this.#backlog === undefined) {
      try {
        const [last] = await this.#writer.xRevRange(this.#stream, "+", "-", {
          COUNT: 1,
        });
        lagSeconds = last === undefined || last.id === this.#lastId
          ? 0
          : Math.max(0, idMs(last.id) - idMs(this.#lastId)) / 1000;
      } catch {
        // Redis went away meanwhile.
      }
    }
    return {
      up: lagSeconds !== undefined,
      heldLines: this.#held,
      lagSeconds,
    };
  }

  #outage(client: Client, reason: string): void {
    if (this.#closed || this.#down.has(client)) return;
    this.#down.add(client);
    if (this.#down.size > 1) return; // The same outage.
    this.#downSince = Date.now();
    logger.warning(
      "Redis unreachable ({error}): holding lines, up to {limit}, until it is back",
      { error: reason, limit: this.#options.holdLimit },
    );
  }

  #recovered(client: Client): void {
    if (!this.#down.delete(client) || this.#down.size > 0) return;
    logger.info("Redis is back after {ms} ms", {
      ms: Date.now() - this.#downSince,
    });
  }

  /**
   * Leaves the cluster: appends that this instance is gone (its members
   * disappear everywhere at once), stops reading, and disconnects.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.ready.catch(() => {});
    if (this.#closed) return;
    clearInterval(this.#heartbeat);
    // This turn's events, and the goodbye, in the last entry.
    this.#add(Kind.Gone, 0, encoder.encode(this.instance));
    try {
      await this.#flush();
      await this.#writer.del(`${this.#options.key}:alive:${this.instance}`);
    } catch {
      // Redis is away: the others find this instance gone by its key.
    }
    this.#closed = true;
    this.#writer.destroy();
    this.#readerClient.destroy();
    await this.#reading;
  }
}

/** The milliseconds part of a stream entry's id (`ms-seq`). */
function idMs(id: string): number {
  return Number(id.split("-")[0]);
}

/** Where the relays of several instances meet: serveEcho's `redis`. */
export interface RedisConfig {
  url: string;
  key: string;
  holdLimit: number;
}

/** The shared Redis, checked; `undefined` without one. */
export function redisConfig(
  options: Pick<ServeEchoOptions, "redis" | "redisKey" | "redisHold">,
  mode: string,
): RedisConfig | undefined {
  const { redis, redisKey = "tcp-echo", redisHold = HOLD_LIMIT } = options;
  if (redis === undefined) {
    for (const name of ["redisKey", "redisHold"] as const) {
      if (options[name] !== undefined) {
        throw optionError(name, "needs redis", TypeError);
      }
    }
    return undefined;
  }
  if (mode !== "broadcast" && mode !== "chat") {
    throw optionError("redis", "only broadcast and chat mode span instances");
  }
  if (!/^(rediss?:\/\/|unix:\/\/\/)/.test(redis)) {
    throw optionError(
      "redis",
      `must be a redis://, rediss:// or unix:/// URL, got ${shownUrl(redis)}`,
    );
  }
  if (redisKey === "" || /\s/.test(redisKey)) {
    throw optionError("redisKey", "must be a word without spaces", TypeError);
  }
  assertInteger("redisHold", redisHold, 1, 1_000_000);
  return { url: redis, key: redisKey, holdLimit: redisHold };
}

/** A join's bytes: its peer, and the name its certificate gives it. */
function joined(bytes: Uint8Array): [string, string?] {
  const [peer, certName] = decoder.decode(bytes).split("\0");
  return certName === undefined ? [peer] : [peer, certName];
}
