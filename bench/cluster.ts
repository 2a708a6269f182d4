// Private to `deno task bench`: broadcast across instances through Redis
// against one instance alone, with the same 30 clients.
//
// Each client sends 32-byte lines `C SEQ xxx…` and, in broadcast mode,
// every client (the sender too) gets every line. Two phases on the same
// clients:
//
// - saturation: each client keeps up to WINDOW of its own lines in flight
//   (sent, not yet back to itself): lines per second delivered to all 30
//   clients, and the latency from the send to the last receiver;
// - paced: 1,000 lines a second in all (one per client every 30 ms): the
//   same latency when nothing queues.
//
// Every receiver checks that each sender's lines come once and in order,
// and all receivers must end with the same digest of what they got in
// what order (one order for everyone). Neither the servers nor Redis are
// pinned to a CPU: a cluster is meant to spread over cores (and machines),
// and on one core three instances and Redis only share its time; their CPU
// per line says what each costs.

import * as hdr from "npm:hdr-histogram-js@^3.0.1";
import { startRedis, type TestRedis } from "../tests/_redis.ts";
import {
  cpuMs,
  DENO,
  fmt,
  LOCK,
  markdown,
  ROOT,
  type Server,
  start,
} from "./_harness.ts";

/** The clients, spread evenly over the instances. */
export const CLUSTER_CLIENTS = 30;
/** A client's own lines in flight at saturation. */
const WINDOW = 8;
/** The paced phase's lines per second, over all clients. */
const PACED_RATE = 1000;
const LINE_BYTES = 32;
/** Ring size of the per-sender bookkeeping (a power of two). */
const RING = 1 << 16;

/** What a layout measured. */
export interface ClusterCell {
  /** Lines a second delivered to every client, at saturation. */
  value: number;
  /** Send to last receiver, µs, at saturation. */
  p50Us: number;
  p99Us: number;
  /** The same at {@linkcode PACED_RATE} lines a second. */
  pacedP50Us: number;
  pacedP99Us: number;
  /** CPU per line at saturation: the instances', and Redis's. */
  instanceCpuUs: number;
  redisCpuUs: number;
  /** Lines out of order, twice, missing, or digests that differ. */
  errors: number;
}

/** The two layouts compared. */
export const CLUSTER_LAYOUTS = {
  one: "1 instance",
  three: "3 instances + Redis",
} as const;
export type ClusterLayout = keyof typeof CLUSTER_LAYOUTS;

const BROADCAST = [
  DENO,
  "run",
  LOCK,
  "--allow-net",
  "--allow-read",
  "--allow-write",
  `${ROOT}server.ts`,
  "--port",
  "0",
  "--mode",
  "broadcast",
  "--log-level",
  "error",
];

/** Starts `layout`, runs both phases, and stops it. */
export async function benchCluster(
  layout: ClusterLayout,
  options: { durationMs: number },
): Promise<ClusterCell> {
  let redis: TestRedis | undefined;
  const servers: Server[] = [];
  try {
    if (layout === "three") {
      redis = await startRedis();
      for (let i = 0; i < 3; i++) {
        servers.push(await start(BROADCAST, false, ["--redis", redis.url]));
      }
    } else {
      servers.push(await start(BROADCAST, false, []));
    }
    const cpu = async () => {
      let instances = 0;
      for (const s of servers) instances += await s.cpuMs();
      return { instances, redis: redis ? await cpuMs(redis.pid) : 0 };
    };
    await using group = await Group.connect(servers.map((s) => s.port));
    // Warm-up, then saturation.
    await group.saturate(Math.min(300, options.durationMs), false);
    const before = await cpu();
    const saturated = await group.saturate(options.durationMs, true);
    const after = await cpu();
    const paced = await group.paced(options.durationMs);
    const errors = group.finish();
    return {
      value: saturated.lines / (options.durationMs / 1000),
      p50Us: saturated.p50Us,
      p99Us: saturated.p99Us,
      pacedP50Us: paced.p50Us,
      pacedP99Us: paced.p99Us,
      instanceCpuUs: (after.instances - before.instances) * 1000 /
        saturated.lines,
      redisCpuUs: (after.redis - before.redis) * 1000 / saturated.lines,
      errors,
    };
  } finally {
    for (const s of servers) await s[Symbol.asyncDispose]();
    await redis?.[Symbol.asyncDispose]();
  }
}

