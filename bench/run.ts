/**
 * `deno task bench`: runs our server (with each engine) and two reference
 * peers (Node's `socket.pipe(socket)` and Deno's documented `pipeTo` echo)
 * over the same workloads in one run, prints one table with ratios, and
 * writes the results as JSON to `bench/results/`.
 *
 * Workloads: 64 B and 4 KiB ping-pong over 1 and 50 connections (our load
 * client, every byte verified), a bulk stream (`echoStream`), idle
 * connections with the server's memory per connection, and tail latency
 * under churn: a client pinging every 5 ms while 2,000 others at a time
 * half-close or open and close (`bench/churn.ts`). Then our server alone
 * with `--workers 1` and `--workers 2` at 64 B × 200 connections: CPU per
 * round trip, round trips/s, and how the connections spread over workers.
 * Then TLS: 64 B × 50 round trips/s and the bulk stream, for our server
 * (through its handshake gate, and on the native engine through OpenSSL)
 * against Node's `tls.createServer` with
 * `socket.pipe(socket)`, with a throwaway certificate made by openssl. And
 * UDP: 64 B datagrams over 50 sockets, our `--udp-only` against a Node
 * `dgram` echo. And broadcast to 30 clients, through three instances that
 * share a Redis against one instance alone (`bench/cluster.ts`, not
 * pinned). The server runs on
 * CPU 0 and this process on CPU 1 when `taskset` is there. Repetitions
 * take turns across servers, so a noisy moment hits every server; the table
 * shows each cell's median over the repetitions, the JSON every repetition.
 *
 * ```sh
 * deno task bench                    # full run: 3 reps of 5 s a workload, 256 MiB, 10 000 idle
 * deno task bench --quick            # 1 rep of 1 s a workload, 32 MiB, 1 000 idle
 * deno task bench --servers project,node_net --duration 3
 * deno task bench --quick --out -    # the JSON on stdout instead of a file
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type ConnectOptions, echoStream, loadTest } from "../mod.ts";
import {
  benchCluster,
  CLUSTER_LAYOUTS,
  type ClusterCell,
  type ClusterLayout,
  clusterTable,
} from "./cluster.ts";
import {
  benchFlags,
  DENO,
  fmt,
  LOCK,
  markdown,
  pinSelf,
  positive,
  ROOT,
  type Server,
  start,
  usageError,
} from "./_harness.ts";
import { type TestCertificates, testCertificates } from "../tests/_certs.ts";
import { latencyChart, runOf } from "../lib/cli/plot.ts";
import {
  CHURN_KINDS,
  type ChurnKind,
  type ChurnReport,
  type PingReport,
} from "./churn.ts";

/** How to start each server; each prints "Listening on HOST:PORT". */
const SERVERS: Record<string, string[]> = {
  project: [
    DENO,
    "run",
    LOCK,
    "--allow-net",
    `--allow-read=${ROOT}lib`,
    "--unstable-net",
    `${ROOT}server.ts`,
    "--port",
    "0",
    "--log-level",
    "error",
  ],
  project_native: [
    DENO,
    "run",
    LOCK,
    "--allow-net",
    `--allow-read=${ROOT}lib`,
    "--allow-ffi",
    `${ROOT}server.ts`,
    "--port",
    "0",
    "--log-level",
    "error",
    "--engine",
    "native",
  ],
  node_net: ["node", `${ROOT}bench/node_echo.mjs`, "0"],
  deno_pipe: [
    DENO,
    "run",
    LOCK,
    "--allow-net",
    `${ROOT}bench/deno_pipe_echo.ts`,
    "0",
  ],
};

/** The TLS comparison: how to start each TLS server, given certificates. */
const TLS_SERVERS: Record<string, (certs: TestCertificates) => string[]> = {
  project: (certs) => [
    DENO,
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    `${ROOT}server.ts`,
    "--port",
    "0",
    "--log-level",
    "error",
    "--tls-cert",
    certs.certFile,
    "--tls-key",
    certs.keyFile,
  ],
  project_native: (certs) => [
    DENO,
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-ffi",
    ...TLS_SERVERS.project(certs).slice(5),
    "--engine",
    "native",
  ],
  node_tls: (certs) => [
    "node",
    `${ROOT}bench/node_tls_echo.mjs`,
    "0",
    certs.certFile,
    certs.keyFile,
  ],
};

