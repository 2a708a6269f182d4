// Load tests on agents through Redis: the split and the merge free of I/O;
// agents and a coordinator in this process (a skewed clock, a stop); and
// three agents and a coordinator as processes with a real redis-server (the
// merged report, an agent killed mid-run, Redis restarted mid-run).

import assert from "node:assert/strict";
import {
  coordinateLoad,
  type LoadAgentEvent,
  type LoadReport,
  loadTest,
  runLoadAgent,
  serveEcho,
} from "../mod.ts";
import {
  splitExactly,
  splitPlan,
  spreadOverHosts,
} from "../lib/agents/plan.ts";
import { addHistograms, mergeReports } from "../lib/agents/merge.ts";
import { LoadLink } from "../lib/agents/link.ts";
import {
  decodeHistogram,
  encodeHistogram,
  latencyHistogram,
} from "../lib/client/latency.ts";
import { startRedis } from "./_redis.ts";
import { tempDir } from "./_helpers.ts";
import { CLIENT, LOCK, run, Spawned } from "./_process.ts";

Deno.test("the coordinator spreads its agents over their machines: one from each host in turn, by name within a host", () => {
  const agents = [
    ["a1", "alpha"],
    ["a2", "alpha"],
    ["a3", "alpha"],
    ["b1", "beta"],
    ["b2", "beta"],
    ["c1", "gamma"],
  ].map(([name, host]) => ({ name, host }));
  const names = (wanted: number) =>
    spreadOverHosts(agents, wanted).map((a) => a.name);
  assert.deepEqual(names(1), ["a1"]);
  assert.deepEqual(names(3), ["a1", "b1", "c1"]);
  assert.deepEqual(names(4), ["a1", "a2", "b1", "c1"]);
  assert.deepEqual(names(5), ["a1", "a2", "b1", "b2", "c1"]);
  assert.deepEqual(names(6), ["a1", "a2", "a3", "b1", "b2", "c1"]);
  assert.deepEqual(names(9), names(6));
  // One machine: the first by name, as before.
  const one = agents.map((a) => ({ ...a, host: "solo" }));
  assert.deepEqual(
    spreadOverHosts(one, 2).map((a) => a.name),
    ["a1", "a2"],
  );
});

Deno.test("a test splits among agents exactly: connections, count and rate add up to what was asked", () => {
  assert.deepEqual(splitExactly(10, [1, 1, 1]), [4, 3, 3]);
  assert.deepEqual(splitExactly(1000, [4, 3, 3]), [400, 300, 300]);
  assert.deepEqual(splitExactly(1001, [4, 3, 3]), [401, 300, 300]);
  assert.deepEqual(splitExactly(7, [4, 3, 3]), [3, 2, 2]);
  for (
    const [connections, agents, count, rate] of [
      [10, 3, 1000, 1000],
      [7, 7, 7, 7],
      [100, 6, 99_999, 12_345],
      [1000, 3, 1_000_003, 3],
    ]
  ) {
    const parts = splitPlan({ connections, count, rate }, agents);
    assert.equal(parts.length, agents);
    const sum = (key: "connections" | "count" | "rate") =>
      parts.reduce((n, p) => n + (p[key] as number), 0);
    assert.equal(sum("connections"), connections);
    assert.equal(sum("count"), count);
    assert.equal(sum("rate"), rate);
    assert.ok(parts.every((p) => p.count! >= 1 && p.connections! >= 1));
  }
  // A rate in fractions goes in proportion.
  const fractional = splitPlan({ connections: 4, rate: 2.5 }, 2);
  assert.deepEqual(fractional.map((p) => p.rate), [1.25, 1.25]);
  // The rest of a test is each part's as it is.
  const [part] = splitPlan(
    { connections: 3, duration: 5000, message: 100, countPerConnection: 7 },
    3,
  );
  assert.deepEqual(part, {
    connections: 1,
    duration: 5000,
    message: 100,
    countPerConnection: 7,
  });
  assert.throws(
    () => splitPlan({ connections: 2 }, 3),
    /connections: 2 cannot be split among 3 agents/,
  );
  assert.throws(
    () => splitPlan({ connections: 3, count: 2 }, 3),
    /count: 2 round trips cannot be split among 3 agents/,
  );
});