function histogram() {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/** What a phase measured. */
interface Phase {
  /** Lines delivered to everyone while it was measured. */
  lines: number;
  p50Us: number;
  p99Us: number;
}

/** The clients, their lines in flight, and what each has received. */
class Group implements AsyncDisposable {
  #conns: Deno.TcpConn[];
  /** Per sender: next sequence number, own lines in flight. */
  #nextSeq: number[];
  #inFlight: number[];
  /** Per sender, by sequence number in a ring: receivers still to get it, and when it was sent. */
  #remaining: Int32Array[];
  #sentAt: Float64Array[];
  /** Per receiver: the next sequence number expected from each sender. */
  #expected: Int32Array[];
  /** Per receiver: a digest of the lines in the order received. */
  #digest: number[];
  /** Per receiver: a marker line of its own came back (it is a member). */
  #member: boolean[];
  #errors = 0;
  #outstanding = 0;
  #mode: "off" | "window" | "paced" = "off";
  #recording = false;
  #histogram = histogram();
  #delivered = 0;
  #writing: boolean[];
  #reading: Promise<void>[] = [];
  #changed: (() => void) | undefined;

  private constructor(conns: Deno.TcpConn[]) {
    const n = conns.length;
    this.#conns = conns;
    this.#nextSeq = Array(n).fill(0);
    this.#inFlight = Array(n).fill(0);
    this.#writing = Array(n).fill(false);
    this.#digest = Array(n).fill(0);
    this.#member = Array(n).fill(false);
    this.#remaining = conns.map(() => new Int32Array(RING));
    this.#sentAt = conns.map(() => new Float64Array(RING));
    this.#expected = conns.map(() => new Int32Array(n));
  }

  /** Connects the clients, and waits until each is a member everywhere. */
  static async connect(ports: number[]): Promise<Group> {
    const conns: Deno.TcpConn[] = [];
    for (let c = 0; c < CLUSTER_CLIENTS; c++) {
      conns.push(
        await Deno.connect({
          hostname: "127.0.0.1",
          port: ports[c % ports.length],
        }),
      );
    }
    const group = new Group(conns);
    group.#reading = conns.map((_, r) => group.#read(r));
    // A client's own marker comes back once its join is applied; once all
    // have, every join precedes every later line everywhere.
    for (let c = 0; c < conns.length; c++) {
      await conns[c].write(new TextEncoder().encode(`M ${c}\n`));
    }
    await group.#until(() => group.#member.every(Boolean), 30_000);
    return group;
  }

  /** Keeps WINDOW lines of each client in flight for `ms`. */
  async saturate(ms: number, record: boolean): Promise<Phase> {
    this.#start(record);
    this.#mode = "window";
    for (let c = 0; c < this.#conns.length; c++) this.#topUp(c);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return await this.#stop();
  }

  /** Sends PACED_RATE lines a second, spread over the clients, for `ms`. */
  async paced(ms: number): Promise<Phase> {
    this.#start(true);
    this.#mode = "paced";
    const n = this.#conns.length;
    const every = n * 1000 / PACED_RATE;
    const timers: ReturnType<typeof setTimeout>[] = [];
    for (let c = 0; c < n; c++) {
      timers.push(setTimeout(() => {
        timers.push(setInterval(() => this.#send(c, 1), every));
      }, c * every / n));
    }
    await new Promise((resolve) => setTimeout(resolve, ms));
    for (const t of timers) clearTimeout(t);
    return await this.#stop();
  }

  #start(record: boolean): void {
    this.#histogram.reset();
    this.#delivered = 0;
    this.#recording = record;
  }

  /** Stops sending and waits until every line sent is everywhere. */
  async #stop(): Promise<Phase> {
    this.#mode = "off";
    const lines = this.#delivered;
    this.#recording = false;
    await this.#until(() => this.#outstanding === 0, 30_000).catch(() => {
      this.#errors += this.#outstanding;
      this.#outstanding = 0;
    });
    const h = this.#histogram;
    return {
      lines,
      p50Us: h.getValueAtPercentile(50),
      p99Us: Math.min(h.getValueAtPercentile(99), h.maxValue),
    };
  }

  /** Errors so far, counting receivers whose order differs from the first's. */
  finish(): number {
    const first = this.#digest[0];
    return this.#errors + this.#digest.filter((d) => d !== first).length;
  }

  #until(done: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (done()) return resolve();
      const timer = setTimeout(() => {
        this.#changed = undefined;
        reject(new Error(`not done within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#changed = () => {
        if (!done()) return;
        clearTimeout(timer);
        this.#changed = undefined;
        resolve();
      };
    });
  }

  /** Sends up to WINDOW of client `c`'s lines. */
  #topUp(c: number): void {
    if (this.#mode === "window") this.#send(c, WINDOW - this.#inFlight[c]);
  }

  /** Sends `count` lines of client `c` in one write, unless it is writing. */
  #send(c: number, count: number): void {
    if (count <= 0 || this.#writing[c]) return;
    const n = this.#conns.length;
    const bytes = new Uint8Array(count * LINE_BYTES).fill(0x78 /* x */);
    const now = performance.now();
    for (let i = 0; i < count; i++) {
      const seq = this.#nextSeq[c]++;
      const head = `${c} ${seq} `;
      for (let j = 0; j < head.length; j++) {
        bytes[i * LINE_BYTES + j] = head.charCodeAt(j);
      }
      bytes[(i + 1) * LINE_BYTES - 1] = 0x0a;
      this.#remaining[c][seq & (RING - 1)] = n;
      this.#sentAt[c][seq & (RING - 1)] = now;
    }
    this.#inFlight[c] += count;
    this.#outstanding += count;
    this.#writing[c] = true;
    this.#write(c, bytes);
  }

  async #write(c: number, bytes: Uint8Array): Promise<void> {
    try {
      for (let at = 0; at < bytes.length;) {
        at += await this.#conns[c].write(bytes.subarray(at));
      }
    } catch {
      this.#errors++;
    }
    this.#writing[c] = false;
    this.#topUp(c);
  }

  /** Receiver `r`'s reads: parses `C SEQ …` lines; skips markers. */
  async #read(r: number): Promise<void> {
    const buffer = new Uint8Array(256 * 1024);
    let field = 0;
    let skip = false;
    let c = 0;
    let seq = 0;
    let marker = false;
    try {
      while (true) {
        const n = await this.#conns[r].read(buffer);
        if (n === null) break;
        for (let i = 0; i < n; i++) {
          const b = buffer[i];
          if (b === 0x0a) {
            if (marker) {
              if (seq === r) this.#member[r] = true;
            } else if (field >= 2) {
              this.#received(r, c, seq);
            }
            field = 0;
            skip = marker = false;
            c = seq = 0;
          } else if (skip) {
            continue;
          } else if (b === 0x20) {
            if (++field >= 2) skip = true;
          } else if (field === 0 && b === 0x4d /* M */) {
            marker = true;
          } else {
            const digit = b - 0x30;
            if (field === 0) c = c * 10 + digit;
            else seq = seq * 10 + digit;
          }
        }
        if (this.#mode === "window" && this.#inFlight[r] < WINDOW) {
          this.#topUp(r);
        }
        this.#changed?.();
      }
    } catch {
      // Closed by dispose.
    }
    if (this.#mode !== "off") this.#errors++; // Dropped mid-phase.
  }

  /** Line `seq` of sender `c` reached receiver `r`. */
  #received(r: number, c: number, seq: number): void {
    const expected = this.#expected[r];
    if (c >= expected.length || seq !== expected[c]) {
      this.#errors++;
      if (c >= expected.length) return;
    }
    expected[c] = seq + 1;
    this.#digest[r] = (Math.imul(this.#digest[r], 31) + c * RING + seq) | 0;
    if (r === c) this.#inFlight[c]--;
    const slot = seq & (RING - 1);
    if (--this.#remaining[c][slot] === 0) {
      this.#outstanding--;
      if (this.#recording) {
        this.#delivered++;
        const us = Math.round(
          (performance.now() - this.#sentAt[c][slot]) * 1000,
        );
        this.#histogram.recordValue(Math.max(1, us));
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#mode = "off";
    for (const conn of this.#conns) conn.close();
    await Promise.all(this.#reading);
    this.#histogram.destroy();
  }
}

/** The table: the two layouts side by side. */
export function clusterTable(
  cells: Record<ClusterLayout, ClusterCell>,
): string {
  const { one, three } = cells;
  const label = `broadcast, ${CLUSTER_CLIENTS} clients`;
  const row = (
    name: string,
    pick: (c: ClusterCell) => number,
    digits: number,
  ) => [
    `${label}: ${name}`,
    fmt(pick(one), digits) + (one.errors ? " (errors)" : ""),
    fmt(pick(three), digits) + (three.errors ? " (errors)" : ""),
    `${fmt(pick(three) / pick(one), 2)}×`,
  ];
  return markdown(
    ["workload", CLUSTER_LAYOUTS.one, CLUSTER_LAYOUTS.three, "3 / 1"],
    [
      row("lines/s to all", (c) => c.value, 0),
      row("deliveries/s", (c) => c.value * CLUSTER_CLIENTS, 0),
      row("send to last receiver p50 µs", (c) => c.p50Us, 0),
      row("send to last receiver p99 µs", (c) => c.p99Us, 0),
      row(`at ${PACED_RATE} lines/s: p50 µs`, (c) => c.pacedP50Us, 0),
      row(`at ${PACED_RATE} lines/s: p99 µs`, (c) => c.pacedP99Us, 0),
      row("instances' CPU µs/line", (c) => c.instanceCpuUs, 1),
      row("Redis's CPU µs/line", (c) => c.redisCpuUs, 1),
    ],
  );
}