interface PingPong {
  size: number;
  connections: number;
}
const PING_PONGS: PingPong[] = [
  { size: 64, connections: 1 },
  { size: 64, connections: 50 },
  { size: 4096, connections: 1 },
  { size: 4096, connections: 50 },
];

interface Cell {
  /** Round trips per second, or MB/s for bulk, or kB per connection. */
  value: number;
  /** µs of server CPU per round trip, or CPU s per GB for bulk. */
  serverCpu?: number;
  /** Server and load CPU, % of one core. */
  serverCpuPercent?: number;
  loadCpuPercent?: number;
  p99Us?: number;
  /** A ping-pong's latency histogram, as loadTest's report carries it. */
  histogram?: string;
  /** The pinger under churn (`value` is its p99.9). */
  p50Us?: number;
  maxUs?: number;
  /**
   * Connections the churn made, and how many of them failed (a connect
   * refused when the listen queue overflows is the kernel's, not an error
   * of the server under test).
   */
  churned?: number;
  churnErrors?: number;
  errors: number;
}

/** The workers comparison: our server at 64 B × this many connections. */
const WORKERS_LOAD: PingPong = { size: 64, connections: 200 };
const WORKER_COUNTS = [1, 2];
/** The UDP comparison: our server and Node's dgram echo. */
const UDP_SERVERS: Record<string, string[]> = {
  project: [
    DENO,
    "run",
    LOCK,
    "--allow-net",
    "--unstable-net",
    `${ROOT}server.ts`,
    "--port",
    "0",
    "--udp-only",
    "--udp-rate",
    "unlimited",
    "--log-level",
    "error",
  ],
  node_dgram: ["node", `${ROOT}bench/node_udp_echo.mjs`, "0"],
};
const UDP_LOAD: PingPong = { size: 64, connections: 50 };
/**
 * The rules' cost: our server with none, and with the PROXY protocol, an
 * allow list and a per-address limit all on (its clients send headers).
 */
const RULES: Record<string, string[]> = {
  none: [],
  rules: [
    "--proxy-protocol",
    "--allow",
    "127.0.0.0/8",
    "--max-connections-per-ip",
    "1000",
  ],
};
const RULES_LOAD: PingPong = { size: 64, connections: 50 };
/** `deno task bench --help`. */
const USAGE = `Usage: deno task bench [options]

Runs our server (each engine) and reference echo servers (Node, Deno's pipeTo)
over the same workloads, prints one table with ratios, and writes the results
as JSON to bench/results/ (or stdout with --out -).

Options:
  --quick            1 repetition of 1 s a workload, 32 MiB bulk, 1000 idle
  --servers LIST     comma-separated, of ${Object.keys(SERVERS).join(", ")}
  --duration S       seconds a workload (default: 5; --quick: 1)
  --bulk MIB         bulk stream size in MiB (default: 256; --quick: 32)
  --idle N           idle connections (default: 10000; --quick: 1000)
  --reps N           repetitions, taking turns across servers (default: 3)
  --out FILE         where the JSON goes, - for stdout
  -h, --help         print this help and exit`;

/** The TLS comparison's round trips. */
const TLS_LOAD: PingPong = { size: 64, connections: 50 };

interface WorkersCell extends Cell {
  /** Connections accepted by each worker. */
  perWorker: number[];
}