/** A report whose latency histogram holds `samples` (µs). */
function reportOf(samples: number[], roundTrips: number): LoadReport {
  const h = latencyHistogram();
  for (const s of samples) h.recordValue(s);
  const latencyHistogram_ = encodeHistogram(h);
  h.destroy();
  const none = encodeHistogram(latencyHistogram());
  const zero = { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  return {
    address: "127.0.0.1:9000",
    connections: 2,
    connected: 2,
    messageBytes: 64,
    roundTrips,
    durationMs: 1000 + roundTrips,
    roundTripsPerSecond: 0,
    megabytesPerSecond: 0,
    latencyUs: zero,
    connects: 2,
    connectLatencyUs: zero,
    connectLatencyHistogram: none,
    latencyHistogram: latencyHistogram_,
    lost: 0,
    connectErrors: 1,
    closedBeforeEcho: 0,
    mismatches: 0,
    otherErrors: 0,
    resets: 0,
    closes: 0,
    timeouts: 0,
    errorMessages: ["one"],
    cpuMs: 10,
  };
}

Deno.test("merged reports add their counts, last as long as the longest, and their histograms add exactly: as one histogram fed every sample", () => {
  let x = 12345;
  const random = () => (x = (x * 1103515245 + 12345) % 2 ** 31) % 100_000 + 1;
  const samples = [0, 1, 2].map(() =>
    Array.from({ length: 5000 }, () => random())
  );
  const reports = samples.map((s, i) => reportOf(s, 100 * (i + 1)));
  const merged = mergeReports(reports, ["a", "b", "c"]);
  const all = latencyHistogram();
  for (const s of samples.flat()) all.recordValue(s);
  assert.equal(merged.latencyHistogram, encodeHistogram(all));
  assert.equal(
    merged.latencyUs.p99,
    Math.min(all.getValueAtPercentile(99), all.maxValue),
  );
  all.destroy();
  assert.equal(merged.roundTrips, 600);
  assert.equal(merged.connections, 6);
  assert.equal(merged.connectErrors, 3);
  assert.equal(merged.durationMs, 1300);
  assert.equal(merged.roundTripsPerSecond, 600 / 1.3);
  assert.deepEqual(merged.errorMessages, ["a: one", "b: one", "c: one"]);
  // Added the other way round, the same.
  assert.equal(
    addHistograms(reports.map((r) => r.latencyHistogram).reverse()).histogram,
    merged.latencyHistogram,
  );
  const decoded = decodeHistogram(merged.latencyHistogram);
  assert.equal(decoded.totalCount, 15_000);
  decoded.destroy();
});

Deno.test("agents in one process: one start by Redis' clock whatever each one's own clock says, a stop within a second, and the next run after it", async () => {
  await using redis = await startRedis();
  await using server = serveEcho({ port: 0 });
  await server.ready;
  const starts: number[] = [];
  const onRun = (event: LoadAgentEvent) => {
    if (event.kind === "start") starts.push(performance.now());
  };
  await using a = await runLoadAgent({ redis: redis.url, name: "a", onRun });
  // This one's clock is an hour ahead: only its durations count.
  await using b = await runLoadAgent({
    redis: redis.url,
    name: "b",
    now: () => performance.now() + 3_600_000,
    onRun,
  });
  const began = performance.now();
  const report = await coordinateLoad({
    redis: redis.url,
    agents: 2,
    port: server.addr.port,
    connections: 4,
    count: 2000,
    startDelay: 500,
  });
  assert.equal(report.roundTrips, 2000);
  assert.equal(report.degraded, false);
  assert.deepEqual(report.agents.map((p) => [p.name, p.connections]), [
    ["a", 2],
    ["b", 2],
  ]);
  assert.equal(starts.length, 2);
  assert.ok(Math.abs(starts[0] - starts[1]) < 200, `${starts}`);
  assert.ok(starts.every((s) => s - began >= 400), `${starts} ${began}`);
  // A stop: a run of a minute ends within a couple of seconds.
  const stop = new AbortController();
  const stopping = setTimeout(() => stop.abort(), 1500);
  const began2 = performance.now();
  const stopped = await coordinateLoad({
    redis: redis.url,
    agents: 2,
    port: server.addr.port,
    connections: 2,
    duration: 60_000,
    startDelay: 200,
    signal: stop.signal,
  });
  clearTimeout(stopping);
  assert.ok(performance.now() - began2 < 5000);
  assert.ok(stopped.roundTrips > 0);
  assert.equal(stopped.degraded, false);
  // And they wait again.
  const again = await coordinateLoad({
    redis: redis.url,
    agents: 2,
    port: server.addr.port,
    connections: 2,
    count: 10,
    startDelay: 200,
  });
  assert.equal(again.roundTrips, 10);
  await a.close();
  await b.close();
});

Deno.test("an agent refuses a plan for a target it does not allow, and says why; too few agents is one error", async () => {
  await using redis = await startRedis();
  await using server = serveEcho({ port: 0 });
  await server.ready;
  await using agent = await runLoadAgent({
    redis: redis.url,
    name: "careful",
    allow: ["10.0.0.0/8"],
  });
  await assert.rejects(
    coordinateLoad({
      redis: redis.url,
      agents: 1,
      port: server.addr.port,
      count: 5,
      startDelay: 100,
    }),
    /no agent reported: careful \(refused: agent careful allows 10\.0\.0\.0\/8 only, not 127\.0\.0\.1\)/,
  );
  await assert.rejects(
    coordinateLoad({
      redis: redis.url,
      agents: 2,
      agentsTimeout: 300,
      port: server.addr.port,
      connections: 2,
      count: 5,
    }),
    /^Error: 1 of 2 agents came within 0\.3 s \(careful\)$/,
  );
  await agent.close();
});

/** A load agent as a process, named `name`, with more flags. */
function agentProcess(
  redisUrl: string,
  name: string,
  ...more: string[]
): Spawned {
  return new Spawned(
    Deno.execPath(),
    coordinatorArgs(redisUrl, ["--agent", "--agent-name", name, ...more]),
  );
}

/** The client's command line on `redisUrl`, with `args` (a coordinator's). */
function coordinatorArgs(redisUrl: string, args: string[]): string[] {
  return [
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-sys=hostname",
    CLIENT,
    "--redis",
    redisUrl,
    ...args,
  ];
}

Deno.test("three agents and a coordinator as processes: the merged report is the sum of the agents', its histogram theirs added; a count splits exactly", async () => {
  await using redis = await startRedis();
  await using server = serveEcho({ port: 0 });
  await server.ready;
  const names = ["agent-1", "agent-2", "agent-3"];
  // Each agent from a source address of its own.
  const agents = names.map((name, i) =>
    agentProcess(redis.url, name, "--source-address", `127.0.0.${11 + i}`)
  );
  try {
    for (const agent of agents) await agent.stderr.waitFor(/waiting for plans/);
    await using dir = await tempDir();
    const chart = `${dir.path}/latency.svg`;
    const result = await run(
      Deno.execPath(),
      coordinatorArgs(redis.url, [
        ...["--agents", "3", "--port", String(server.addr.port)],
        ...["--connections", "10", "--count", "3001", "--json"],
        ...["--plot", chart, "--plot-agents", "--label", "all three"],
      ]),
    );
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(new TextDecoder().decode(result.stdout));
    assert.equal(report.roundTrips, 3001);
    assert.equal(report.degraded, false);
    const parts = report.agents as {
      name: string;
      connections: number;
      report: LoadReport;
    }[];
    assert.deepEqual(parts.map((p) => p.name), names);
    assert.deepEqual(parts.map((p) => p.connections), [4, 3, 3]);
    assert.deepEqual(parts.map((p) => p.report.roundTrips), [1201, 900, 900]);
    assert.deepEqual(parts.map((p) => p.report.sourceConnects), [
      { "127.0.0.11": 4 },
      { "127.0.0.12": 3 },
      { "127.0.0.13": 3 },
    ]);
    assert.equal(
      report.latencyHistogram,
      addHistograms(parts.map((p) => p.report.latencyHistogram)).histogram,
    );
    assert.equal(
      report.connects,
      parts.reduce((n, p) => n + p.report.connects, 0),
    );
    // The chart: the merged run and each agent, by name.
    const svg = await Deno.readTextFile(chart);
    for (const name of ["all three", ...names]) {
      assert.ok(svg.includes(name), `${name} is not in the chart`);
    }
    for (const agent of agents) await agent.stderr.waitFor(/reported$/);
  } finally {
    for (const agent of agents) await agent[Symbol.asyncDispose]();
  }
});

Deno.test("an agent killed mid-run is reported by name, the run ends on time, and the exit code says it was degraded", async () => {
  await using redis = await startRedis();
  await using server = serveEcho({ port: 0 });
  await server.ready;
  const agents = ["k1", "k2", "k3"].map((name) =>
    agentProcess(redis.url, name)
  );
  try {
    for (const agent of agents) await agent.stderr.waitFor(/waiting for plans/);
    const coordinator = new Spawned(
      Deno.execPath(),
      coordinatorArgs(redis.url, [
        ...["--agents", "3", "--port", String(server.addr.port)],
        ...["--connections", "3", "--duration", "4", "--report-interval", "1"],
      ]),
    );
    await using _coordinator = coordinator;
    // Once the run is under way, k2 dies.
    await agents[1].stderr.waitFor(/^Run \S+: 1 connections/);
    await coordinator.stderr.waitFor(/round trips, [1-9][\d,]*\/s/);
    const began = performance.now();
    agents[1].child.kill("SIGKILL");
    const { code } = await coordinator.status();
    // 4 s of run, and at most 7 s to see that k2 is gone.
    assert.ok(performance.now() - began < 15_000);
    assert.equal(code, 3, coordinator.stderr.text);
    await coordinator.stdout.waitFor(
      /^agent {8}k2 \(.*\): 1 connections, [\d,]+ round trips by its last progress, gone \(no heartbeat\): partial, in the figures above up to then, 0 errors$/,
    );
    await coordinator.stdout.waitFor(/^agent {8}k1 .* round trips, [\d,]+\/s/);
    // The merged round trips: the two reports', and k2's up to its last
    // progress.
    const count = (line: string) =>
      Number(/ ([\d,]+) round trips/.exec(line)![1].replaceAll(",", ""));
    const total = /^round trips {2}([\d,]+) in/.exec(
      await coordinator.stdout.waitFor(/^round trips {2}/),
    )![1];
    const parts = coordinator.stdout.lines.filter((l) => l.startsWith("agent"));
    assert.equal(parts.length, 3);
    assert.equal(
      Number(total.replaceAll(",", "")),
      parts.reduce((n, l) => n + count(l), 0),
    );
    await coordinator.stderr.waitFor(
      /^error: 1 of 3 agents have no report: k2 \(gone \(no heartbeat\)\)$/,
    );
  } finally {
    for (const agent of agents) await agent[Symbol.asyncDispose]();
  }
});

Deno.test("Redis restarted mid-run: the agents run on, report once it is back, and nothing is counted twice", async () => {
  await using redis = await startRedis();
  await using server = serveEcho({ port: 0 });
  await server.ready;
  const agents = ["r1", "r2"].map((name) => agentProcess(redis.url, name));
  try {
    for (const agent of agents) await agent.stderr.waitFor(/waiting for plans/);
    const coordinator = new Spawned(
      Deno.execPath(),
      coordinatorArgs(redis.url, [
        ...["--agents", "2", "--port", String(server.addr.port)],
        ...["--connections", "2", "--duration", "4", "--json"],
      ]),
    );
    await using _coordinator = coordinator;
    for (const agent of agents) await agent.stderr.waitFor(/^Run /);
    await redis.kill();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await redis.start();
    const { code } = await coordinator.status();
    assert.equal(code, 0, coordinator.stderr.text);
    const report = JSON.parse(coordinator.stdout.text);
    assert.equal(report.degraded, false);
    const parts = report.agents as { report: LoadReport }[];
    assert.equal(
      report.roundTrips,
      parts.reduce((n, p) => n + p.report.roundTrips, 0),
    );
    assert.ok(parts.every((p) => p.report.roundTrips > 0));
  } finally {
    for (const agent of agents) await agent[Symbol.asyncDispose]();
  }
});

Deno.test("another plan version: the coordinator leaves such an agent out and names it; an agent refuses such a plan and says why", async () => {
  await using redis = await startRedis();
  const socket = redis.url.replace(/^unix:\/\//, "");
  // An agent of another version, as it would say it is there.
  const cli = (...args: string[]) => run("redis-cli", ["-s", socket, ...args]);
  await cli(
    "HSET",
    "tcp-echo:load:agents",
    "old",
    '{"name":"old","version":99,"engine":"default","host":"h"}',
  );
  await cli("SET", "tcp-echo:load:alive:old", "1", "EX", "60");
  await assert.rejects(
    coordinateLoad({
      redis: redis.url,
      agents: 1,
      agentsTimeout: 300,
      count: 5,
    }),
    /^Error: 0 of 1 agents came within 0\.3 s; refused for another plan version: old \(99\)$/,
  );
  // A plan of another version, sent to a real agent.
  await using agent = await runLoadAgent({ redis: redis.url, name: "now" });
  const link = await LoadLink.open(redis.url, "tcp-echo");
  try {
    await link.sendPlan(
      { version: 2, run: "r1", agent: "now", options: {}, startAt: 0 },
      "now",
    );
    let heard: Awaited<ReturnType<LoadLink["heard"]>> = [];
    for (let i = 0; i < 50 && heard.length === 0; i++) {
      heard = await link.heard("r1", "0", 100);
    }
    assert.deepEqual(heard.map((h) => h.event), [{
      kind: "refused",
      agent: "now",
      reason:
        "plan version 2, but agent now runs version 1: run the same version of tcp-echo on both",
    }]);
  } finally {
    link.close();
  }
  await agent.close();
});

for (const engine of ["default", "native"] as const) {
  Deno.test(`sourceAddresses [${engine}]: 40 connections over 127.0.0.0/29 reach the server from its 6 hosts, as the report counts them`, async () => {
    // A server that notes where each connection comes from, and echoes.
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const peers = new Map<string, number>();
    const serving = (async () => {
      const echoes: Promise<void>[] = [];
      for await (const conn of listener) {
        const { hostname } = conn.remoteAddr as Deno.NetAddr;
        peers.set(hostname, (peers.get(hostname) ?? 0) + 1);
        echoes.push(
          conn.readable.pipeTo(conn.writable).catch(() => {}),
        );
      }
      await Promise.all(echoes);
    })();
    const report = await loadTest({
      port: listener.addr.port,
      connections: 40,
      count: 400,
      sourceAddresses: ["127.0.0.0/29"],
      engine,
    });
    listener.close();
    await serving;
    assert.equal(report.roundTrips, 400);
    const hosts = ["1", "2", "3", "4", "5", "6"].map((h) => `127.0.0.${h}`);
    assert.deepEqual(Object.keys(report.sourceConnects!), hosts);
    assert.deepEqual(Object.values(report.sourceConnects!), [7, 7, 7, 7, 6, 6]);
    assert.deepEqual([...peers.keys()].sort(), hosts);
    assert.deepEqual(
      hosts.map((h) => peers.get(h)),
      Object.values(report.sourceConnects!),
    );
  });
}

Deno.test("sourceAddresses: what is not an address or an IPv4 block, and what they cannot go with, are option errors", async () => {
  for (
    const [sources, message] of [
      [["127.0.0.0/33"], /127\.0\.0\.0\/33: bad prefix length/],
      [["nonsense"], /nonsense is not an address or an IPv4 CIDR block/],
      [["::1/120"], /::1\/120 is not an address or an IPv4 CIDR block/],
      [["10.0.0.0/8"], /more than 4096 addresses/],
    ] as const
  ) {
    await assert.rejects(
      loadTest({ port: 9, count: 1, sourceAddresses: sources }),
      message,
    );
  }
  await assert.rejects(
    loadTest({ udp: true, port: 9, count: 1, sourceAddresses: ["127.0.0.1"] }),
    /sourceAddresses: TCP and TLS only/,
  );
});

Deno.test("the command line: a Redis that does not answer is one line and exit 1, for an agent and a coordinator", async () => {
  const dead = "redis://127.0.0.1:9";
  const agent = await run(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", "--allow-sys=hostname", CLIENT],
    ...["--redis", dead, "--agent"],
  ]);
  assert.equal(agent.code, 1);
  assert.match(
    agent.stderr,
    /^error: Cannot start the agent: Redis at redis:\/\/127\.0\.0\.1:9: [^\n]+\n$/,
  );
  const coordinator = await run(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", "--allow-sys=hostname", CLIENT],
    ...["--redis", dead, "--agents", "2", "--connections", "2"],
  ]);
  assert.equal(coordinator.code, 1);
  assert.match(
    coordinator.stderr,
    /^error: Load test on agents failed: Redis at redis:\/\/127\.0\.0\.1:9: [^\n]+\n$/,
  );
  const usage = await run(Deno.execPath(), [
    ...["run", LOCK, "--allow-net", CLIENT, "--redis", dead, "--agents", "2"],
  ]);
  assert.equal(usage.code, 2);
  assert.equal(
    usage.stderr,
    "error: --agents needs a load test (--connections, --count, --duration, ...) (see --help)\n",
  );
});

for (const engine of ["default", "native"] as const) {
  Deno.test(`progressHistogram [${engine}]: each progress carries the latencies so far, which an agent sends its coordinator`, async () => {
    await using server = serveEcho({ port: 0 });
    await server.ready;
    const seen: string[] = [];
    const report = await loadTest({
      port: server.addr.port,
      connections: 2,
      duration: 1200,
      engine,
      progressInterval: 200,
      progressHistogram: true,
      onProgress: (p) => {
        if (p.latencyHistogram !== undefined) seen.push(p.latencyHistogram);
      },
    });
    assert.ok(seen.length >= 2, `${seen.length} histograms`);
    const counts = seen.map((encoded) => {
      const h = decodeHistogram(encoded);
      const n = h.totalCount;
      h.destroy();
      return n;
    });
    // They grow, and never pass what the report counts.
    assert.ok(counts.at(-1)! > 0);
    assert.deepEqual([...counts].sort((a, b) => a - b), counts);
    assert.ok(counts.at(-1)! <= report.roundTrips);
  });
}
