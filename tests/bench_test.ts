// The benchmark runner works end to end: every server, every workload, no
// errors. Figures are not checked here (speed belongs in benchmarks).

import assert from "node:assert/strict";
import { runsIn } from "../lib/cli/plot.ts";
import { tempDir } from "./_helpers.ts";
import { LOCK, run } from "./_process.ts";

Deno.test("deno task bench runs every server over every workload, and the workers comparison, and draws its latency charts", async () => {
  await using out = await tempDir("tcp-echo-bench-");
  const result = await run(Deno.execPath(), [
    "run",
    LOCK,
    "-A",
    "--unstable-net",
    new URL("../bench/run.ts", import.meta.url).pathname,
    "--duration",
    "0.4",
    "--bulk",
    "2",
    "--idle",
    "50",
    "--reps",
    "1",
    "--out",
    out.path,
  ]);
  assert.equal(result.code, 0, result.stderr);
  const files = [...Deno.readDirSync(out.path)].map((e) => e.name).sort();
  const json = files.find((name) => name.endsWith(".json"))!;
  const { meta, results, workers, tls, udp, rules, cluster } = JSON.parse(
    await Deno.readTextFile(`${out.path}/${json}`),
  );
  // One chart per ping-pong workload, a line per server.
  const charts = files.filter((name) => name.endsWith(".svg"));
  assert.deepEqual(
    charts.map((name) => name.replace(/^.*-latency-/, "")),
    ["4096x1.svg", "4096x50.svg", "64x1.svg", "64x50.svg"],
  );
  for (const chart of charts) {
    const svg = await Deno.readTextFile(`${out.path}/${chart}`);
    assert.deepEqual(
      runsIn(svg).map((r) => r.label),
      Object.keys(results),
      chart,
    );
  }
  assert.equal(meta.idleConns, 50);
  assert.deepEqual(Object.keys(results), [
    "project",
    "project_native",
    "node_net",
    "deno_pipe",
  ]);
  for (const [server, cells] of Object.entries(results)) {
    assert.deepEqual(Object.keys(cells as object), [
      "64 B × 1",
      "64 B × 50",
      "4096 B × 1",
      "4096 B × 50",
      "bulk",
      "idle",
      "churn half-close",
      "churn open-close",
    ]);
    for (const [workload, cell] of Object.entries(cells as object)) {
      assert.equal(cell.errors, 0, `${server} ${workload}`);
      assert.ok(cell.value > 0, `${server} ${workload}: ${cell.value}`);
    }
  }
  // TLS: ours through the gate and native, and Node's, without an error.
  assert.deepEqual(Object.keys(tls), [
    "project",
    "project_native",
    "node_tls",
  ]);
  for (const [server, cells] of Object.entries(tls)) {
    assert.deepEqual(Object.keys(cells as object), [
      "64 B × 50",
      "bulk",
      "idle",
    ]);
    for (const [workload, cell] of Object.entries(cells as object)) {
      assert.equal(cell.errors, 0, `TLS ${server} ${workload}`);
      assert.ok(cell.value > 0, `TLS ${server} ${workload}: ${cell.value}`);
    }
  }
  assert.deepEqual(Object.keys(rules), ["none", "rules"]);
  for (const [name, cells] of Object.entries(rules)) {
    const cell = (cells as Record<string, { errors: number; value: number }>)[
      "64 B × 50"
    ];
    assert.equal(cell.errors, 0, `rules ${name}`);
    assert.ok(cell.value > 0, `rules ${name}: ${cell.value}`);
  }
  assert.deepEqual(Object.keys(udp), ["project", "node_dgram"]);
  for (const [server, cells] of Object.entries(udp)) {
    const cell = (cells as Record<string, { errors: number; value: number }>)[
      "UDP 64 B × 50"
    ];
    // Ours must be clean. Node's dgram echo, the reference, once had an
    // error in a 0.4 s run on a loaded CI machine: its figures still count,
    // its errors are not ours to fail on.
    if (server === "project") assert.equal(cell.errors, 0, `UDP ${server}`);
    assert.ok(cell.value > 0, `UDP ${server}: ${cell.value}`);
  }
  // Broadcast on one instance and on three through Redis: every line to
  // every client, once, in one order.
  assert.deepEqual(Object.keys(cluster), ["one", "three"]);
  for (const [layout, cell] of Object.entries(cluster)) {
    const { errors, value } = cell as { errors: number; value: number };
    assert.equal(errors, 0, `cluster ${layout}`);
    assert.ok(value > 0, `cluster ${layout}: ${value}`);
  }
  assert.deepEqual(Object.keys(workers), ["workers 1", "workers 2"]);
  for (const [count, cell] of Object.entries(workers)) {
    const { errors, value, perWorker } = cell as {
      errors: number;
      value: number;
      perWorker: number[];
    };
    assert.equal(errors, 0, count);
    assert.ok(value > 0, `${count}: ${value}`);
    // Every one of the 200 connections is counted on some worker.
    assert.equal(perWorker.length, Number(count.split(" ")[1]));
    assert.equal(perWorker.reduce((a, b) => a + b), 400, `${perWorker}`);
  }
});