async function main(): Promise<void> {
  const values = benchFlags(USAGE, () =>
    parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        quick: { type: "boolean" },
        servers: { type: "string" },
        duration: { type: "string" },
        bulk: { type: "string" },
        idle: { type: "string" },
        reps: { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values);
  const quick = values.quick ?? false;
  const servers = (values.servers ?? Object.keys(SERVERS).join(",")).split(",");
  for (const name of servers) {
    if (!(name in SERVERS)) {
      usageError(
        `Invalid --servers: no server ${name} (servers: ${
          Object.keys(SERVERS).join(", ")
        })`,
      );
    }
  }
  const durationMs =
    positive("duration", values.duration ?? (quick ? "1" : "5")) *
    1000;
  const bulkBytes = positive("bulk", values.bulk ?? (quick ? "32" : "256")) *
    1024 * 1024;
  const idleConns = positive("idle", values.idle ?? (quick ? "1000" : "10000"));
  // A TLS connection costs a handshake to open: a fifth as many.
  const tlsIdleConns = Math.max(1, Math.round(idleConns / 5));
  const reps = positive("reps", values.reps ?? (quick ? "1" : "3"));
  const pinned = await pinSelf();

  const runs: Record<string, Record<string, Cell>[]> = {};
  const workerRuns: Record<string, WorkersCell>[] = [];
  const tlsRuns: Record<string, Record<string, Cell>[]> = {};
  const udpRuns: Record<string, Record<string, Cell>[]> = {};
  const rulesRuns: Record<string, Record<string, Cell>[]> = {};
  const clusterRuns: Partial<Record<ClusterLayout, ClusterCell[]>> = {};
  await using certs = await testCertificates();
  for (let rep = 1; rep <= reps; rep++) {
    for (const name of servers) {
      console.error(`== ${name}, repetition ${rep} of ${reps}`);
      (runs[name] ??= []).push(
        await benchServer(name, { durationMs, bulkBytes, idleConns, pinned }),
      );
    }
    if (servers.includes("project")) {
      console.error(`== project --workers, repetition ${rep} of ${reps}`);
      workerRuns.push(await benchWorkers(durationMs, pinned));
      for (const name of Object.keys(TLS_SERVERS)) {
        console.error(`== TLS ${name}, repetition ${rep} of ${reps}`);
        (tlsRuns[name] ??= []).push(
          await benchTls(name, certs, {
            durationMs,
            bulkBytes,
            pinned,
            idleConns: tlsIdleConns,
          }),
        );
      }
      for (const [name, extra] of Object.entries(RULES)) {
        console.error(
          `== project, rules ${name}, repetition ${rep} of ${reps}`,
        );
        await using server = await start(SERVERS.project, pinned, extra);
        const cell = await pingPong(
          server,
          RULES_LOAD,
          durationMs,
          name === "rules" ? { sendProxy: "v2" } : {},
        );
        console.error(`  ${Math.round(cell.value)} rt/s`);
        (rulesRuns[name] ??= []).push({ [RULES_KEY]: cell });
      }
      for (const [name, command] of Object.entries(UDP_SERVERS)) {
        console.error(`== UDP ${name}, repetition ${rep} of ${reps}`);
        await using server = await start(command, pinned);
        const cell = await pingPong(server, UDP_LOAD, durationMs, {
          udp: true,
        });
        console.error(`  ${Math.round(cell.value)} rt/s`);
        (udpRuns[name] ??= []).push({ [UDP_KEY]: cell });
      }
      for (const layout of Object.keys(CLUSTER_LAYOUTS) as ClusterLayout[]) {
        console.error(
          `== broadcast, ${
            CLUSTER_LAYOUTS[layout]
          }, repetition ${rep} of ${reps}`,
        );
        const cell = await benchCluster(layout, { durationMs });
        console.error(
          `  ${Math.round(cell.value)} lines/s, p99 ${cell.p99Us} µs`,
        );
        (clusterRuns[layout] ??= []).push(cell);
      }
    }
  }
  const tls = Object.keys(tlsRuns).length > 0
    ? Object.fromEntries(
      Object.entries(tlsRuns).map(([name, r]) => [name, medians(r)]),
    )
    : undefined;
  const results = Object.fromEntries(
    servers.map((name) => [name, medians(runs[name])]),
  );
  const workers = workerRuns.length > 0
    ? medians(workerRuns) as Record<string, WorkersCell>
    : undefined;
  const rules = Object.keys(rulesRuns).length > 0
    ? Object.fromEntries(
      Object.entries(rulesRuns).map(([name, r]) => [name, medians(r)]),
    )
    : undefined;
  const udp = Object.keys(udpRuns).length > 0
    ? Object.fromEntries(
      Object.entries(udpRuns).map(([name, r]) => [name, medians(r)]),
    )
    : undefined;
  const cluster = clusterRuns.one && clusterRuns.three
    ? { one: median(clusterRuns.one), three: median(clusterRuns.three) }
    : undefined;
  const meta = {
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    node: await version("node"),
    cpus: navigator.hardwareConcurrency,
    pinned,
    durationMs,
    bulkBytes,
    idleConns,
    tlsIdleConns,
    reps,
  };
  const json = JSON.stringify(
    {
      meta,
      results,
      runs,
      workers,
      workerRuns,
      tls,
      tlsRuns,
      udp,
      udpRuns,
      rules,
      rulesRuns,
      cluster,
      clusterRuns,
    },
    null,
    2,
  );
  if (values.out === "-") {
    console.log(json);
    return;
  }
  const outDir = values.out ?? `${ROOT}bench/results`;
  await Deno.mkdir(outDir, { recursive: true });
  const file = `${outDir}/${meta.date.replaceAll(":", "-")}.json`;
  await Deno.writeTextFile(file, json);
  const charts = await latencyCharts(
    results,
    servers,
    outDir,
    meta.date.replaceAll(":", "-"),
  );
  console.log(table(results, servers, meta));
  if (workers !== undefined) console.log(`\n${workersTable(workers)}`);
  if (tls !== undefined) console.log(`\n${tlsTable(tls, meta)}`);
  if (udp !== undefined) console.log(`\n${udpTable(udp)}`);
  if (rules !== undefined) console.log(`\n${rulesTable(rules)}`);
  if (cluster !== undefined) console.log(`\n${clusterTable(cluster)}`);
  console.log(`\nResults: ${file}`);
  console.log(`Latency charts: ${charts.join(", ")}`);
}

/** The repetition whose main figure is the median. */
function median<T extends { value: number }>(runs: T[]): T {
  const sorted = [...runs].sort((a, b) => a.value - b.value);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Per workload, the repetition whose main figure is the median. */
function medians(runs: Record<string, Cell>[]): Record<string, Cell> {
  const out: Record<string, Cell> = {};
  for (const key of Object.keys(runs[0])) {
    out[key] = median(runs.map((r) => r[key]));
  }
  return out;
}

async function version(command: string): Promise<string> {
  try {
    const out = await new Deno.Command(command, { args: ["--version"] })
      .output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "missing";
  }
}

interface Options {
  durationMs: number;
  bulkBytes: number;
  idleConns: number;
  pinned: boolean;
}

async function benchServer(
  name: string,
  options: Options,
): Promise<Record<string, Cell>> {
  const cells: Record<string, Cell> = {};
  for (const workload of PING_PONGS) {
    const key = `${workload.size} B × ${workload.connections}`;
    await using server = await start(SERVERS[name], options.pinned);
    cells[key] = await pingPong(server, workload, options.durationMs);
    console.error(`  ${key}: ${Math.round(cells[key].value)} rt/s`);
  }
  {
    await using server = await start(SERVERS[name], options.pinned);
    const cpu0 = await server.cpuMs();
    const started = performance.now();
    let errors = 0;
    try {
      await bulk(server.port, options.bulkBytes);
    } catch (error) {
      errors = 1;
      console.error(`  bulk failed: ${(error as Error).message}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const serverCpuMs = await server.cpuMs() - cpu0;
    cells.bulk = {
      value: errors ? NaN : options.bulkBytes / seconds / 1e6,
      serverCpu: serverCpuMs / 1000 / (options.bulkBytes / 1e9),
      serverCpuPercent: serverCpuMs / (seconds * 1000) * 100,
      errors,
    };
    console.error(`  bulk: ${cells.bulk.value.toFixed(0)} MB/s`);
  }
  {
    await using server = await start(SERVERS[name], options.pinned);
    cells.idle = await idle(server, options.idleConns);
    console.error(`  idle: ${cells.idle.value.toFixed(1)} kB/conn`);
  }
  for (const kind of CHURN_KINDS) {
    await using server = await start(SERVERS[name], options.pinned);
    const key = `churn ${kind}`;
    cells[key] = await churnLatency(server, kind, options.durationMs);
    console.error(
      `  ${key}: ping p99.9 ${cells[key].value} µs, max ${
        Math.round(cells[key].maxUs!)
      } µs`,
    );
  }
  return cells;
}

/**
 * The pinger's latency while `kind` churns: both run as processes of their
 * own on this process's CPU, the pinger at a higher priority when this
 * process may give it one (`nice -n -10` needs root), so that the churn's
 * own work delays it as little as it can.
 */
async function churnLatency(
  server: Server,
  kind: ChurnKind,
  durationMs: number,
): Promise<Cell> {
  const script = `${ROOT}bench/churn.ts`;
  const churner = new Deno.Command(DENO, {
    args: [
      "run",
      LOCK,
      "-A",
      script,
      "churn",
      String(server.port),
      String(durationMs + 500),
      kind,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  // Let the churn ramp up before the pinger starts.
  await new Promise((resolve) => setTimeout(resolve, 250));
  const ping = [
    DENO,
    "run",
    LOCK,
    "-A",
    script,
    "pinger",
    String(server.port),
    String(durationMs),
  ];
  const niced = Deno.uid() === 0;
  const pinger = await new Deno.Command(niced ? "nice" : DENO, {
    args: niced ? ["-n", "-10", ...ping] : ping.slice(1),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const churned = await churner;
  const report: PingReport = JSON.parse(
    new TextDecoder().decode(pinger.stdout),
  );
  const churn: ChurnReport = JSON.parse(
    new TextDecoder().decode(churned.stdout),
  );
  return {
    value: report.p999Us,
    p50Us: report.p50Us,
    p99Us: report.p99Us,
    maxUs: report.maxUs,
    churned: churn.connections,
    churnErrors: churn.errors,
    errors: report.errors + (pinger.success && churned.success ? 0 : 1),
  };
}

/**
 * Our server with each of {@linkcode WORKER_COUNTS} workers under
 * {@linkcode WORKERS_LOAD}; the spread comes from its "Opened" records.
 */
async function benchWorkers(
  durationMs: number,
  pinned: boolean,
): Promise<Record<string, WorkersCell>> {
  const cells: Record<string, WorkersCell> = {};
  for (const workers of WORKER_COUNTS) {
    await using server = await start(SERVERS.project, pinned, [
      "--workers",
      String(workers),
      "--log-level",
      "info",
      "--log-format",
      "json",
    ]);
    const cell = await pingPong(server, WORKERS_LOAD, durationMs);
    const perWorker = Array(workers).fill(0);
    for (const line of server.stderr!.lines) {
      const record = JSON.parse(line);
      if (record.message.startsWith("Opened")) {
        perWorker[record.properties.worker ?? 0]++;
      }
    }
    const key = `workers ${workers}`;
    cells[key] = { ...cell, perWorker };
    console.error(
      `  ${key}: ${Math.round(cell.value)} rt/s, ${
        cells[key].serverCpu!.toFixed(2)
      } µs CPU/rt, spread ${perWorker.join(" / ")}`,
    );
  }
  return cells;
}

/** Warms `server` up (JIT, buffers) with `workload`, then measures it. */
async function pingPong(
  server: Server,
  workload: PingPong,
  durationMs: number,
  connect: ConnectOptions = {},
): Promise<Cell> {
  const options = {
    ...connect,
    port: server.port,
    connections: workload.connections,
    message: workload.size,
  };
  await loadTest({ ...options, duration: Math.min(300, durationMs) });
  const cpu0 = await server.cpuMs();
  const load = await loadTest({ ...options, duration: durationMs });
  const serverCpuMs = await server.cpuMs() - cpu0;
  return {
    value: load.roundTripsPerSecond,
    serverCpu: load.roundTrips > 0 ? serverCpuMs * 1000 / load.roundTrips : NaN,
    serverCpuPercent: serverCpuMs / load.durationMs * 100,
    loadCpuPercent: load.cpuMs / load.durationMs * 100,
    p99Us: load.latencyUs.p99,
    histogram: load.latencyHistogram,
    errors: load.connectErrors + load.mismatches + load.otherErrors,
  };
}

/**
 * One latency-by-percentile chart per ping-pong workload, a line per
 * server (its median repetition), drawn as the client's --plot draws; into
 * `dir`, named after `stamp`. Returns the files written.
 */
async function latencyCharts(
  results: Record<string, Record<string, Cell>>,
  servers: string[],
  dir: string,
  stamp: string,
): Promise<string[]> {
  const files = [];
  for (const w of PING_PONGS) {
    const key = `${w.size} B × ${w.connections}`;
    const runs = servers.flatMap((name) => {
      const histogram = results[name][key]?.histogram;
      return histogram === undefined ? [] : [runOf(name, histogram)];
    });
    const file = `${dir}/${stamp}-latency-${w.size}x${w.connections}.svg`;
    await Deno.writeTextFile(
      file,
      await latencyChart(runs, `Latency by percentile, ${key}`),
    );
    files.push(file);
  }
  return files;
}

/** Streams `bytes` through the server in 64 KiB writes, verifying the echo. */
async function bulk(
  port: number,
  bytes: number,
  connect: ConnectOptions = {},
): Promise<void> {
  const chunk = new Uint8Array(64 * 1024).map((_, i) => (i * 7) & 255);
  const chunks = (function* () {
    for (let sent = 0; sent < bytes; sent += chunk.length) yield chunk;
  })();
  let received = 0;
  const options = { ...connect, port, timeout: 30_000 };
  for await (const part of echoStream(chunks, options)) {
    received += part.length;
  }
  if (received !== bytes) throw new Error(`echo was ${received} of ${bytes}`);
}

/**
 * Opens `count` idle connections (TCP, or with `open`), one byte through
 * each, and `settleMs` later returns the server's kB per connection.
 */
async function idle(
  server: Server,
  count: number,
  open: () => Promise<Deno.Conn> = () =>
    Deno.connect({ hostname: "127.0.0.1", port: server.port }),
  settleMs = 0,
): Promise<Cell> {
  const before = await server.rssKb();
  const conns: Deno.Conn[] = [];
  let errors = 0;
  try {
    for (let i = 0; i < count; i += 500) {
      const batch = await Promise.allSettled(
        Array.from({ length: Math.min(500, count - i) }, open),
      );
      for (const r of batch) {
        if (r.status === "fulfilled") conns.push(r.value);
        else errors++;
      }
    }
    // One byte through each, so the server has really taken every one.
    const one = new Uint8Array(1);
    await Promise.all(conns.map(async (c) => {
      await c.write(one);
      await c.read(one);
    }));
    // Idle for a while, as idle connections are (the native engine gives
    // back an idle TLS connection's buffers after a second).
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
    const after = await server.rssKb();
    return {
      value: (after - before) / conns.length,
      errors,
    };
  } finally {
    for (const c of conns) c.close();
  }
}

/**
 * One TLS server: 64 B × 50 round trips, the bulk stream, then idle TLS
 * connections (each through a handshake and one byte, then 1.5 s idle).
 */
async function benchTls(
  name: string,
  certs: TestCertificates,
  options: {
    durationMs: number;
    bulkBytes: number;
    pinned: boolean;
    idleConns: number;
  },
): Promise<Record<string, Cell>> {
  const command = TLS_SERVERS[name](certs);
  const connect = {
    tls: true,
    caCerts: [certs.ca],
    serverName: "localhost",
  };
  const cells: Record<string, Cell> = {};
  const key = `${TLS_LOAD.size} B × ${TLS_LOAD.connections}`;
  {
    await using server = await start(command, options.pinned);
    cells[key] = await pingPong(server, TLS_LOAD, options.durationMs, connect);
    console.error(`  ${key}: ${Math.round(cells[key].value)} rt/s`);
  }
  {
    await using server = await start(command, options.pinned);
    const cpu0 = await server.cpuMs();
    const started = performance.now();
    let errors = 0;
    try {
      await bulk(server.port, options.bulkBytes, connect);
    } catch (error) {
      errors = 1;
      console.error(`  bulk failed: ${(error as Error).message}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const serverCpuMs = await server.cpuMs() - cpu0;
    cells.bulk = {
      value: errors ? NaN : options.bulkBytes / seconds / 1e6,
      serverCpu: serverCpuMs / 1000 / (options.bulkBytes / 1e9),
      serverCpuPercent: serverCpuMs / (seconds * 1000) * 100,
      errors,
    };
    console.error(`  bulk: ${cells.bulk.value.toFixed(0)} MB/s`);
  }
  {
    await using server = await start(command, options.pinned);
    cells.idle = await idle(
      server,
      options.idleConns,
      () =>
        Deno.connectTls({
          hostname: "127.0.0.1",
          port: server.port,
          caCerts: [certs.ca],
        }),
      1500,
    );
    console.error(`  idle: ${cells.idle.value.toFixed(1)} kB/conn`);
  }
  return cells;
}

/** A row of a comparison: label, cell, the figure in it, its digits. */
type Row = [string, string, (c: Cell) => number | undefined, number];

/**
 * Servers side by side, a row per figure, then each ratio asked for
 * (`[numerator, denominator]`, by server name).
 */
function comparison(
  cells: Record<string, Record<string, Cell>>,
  rows: Row[],
  ratios: [string, string][],
  options: { titles?: Record<string, string>; ratioDigits?: number } = {},
): string {
  const names = Object.keys(cells);
  const title = (name: string) => options.titles?.[name] ?? name;
  const header = [
    "workload",
    ...names.map(title),
    ...ratios.map(([a, b]) => `${a} / ${b}`),
  ];
  return markdown(
    header,
    rows.map(([label, cell, pick, digits]) => {
      const value = (name: string) => pick(cells[name][cell]);
      return [
        label,
        ...names.map((n) =>
          fmt(value(n), digits) + (cells[n][cell].errors ? " (errors)" : "")
        ),
        ...ratios.map(([a, b]) =>
          `${fmt(value(a)! / value(b)!, options.ratioDigits ?? 2)}×`
        ),
      ];
    }),
  );
}

/** The TLS comparison: each of our two ways against Node's. */
function tlsTable(
  cells: Record<string, Record<string, Cell>>,
  meta: Record<string, unknown>,
): string {
  const key = `${TLS_LOAD.size} B × ${TLS_LOAD.connections}`;
  const bulkLabel = `bulk ${Number(meta.bulkBytes) / 1048576} MiB`;
  return comparison(cells, [
    [`TLS ${key}: round trips/s`, key, (c) => c.value, 0],
    [`TLS ${key}: server µs CPU/round trip`, key, (c) => c.serverCpu, 2],
    [`TLS ${key}: p99 µs`, key, (c) => c.p99Us, 0],
    [`TLS ${bulkLabel}: MB/s`, "bulk", (c) => c.value, 0],
    [`TLS bulk: server CPU s/GB`, "bulk", (c) => c.serverCpu, 3],
    [
      `TLS ${meta.tlsIdleConns} idle: server kB/conn`,
      "idle",
      (c) => c.value,
      1,
    ],
  ], [
    ["project", "node_tls"],
    ["project_native", "node_tls"],
  ]);
}

const UDP_KEY = `UDP ${UDP_LOAD.size} B × ${UDP_LOAD.connections}`;
const RULES_KEY = `${RULES_LOAD.size} B × ${RULES_LOAD.connections}`;

/** The three figures of a round-trip workload. */
function roundTripRows(key: string): Row[] {
  return [
    [`${key}: round trips/s`, key, (c) => c.value, 0],
    [`${key}: server µs CPU/round trip`, key, (c) => c.serverCpu, 2],
    [`${key}: p99 µs`, key, (c) => c.p99Us, 0],
  ];
}

/** The rules' cost: with them against without. */
function rulesTable(cells: Record<string, Record<string, Cell>>): string {
  return comparison(cells, roundTripRows(RULES_KEY), [["rules", "none"]], {
    titles: { none: "no rules", rules: "PROXY + allow + per-IP" },
    ratioDigits: 3,
  });
}

/** The UDP comparison: ours against Node's dgram echo. */
function udpTable(cells: Record<string, Record<string, Cell>>): string {
  return comparison(cells, roundTripRows(UDP_KEY), [["project", "node_dgram"]]);
}

/** The workers comparison, `--workers 2` against `--workers 1`. */
function workersTable(cells: Record<string, WorkersCell>): string {
  const [one, two] = WORKER_COUNTS.map((n) => cells[`workers ${n}`]);
  const mean = two.perWorker.reduce((a, b) => a + b, 0) /
    two.perWorker.length;
  const spread = Math.max(...two.perWorker.map((n) => Math.abs(n - mean))) /
    mean * 100;
  const rows = [
    [
      "round trips/s",
      fmt(one.value, 0),
      fmt(two.value, 0),
      `${fmt(two.value / one.value, 2)}×`,
    ],
    [
      "server µs CPU/round trip",
      fmt(one.serverCpu!, 2),
      fmt(two.serverCpu!, 2),
      `${fmt(two.serverCpu! / one.serverCpu!, 2)}×`,
    ],
    [
      "server CPU %",
      fmt(one.serverCpuPercent!, 0),
      fmt(two.serverCpuPercent!, 0),
      "",
    ],
    [
      "connections per worker",
      one.perWorker.join(" / "),
      two.perWorker.join(" / "),
      `±${fmt(spread, 0)} %`,
    ],
  ];
  const label = `${WORKERS_LOAD.size} B × ${WORKERS_LOAD.connections}`;
  return markdown([label, "--workers 1", "--workers 2", "2 / 1"], rows);
}

function table(
  results: Record<string, Record<string, Cell>>,
  servers: string[],
  meta: Record<string, unknown>,
): string {
  const others = servers.filter((s) => s !== "project");
  const rows: string[][] = [];
  const header = [
    "workload",
    ...servers.map((s) => s),
    ...(servers.includes("project") ? others.map((o) => `project / ${o}`) : []),
  ];
  const add = (
    label: string,
    pick: (c: Cell) => number | undefined,
    digits: number,
    key: string,
  ) => {
    const value = (s: string) => pick(results[s][key]);
    rows.push([
      label,
      ...servers.map((s) =>
        fmt(value(s), digits) + (results[s][key].errors ? " (errors)" : "")
      ),
      ...(servers.includes("project")
        ? others.map((o) => `${fmt(value("project")! / value(o)!, 2)}×`)
        : []),
    ]);
  };
  for (const w of PING_PONGS) {
    const key = `${w.size} B × ${w.connections}`;
    add(`${key}: round trips/s`, (c) => c.value, 0, key);
    add(`${key}: server µs CPU/round trip`, (c) => c.serverCpu, 2, key);
    add(`${key}: p99 µs`, (c) => c.p99Us, 0, key);
    add(`${key}: server CPU %`, (c) => c.serverCpuPercent, 0, key);
    add(`${key}: load CPU %`, (c) => c.loadCpuPercent, 0, key);
  }
  add(
    `bulk ${Number(meta.bulkBytes) / 1048576} MiB: MB/s`,
    (c) => c.value,
    0,
    "bulk",
  );
  add(`bulk: server CPU s/GB`, (c) => c.serverCpu, 3, "bulk");
  add(`${meta.idleConns} idle: server kB/conn`, (c) => c.value, 1, "idle");
  for (const kind of CHURN_KINDS) {
    const key = `churn ${kind}`;
    const label = `ping every 5 ms, ${kind} churn`;
    add(`${label}: p50 µs`, (c) => c.p50Us, 0, key);
    add(`${label}: p99 µs`, (c) => c.p99Us, 0, key);
    add(`${label}: p99.9 µs`, (c) => c.value, 0, key);
    add(`${label}: max µs`, (c) => c.maxUs, 0, key);
  }
  return [
    `${meta.date}, Deno ${meta.deno}, ${meta.node}, ${meta.cpus} CPUs, ${
      meta.pinned ? "server on CPU 0, load on CPU 1" : "not pinned"
    }; median of ${meta.reps} repetitions of ${
      Number(meta.durationMs) / 1000
    } s a workload`,
    "",
    markdown(header, rows),
  ].join("\n");
}

if (import.meta.main) await main();