const YARDSTICK = new URL("../../shared/bench/", import.meta.url).pathname;
const hasYardstick = (() => {
  try {
    Deno.statSync(`${YARDSTICK}loadgen/loadgen.c`);
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "deno task bench:yardstick builds the C yardstick and measures both engines against it",
  // The yardstick lives beside this repository (../shared/bench), not in it.
  ignore: !hasYardstick,
  async fn() {
    const result = await run(Deno.execPath(), [
      "run",
      LOCK,
      "-A",
      new URL("../bench/yardstick.ts", import.meta.url).pathname,
      "--reps",
      "1",
      "--duration",
      "0.5",
      "--bulk",
      "4M",
      "--idle",
      "100",
    ]);
    assert.equal(result.code, 0, result.stderr);
    const text = new TextDecoder().decode(result.stdout);
    assert.match(text, /errors in all runs: 0$/m);
    for (
      const row of [
        /^\| 64 B × 50: server µs CPU\/round trip \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/m,
        /^\| bulk 4M: MB\/s \| [\d,]+ \| [\d,]+ \| [\d,]+ \|/m,
        /^\| server µs CPU\/round trip \| [\d.]+ \| [\d.]+ \|/m,
        /^\| client native \(io_uring\) \| [\d,]+ \| [\d,]+ \| [\d.]+× \| 0 \|$/m,
        /^\| client native \(epoll\) \| [\d,]+ \| [\d,]+ \| [\d.]+× \| 0 \|$/m,
        /^\| server µs CPU\/datagram \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+× \| [\d.]+× \|$/m,
        /^\| native server, native client, 64 B × 50 \| no rules \| PROXY \+ allow \+ per-address limit \| ratio \|$/m,
        /^\| native server, native client, 64 B × 50 \| TCP \| Unix socket \| ratio \|$/m,
        /^\| 64 B × 50: server µs CPU\/round trip \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+× \| [\d.]+× \|$/m,
        /^\| handshakes\/s \(8 at once\) \| [\d,]+ \| [\d,]+ \| [\d,]+ \| [\d.]+× \| [\d.]+× \|$/m,
      ]
    ) {
      assert.match(text, row);
    }
  },
});

Deno.test("deno task bench:fanout measures chat fan-out on both engines, every line checked at every reader", async () => {
  const text = await runBench("fanout.ts", [
    "--readers",
    "20",
    "--lines",
    "50",
    "--reps",
    "1",
  ]);
  assert.match(text, /1 sender and 20 readers in one room, 50 lines/);
  assert.match(text, /errors in all runs: 0$/m);
  assert.match(
    text,
    /^\| lines delivered\/s \| [\d,]+ \| [\d,]+ \| [\d.]+× \|$/m,
  );
});

Deno.test("bench, bench:yardstick and bench:fanout print their usage, and a bad command line is one line and exit 2", async () => {
  const script = (name: string) =>
    new URL(`../bench/${name}.ts`, import.meta.url).pathname;
  for (
    const [name, task] of [
      ["run", "bench"],
      ["yardstick", "bench:yardstick"],
      ["fanout", "bench:fanout"],
    ]
  ) {
    const help = await run(Deno.execPath(), [
      "run",
      LOCK,
      "-A",
      script(name),
      "--help",
    ]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(
      new TextDecoder().decode(help.stdout),
      new RegExp(`^Usage: deno task ${task} \\[options\\]\n`),
    );
    const bad = await run(Deno.execPath(), [
      "run",
      LOCK,
      "-A",
      script(name),
      "--bogus",
    ]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, "error: Unknown option '--bogus' (see --help)\n");
  }
  await using empty = await tempDir();
  const missing = await run(Deno.execPath(), [
    ...["run", LOCK, "-A", script("yardstick"), "--dir", empty.path],
  ]);
  assert.equal(missing.code, 2);
  assert.equal(
    missing.stderr,
    `error: Cannot find the C yardstick in ${empty.path} (loadgen/loadgen.c, servers/c_epoll.c, loadgen/udp_loadgen.c, servers/c_udp_echo.c, loadgen/tls_loadgen.c, servers/c_tls_epoll.c): it comes with ../shared/bench, or give --dir DIR (see --help)\n`,
  );
});

Deno.test("deno task bench:faults measures its six cells without an error", async () => {
  const out = await runBench("faults.ts", [
    "--reps",
    "1",
    "--duration",
    "0.3",
    "--bytes",
    "200000",
  ]);
  assert.match(out, /errors in all runs: 0$/m);
  // The table: a header, its rule, and a row per cell.
  assert.equal(out.split("\n").filter((l) => l.startsWith("| ")).length, 8);
  // The code before issue 23 measured beside today's (a full clone has it).
  assert.match(
    out,
    /before issue 23 \(b6ac5a7\^\) → now \| (n\/a \(no b6ac5a7\^ here: .*\)|\d+\.\d+ → \d+\.\d+ \(\d+\.\d+×\)) \|/,
  );
  assert.match(out, /^\| latency 100 ms: the median round trip rises by/m);
});

Deno.test("deno task bench:websocket measures our server and Node's ws without an error", async () => {
  const out = await runBench("websocket.ts", [
    "--reps",
    "1",
    "--duration",
    "0.3",
  ]);
  assert.match(out, /errors in all runs: 0$/m);
  assert.match(
    out,
    /^\| ours \(--websocket-only, default engine\) \| [\d,]+ \| \d+\.\d+ \|$/m,
  );
  assert.match(out, /^\| Node ws 8\.23\.1 \| [\d,]+ \| \d+\.\d+ \|$/m);
  assert.match(out, /^\| ours ÷ Node \| \d+\.\d+× \| \d+\.\d+× \|$/m);
});

Deno.test("deno task bench:agents measures a load alone and on one agent through Redis without an error", async () => {
  const out = await runBench("agents.ts", ["--reps", "1", "--duration", "0.3"]);
  assert.match(out, /errors in all runs: 0$/m);
  assert.match(out, /^\| this process alone \| [\d,]+ \|$/m);
  assert.match(out, /^\| one agent, through Redis \| [\d,]+ \|$/m);
  assert.match(
    out,
    /^\| coordination costs \(median of the repetitions' costs\) \| -?\d+\.\d+ % \|$/m,
  );
});

/**
 * Runs `bench/NAME` briefly with `args`: it must exit 0; resolves what it
 * printed.
 */
async function runBench(name: string, args: string[]): Promise<string> {
  const result = await run(Deno.execPath(), [
    ...[
      "run",
      LOCK,
      "-A",
      new URL(`../bench/${name}`, import.meta.url).pathname,
    ],
    ...args,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return new TextDecoder().decode(result.stdout);
}
