/**
 * `deno task bench:yardstick`: our two engines against the yardstick of
 * `../shared/bench`, its C epoll echo server and its C load generator
 * (built here with gcc from that directory), on the native engine's
 * targets. The server runs on CPU 0 and the load on CPU 1 (taskset), as in
 * the yardstick's own run; repetitions take turns across servers, and the
 * table gives each cell's median.
 *
 * - Servers (c_epoll, native, default) under the C load generator: 64 B and
 *   4 KiB × 50 connections (round trips/s, server µs of CPU per round trip,
 *   p99), a bulk stream (MB/s, server CPU s/GB), and 10,000 idle
 *   connections (server kB per connection, from a fresh process).
 * - `--workers 1` against `--workers 2` of the native engine at 64 B × 200:
 *   server µs of CPU per round trip.
 * - TLS 1.3 (the yardstick's tls_loadgen and its C server, c_tls_epoll, on
 *   OpenSSL): 64 B and 4 KiB × 50 connections (server µs of CPU per round
 *   trip), and full handshakes 8 at once (handshakes a second, server µs
 *   of CPU each). Building them needs OpenSSL's headers (libssl-dev).
 *   And the load generators against c_tls_epoll: tls_loadgen and our
 *   native load client at 64 B and 4 KiB × 50 (round trips a second).
 * - UDP at 64 B × 50 sockets ping-ponging (the yardstick's udp_loadgen):
 *   c_udp_echo (recvmmsg/sendmmsg), native and default, server µs of CPU
 *   per datagram.
 * - The native engine at 64 B × 50, driven by our native load client, with
 *   the rules at the door (`--proxy-protocol --allow 127.0.0.0/8
 *   --max-connections-per-ip 1000`, the client sending a PROXY v2 header)
 *   against none: server µs of CPU per round trip.
 * - The native engine over a Unix socket against TCP, driven by our native
 *   load client at 64 B × 50: server µs of CPU per round trip.
 * - Load generators against c_epoll at 64 B × 50: the C load generator,
 *   and `deno task client` with each engine, the native one on io_uring
 *   and on epoll (every byte still compared), each after a 1 s warm-up.
 *
 * ```sh
 * deno task bench:yardstick                      # 3 repetitions of 5 s
 * deno task bench:yardstick --reps 1 --duration 2 --bulk 64M --idle 1000
 * ```
 *
 * @module
 */

import dgram from "node:dgram";
import { parseArgs } from "node:util";
import { createCertificates } from "../mod.ts";
import {
  benchFlags,
  cpuMs,
  DENO,
  fmt,
  LOCK,
  markdown,
  middle,
  positive,
  ROOT,
  usageError,
} from "./_harness.ts";

/** The yardstick's C sources, in its folder: the load generator, the server. */
const SOURCES = [
  "loadgen/loadgen.c",
  "servers/c_epoll.c",
  "loadgen/udp_loadgen.c",
  "servers/c_udp_echo.c",
  "loadgen/tls_loadgen.c",
  "servers/c_tls_epoll.c",
] as const;

/** `deno task bench:yardstick --help`. */
const USAGE = `Usage: deno task bench:yardstick [options]

Our two engines against ../shared/bench's C epoll echo server and C load
generator (built here with gcc), on the native engine's targets; server on
CPU 0, load on CPU 1.

Options:
  --reps N        repetitions, taking turns across servers (default: 3)
  --duration S    seconds a workload (default: 5)
  --bulk SIZE     bulk stream size, as the load generator takes it
                  (default: 512M)
  --idle N        idle connections (default: 10000)
  --dir DIR       the yardstick's folder (default: ../shared/bench)
  -h, --help      print this help and exit`;

const FILES = 20_000;

interface Options {
  reps: number;
  duration: number;
  bulk: string;
  idle: number;
  dir: string;
}

/** A server under test: its command, `{PORT}` replaced by the port. */
const SERVERS: Record<string, (bin: string) => string[]> = {
  c_epoll: (bin) => [`${bin}/c_epoll`, "{PORT}"],
  native: () => server(["--engine", "native"]),
  default: () => server([]),
};

/** One of our CLIs, with the permissions either engine needs. */
function cli(script: string, args: string[]): string[] {
  const allow = [
    "--allow-net",
    "--allow-read",
    "--allow-ffi",
    "--unstable-net",
  ];
  return [DENO, "run", LOCK, ...allow, `${ROOT}${script}`, ...args];
}

function server(extra: string[]): string[] {
  return cli("server.ts", [
    "--port",
    "{PORT}",
    "--log-level",
    "error",
    ...extra,
  ]);
}

/** The client CLI driving `port` at 64 B × 50 with `engine` flags. */
function client(engine: string[], port: number, seconds: number): string[] {
  return cli("client.ts", [
    ...["--port", String(port), ...engine],
    ...["--connections", "50", "--size", "64"],
    ...["--warmup", "1", "--duration", String(seconds), "--json"],
  ]);
}

/** A port the kernel had free a moment ago. */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** Runs `command` on `cpu` with room for many descriptors. */
function pinned(cpu: number, command: string[]): Deno.Command {
  return new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n ${FILES} && exec taskset -c ${cpu} "$@"`,
      "bash",
      ...command,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** A started server: its port and PID (bash and taskset exec it). */
interface Running extends AsyncDisposable {
  port: number;
  pid: number;
}

/**
 * Starts `command` on CPU 0; once its TCP port answers (or, with `udp`,
 * once its UDP port is bound), and half a second more, it is measured.
 */
async function start(command: string[], udp = false): Promise<Running> {
  const port = freePort();
  const child = pinned(0, command.map((a) => a.replace("{PORT}", String(port))))
    .spawn();
  const output = child.output();
  let exited = false;
  child.status.then(() => exited = true);
  /** Stops the child if it runs, and throws with what it said. */
  const failed = async (why: string): Promise<never> => {
    if (!exited) child.kill("SIGKILL");
    const { code, stderr } = await output;
    throw new Error(
      `${command.join(" ")} ${why} (exit code ${code}): ${
        new TextDecoder().decode(stderr).trim().slice(-2000)
      }`,
    );
  };
  for (let i = 0; udp; i++) {
    // Bound once it echoes a datagram. (Binding the port ourselves to see
    // whether it is taken could take it from the server starting.)
    if (await echoesDatagram(port)) break;
    if (exited || i === 200) await failed("did not bind UDP");
  }
  for (let i = 0; !udp; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch (error) {
      if (exited || i === 200) await failed(`did not listen: ${error}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  // As the yardstick's run.sh does once the port listens: a server that
  // finishes starting in the background (a worker, a JIT) is not measured
  // starting.
  await new Promise((resolve) => setTimeout(resolve, 500));
  return {
    port,
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      // Ended on its own, during the measurement: say how.
      if (exited) await failed("exited during the run");
      child.kill("SIGKILL");
      await output;
    },
  };
}

/** Whether a datagram to `port` on 127.0.0.1 comes back within 50 ms. */
function echoesDatagram(port: number): Promise<boolean> {
  const socket = dgram.createSocket("udp4");
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 50);
    socket.on("message", () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.on("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    socket.send("ping", port, "127.0.0.1");
  }).finally(() => socket.close());
}

/** Runs the C load generator on CPU 1; returns its RESULT fields. */
async function loadgen(
  bin: string,
  args: string[],
  program = "loadgen",
): Promise<Record<string, string>> {
  const { stdout } = await pinned(1, [`${bin}/${program}`, ...args]).output();
  const line = new TextDecoder().decode(stdout).split("\n")
    .find((l) => l.startsWith("RESULT "));
  if (line === undefined) {
    throw new Error(`loadgen ${args.join(" ")}: no RESULT`);
  }
  return Object.fromEntries(
    line.slice(7).split(" ").map((pair) => pair.split("=") as [string, string]),
  );
}

/** The C load generator's ping-pong at `size` bytes over `connections`. */
function pingPongArgs(
  o: Options,
  port: number,
  connections: number,
  size: number,
  pid?: number,
): string[] {
  return [
    ..."-m pingpong -w 1".split(" "),
    ...["-p", String(port), "-c", String(connections), "-l", String(size)],
    ...["-d", String(o.duration)],
    ...(pid === undefined ? [] : ["-P", String(pid)]),
  ];
}

/** A cell: the figures of one workload on one server. */
type Cell = Record<string, number>;

function pingPong(r: Record<string, string>): Cell {
  const rt = Number(r.rt_per_s);
  const cpu = Number(r.srv_cpu_pct);
  return {
    rt,
    cpuUsPerRt: cpu / 100 * 1e6 / rt,
    p99: Number(r.p99_us),
    errors: Number(r.mismatches) + Number(r.connect_errors) +
      (r.ok === "1" ? 0 : 1),
  };
}

async function benchServer(
  name: string,
  bin: string,
  o: Options,
): Promise<Record<string, Cell>> {
  const cells: Record<string, Cell> = {};
  const command = SERVERS[name](bin);
  {
    await using s = await start(command);
    for (const size of [64, 4096]) {
      cells[`${size} B × 50`] = pingPong(
        await loadgen(bin, pingPongArgs(o, s.port, 50, size, s.pid)),
      );
    }
    const bulk = await loadgen(bin, [
      "-m",
      "bulk",
      "-p",
      String(s.port),
      "-c",
      "1",
      "-s",
      o.bulk,
      "-T",
      "60",
      "-P",
      String(s.pid),
    ]);
    const mbs = Number(bulk.mb_per_s);
    cells.bulk = {
      mbs,
      cpuSPerGb: Number(bulk.srv_cpu_pct) / 100 / (mbs / 1000),
      errors: Number(bulk.mismatches) + (bulk.ok === "1" ? 0 : 1),
    };
  }
  {
    await using s = await start(command);
    const idle = await loadgen(bin, [
      "-m",
      "idle",
      "-p",
      String(s.port),
      "-c",
      String(o.idle),
      "-d",
      "3",
      "-k",
      "256",
      "-T",
      "90",
      "-P",
      String(s.pid),
    ]);
    cells.idle = {
      kbPerConn: Number(idle.kb_per_conn),
      errors: idle.ok === "1" ? 0 : 1,
    };
  }
  return cells;
}

async function benchWorkers(bin: string, o: Options): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const workers of [1, 2]) {
    await using s = await start(
      server(["--engine", "native", "--workers", String(workers)]),
    );
    cells.push(pingPong(
      await loadgen(bin, pingPongArgs(o, s.port, 200, 64, s.pid)),
    ));
  }
  return cells;
}

/** UDP servers: CPU 0's command for each, `{PORT}` replaced. */
const UDP_SERVERS: Record<string, (bin: string) => string[]> = {
  c_udp_echo: (bin) => [`${bin}/c_udp_echo`, "{PORT}"],
  native: () =>
    server(["--engine", "native", "--udp-only", "--udp-rate", "unlimited"]),
  default: () => server(["--udp-only", "--udp-rate", "unlimited"]),
};

/** 64-byte datagrams over 50 sockets: server µs of CPU per datagram. */
async function benchUdp(bin: string, o: Options): Promise<Cell> {
  const cell: Cell = { errors: 0 };
  for (const [name, command] of Object.entries(UDP_SERVERS)) {
    await using s = await start(command(bin), true);
    const r = await loadgen(bin, [
      ...["-p", String(s.port), "-c", "50", "-l", "64"],
      ...["-d", String(o.duration), "-w", "1", "-P", String(s.pid)],
    ], "udp_loadgen");
    cell[name] = Number(r.srv_us_per_unit);
    cell.errors += Number(r.mismatches) + Number(r.errors) +
      (r.ok === "1" ? 0 : 1);
  }
  return cell;
}

/**
 * Server µs of CPU per round trip of the native server (with
 * `serverExtra`), driven by our native load client (with `clientExtra`) at
 * 64 B × 50 for `o.duration` seconds: the whole run's CPU over its round
 * trips. `path` puts both on a Unix socket there instead of TCP.
 */
async function nativeRun(
  o: Options,
  path: string | undefined,
  serverExtra: string[],
  clientExtra: string[],
): Promise<{ us: number; errors: number }> {
  const port = freePort();
  const where = path === undefined
    ? ["--port", String(port)]
    : ["--unix", path];
  const child = pinned(0, [
    ...cli("server.ts", ["--log-level", "error", "--engine", "native"]),
    ...where,
    ...serverExtra,
  ]).spawn();
  const output = child.output();
  try {
    for (let i = 0;; i++) {
      try {
        (path === undefined
          ? await Deno.connect({ hostname: "127.0.0.1", port })
          : await Deno.connect({ transport: "unix", path })).close();
        break;
      } catch (error) {
        if (i === 200) throw new Error(`server did not listen: ${error}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const before = await cpuMs(child.pid);
    const { stdout, success } = await pinned(
      1,
      cli("client.ts", [
        ...where,
        ...["--engine", "native", "--connections", "50", "--size", "64"],
        ...["--duration", String(o.duration), "--json"],
        ...clientExtra,
      ]),
    ).output();
    const cpu = await cpuMs(child.pid) - before;
    const report = JSON.parse(new TextDecoder().decode(stdout));
    return {
      us: cpu * 1000 / report.roundTrips,
      errors: report.mismatches + report.otherErrors + report.connectErrors +
        (success ? 0 : 1),
    };
  } finally {
    child.kill("SIGKILL");
    await output;
  }
}

/**
 * The rules at the door against none, on the native server: the PROXY
 * protocol (our native client sends a v2 header on each connection), an
 * allow list and a per-address limit.
 */
async function benchRules(o: Options): Promise<Cell> {
  const none = await nativeRun(o, undefined, [], []);
  const rules = await nativeRun(o, undefined, [
    ...["--proxy-protocol", "--allow", "127.0.0.0/8"],
    ...["--max-connections-per-ip", "1000"],
  ], ["--send-proxy", "v2"]);
  return {
    none: none.us,
    rules: rules.us,
    errors: none.errors + rules.errors,
  };
}

/** The native server over a Unix socket against TCP (see nativeRun). */
async function benchUnix(o: Options): Promise<Cell> {
  const dir = await Deno.makeTempDir({ prefix: "tcp-echo-unix-" });
  try {
    const tcp = await nativeRun(o, undefined, [], []);
    const unix = await nativeRun(o, `${dir}/echo.sock`, [], []);
    return { tcp: tcp.us, unix: unix.us, errors: tcp.errors + unix.errors };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function benchClients(
  bin: string,
  o: Options,
): Promise<Record<string, Cell>> {
  const cells: Record<string, Cell> = {};
  await using s = await start(SERVERS.c_epoll(bin));
  cells.c_loadgen = pingPong(
    await loadgen(bin, pingPongArgs(o, s.port, 50, 64)),
  );
  const engines: Record<string, string[]> = {
    "client native (io_uring)": [
      "--engine",
      "native",
      "--native-io",
      "io_uring",
    ],
    "client native (epoll)": ["--engine", "native", "--native-io", "epoll"],
    "client default": ["--engine", "default"],
  };
  for (const [name, engine] of Object.entries(engines)) {
    const { stdout, success } = await pinned(
      1,
      client(engine, s.port, o.duration),
    ).output();
    const report = JSON.parse(new TextDecoder().decode(stdout));
    cells[name] = {
      rt: report.roundTripsPerSecond,
      p99: report.latencyUs.p99,
      errors: report.mismatches + report.otherErrors + report.connectErrors +
        (success ? 0 : 1),
    };
  }
  return cells;
}

/** TLS servers: CPU 0's command for each, with `tls`'s files. */
const TLS_SERVERS: Record<
  string,
  (bin: string, tls: { cert: string; key: string }) => string[]
> = {
  c_tls_epoll: (
    bin,
    tls,
  ) => [`${bin}/c_tls_epoll`, "{PORT}", tls.cert, tls.key],
  native: (_, tls) =>
    server([
      "--engine",
      "native",
      "--tls-cert",
      tls.cert,
      "--tls-key",
      tls.key,
    ]),
  default: (_, tls) => server(["--tls-cert", tls.cert, "--tls-key", tls.key]),
};

/**
 * TLS 1.3 under the yardstick's tls_loadgen: 64 B and 4 KiB × 50 (server
 * µs of CPU per round trip), and full handshakes 8 at once (handshakes a
 * second, server µs of CPU each), for each TLS server.
 */
async function benchTls(
  bin: string,
  o: Options,
  tls: { ca: string; cert: string; key: string },
): Promise<Record<string, Cell>> {
  const cells: Record<string, Cell> = {};
  for (const [name, command] of Object.entries(TLS_SERVERS)) {
    await using s = await start(command(bin, tls));
    const run = (args: string[]) =>
      loadgen(bin, [
        ...["-p", String(s.port), "-d", String(o.duration), "-w", "1"],
        ...["-A", tls.ca, "-P", String(s.pid), ...args],
      ], "tls_loadgen");
    const cell: Cell = { errors: 0 };
    for (
      const [key, args] of [
        ["rt64", ["-m", "pingpong", "-c", "50", "-l", "64"]],
        ["rt4k", ["-m", "pingpong", "-c", "50", "-l", "4096"]],
        ["hs", ["-m", "handshake", "-c", "8", "-l", "64"]],
      ] as const
    ) {
      const r = await run([...args]);
      cell[key] = Number(r.srv_us_per_unit);
      if (key === "hs") cell.hsPerS = Number(r.per_s);
      else cell[`${key}PerS`] = Number(r.per_s);
      cell.errors += Number(r.mismatches) + Number(r.errors) +
        (r.ok === "1" ? 0 : 1);
    }
    if (name === "c_tls_epoll") {
      // Our native load client against the same server, as tls_loadgen.
      for (const [key, size] of [["rt64", 64], ["rt4k", 4096]] as const) {
        const { success, stdout } = await pinned(
          1,
          cli("client.ts", [
            ...["--port", String(s.port), "--engine", "native"],
            ...["--tls", "--ca", tls.ca, "--server-name", "localhost"],
            ...["--connections", "50", "--size", String(size)],
            ...["--warmup", "1", "--duration", String(o.duration), "--json"],
          ]),
        ).output();
        const report = JSON.parse(new TextDecoder().decode(stdout));
        cell[`${key}Client`] = report.roundTripsPerSecond;
        cell.errors += report.mismatches + report.otherErrors +
          report.connectErrors + (success ? 0 : 1);
      }
    }
    cells[name] = cell;
  }
  return cells;
}

/** Builds the yardstick's load generator and C server into a directory. */
async function build(dir: string): Promise<string> {
  const bin = await Deno.makeTempDir({ prefix: "tcp-echo-yardstick-" });
  for (
    const [out, source, ...libraries] of [
      ["loadgen", `${dir}/${SOURCES[0]}`],
      ["c_epoll", `${dir}/${SOURCES[1]}`],
      ["udp_loadgen", `${dir}/${SOURCES[2]}`],
      ["c_udp_echo", `${dir}/${SOURCES[3]}`],
      ["tls_loadgen", `${dir}/${SOURCES[4]}`, "-lssl", "-lcrypto"],
      ["c_tls_epoll", `${dir}/${SOURCES[5]}`, "-lssl", "-lcrypto"],
    ]
  ) {
    // The TLS pair needs OpenSSL's headers (Debian's libssl-dev).
    const { success, stderr } = await new Deno.Command("gcc", {
      args: ["-O2", "-o", `${bin}/${out}`, source, ...libraries],
    }).output();
    if (!success) {
      throw new Error(`gcc ${source}: ${new TextDecoder().decode(stderr)}`);
    }
  }
  return bin;
}

async function main(): Promise<void> {
  const values = benchFlags(USAGE, () =>
    parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        reps: { type: "string" },
        duration: { type: "string" },
        bulk: { type: "string" },
        idle: { type: "string" },
        dir: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values);
  const o: Options = {
    reps: positive("reps", values.reps ?? "3"),
    duration: positive("duration", values.duration ?? "5"),
    bulk: values.bulk ?? "512M",
    idle: positive("idle", values.idle ?? "10000"),
    dir: values.dir ?? `${ROOT}../shared/bench`,
  };
  for (const source of SOURCES) {
    try {
      Deno.statSync(`${o.dir}/${source}`);
    } catch {
      usageError(
        `Cannot find the C yardstick in ${o.dir} (${
          SOURCES.join(", ")
        }): it comes with ../shared/bench, or give --dir DIR`,
      );
    }
  }
  const bin = await build(o.dir);
  // A throwaway CA and certificate for the TLS servers, as tls_loadgen
  // verifies them (ECDSA P-256).
  const made = await createCertificates();
  const tlsFiles = {
    ca: `${bin}/ca.pem`,
    cert: `${bin}/cert.pem`,
    key: `${bin}/key.pem`,
  };
  Deno.writeTextFileSync(tlsFiles.ca, made.caCert);
  Deno.writeTextFileSync(tlsFiles.cert, made.cert);
  Deno.writeTextFileSync(tlsFiles.key, made.key);
  const tlsCells: Record<string, Cell>[] = [];
  const servers: Record<string, Record<string, Cell>[]> = {};
  const workers: Cell[][] = [];
  const clients: Record<string, Cell>[] = [];
  const udp: Cell[] = [];
  const rules: Cell[] = [];
  const unix: Cell[] = [];
  try {
    for (let rep = 1; rep <= o.reps; rep++) {
      for (const name of Object.keys(SERVERS)) {
        console.error(`== ${name}, repetition ${rep} of ${o.reps}`);
        (servers[name] ??= []).push(await benchServer(name, bin, o));
      }
      console.error(`== native --workers 1 and 2, repetition ${rep}`);
      workers.push(await benchWorkers(bin, o));
      console.error(`== UDP, repetition ${rep}`);
      udp.push(await benchUdp(bin, o));
      console.error(`== TLS, repetition ${rep}`);
      tlsCells.push(await benchTls(bin, o, tlsFiles));
      console.error(`== native with and without rules, repetition ${rep}`);
      rules.push(await benchRules(o));
      console.error(`== native over a Unix socket and TCP, repetition ${rep}`);
      unix.push(await benchUnix(o));
      console.error(`== load generators, repetition ${rep}`);
      clients.push(await benchClients(bin, o));
    }
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
  // Each figure's median over the repetitions, and each ratio's median over
  // the repetitions' own ratios (a run against the C server of its own
  // repetition, minutes apart at most: this VM's speed drifts).
  const names = ["c_epoll", "native", "default"];
  const row = (
    label: string,
    key: string,
    pick: (c: Cell) => number,
    digits: number,
    ratios = true,
  ): string[] => {
    const of = (name: string) => servers[name].map((r) => pick(r[key]));
    const c = of("c_epoll");
    return [
      label,
      ...names.map((name) => fmt(middle(of(name)), digits)),
      ...["native", "default"].map((name) =>
        ratios ? `${fmt(middle(of(name).map((x, i) => x / c[i])), 2)}×` : ""
      ),
    ];
  };
  const rows: string[][] = [];
  for (const key of ["64 B × 50", "4096 B × 50"]) {
    rows.push(
      row(`${key}: round trips/s`, key, (c) => c.rt, 0),
      row(`${key}: server µs CPU/round trip`, key, (c) => c.cpuUsPerRt, 2),
      row(`${key}: p99 µs`, key, (c) => c.p99, 0),
    );
  }
  rows.push(
    row(`bulk ${o.bulk}: MB/s`, "bulk", (c) => c.mbs, 0),
    row("bulk: server CPU s/GB", "bulk", (c) => c.cpuSPerGb, 3),
    row(`${o.idle} idle: server kB/conn`, "idle", (c) => c.kbPerConn, 2, false),
  );
  const errors = [
    ...Object.values(servers).flat().flatMap((r) => Object.values(r)),
    ...workers.flat(),
    ...udp,
    ...tlsCells.flatMap((r) => Object.values(r)),
    ...rules,
    ...unix,
    ...clients.flatMap((r) => Object.values(r)),
  ].reduce((sum, c) => sum + c.errors, 0);
  const workerRow = (
    label: string,
    pick: (c: Cell) => number,
    digits: number,
  ) => [
    label,
    fmt(middle(workers.map((w) => pick(w[0]))), digits),
    fmt(middle(workers.map((w) => pick(w[1]))), digits),
    `${fmt(middle(workers.map((w) => pick(w[1]) / pick(w[0]))), 2)}×`,
  ];
  const clientRow = (name: string) => [
    name,
    fmt(middle(clients.map((c) => c[name].rt)), 0),
    fmt(middle(clients.map((c) => c[name].p99)), 0),
    `${fmt(middle(clients.map((c) => c[name].rt / c.c_loadgen.rt)), 2)}×`,
    String(clients.reduce((sum, c) => sum + c[name].errors, 0)),
  ];
  console.log(
    [
      `${
        new Date().toISOString()
      }, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs, server on CPU 0, load on CPU 1; median of ${o.reps} repetitions of ${o.duration} s (1 s warm-up), ratios the median of each repetition's own; errors in all runs: ${errors}`,
      "",
      markdown(
        [
          "workload",
          "c_epoll",
          "native",
          "default",
          "native / C",
          "default / C",
        ],
        rows,
      ),
      "",
      markdown(["native, 64 B × 200", "--workers 1", "--workers 2", "2 / 1"], [
        workerRow("round trips/s", (c) => c.rt, 0),
        workerRow("server µs CPU/round trip", (c) => c.cpuUsPerRt, 2),
      ]),
      "",
      markdown(
        [
          "UDP, 64 B × 50 sockets",
          "c_udp_echo",
          "native",
          "default",
          "native / C",
          "default / C",
        ],
        [[
          "server µs CPU/datagram",
          ...["c_udp_echo", "native", "default"].map((name) =>
            fmt(middle(udp.map((c) => c[name])), 2)
          ),
          ...["native", "default"].map((name) =>
            `${fmt(middle(udp.map((c) => c[name] / c.c_udp_echo)), 2)}×`
          ),
        ]],
      ),
      "",
      markdown(
        [
          "TLS 1.3 (tls_loadgen)",
          "c_tls_epoll",
          "native",
          "default",
          "native / C",
          "default / C",
        ],
        ([
          ["64 B × 50: server µs CPU/round trip", "rt64", 2],
          ["4 KiB × 50: server µs CPU/round trip", "rt4k", 2],
          ["handshakes/s (8 at once)", "hsPerS", 0],
          ["server µs CPU/handshake", "hs", 0],
        ] as const).map(([label, key, digits]) => [
          label,
          ...["c_tls_epoll", "native", "default"].map((name) =>
            fmt(middle(tlsCells.map((c) => c[name][key])), digits)
          ),
          ...["native", "default"].map((name) =>
            `${
              fmt(
                middle(
                  tlsCells.map((c) => c[name][key] / c.c_tls_epoll[key]),
                ),
                2,
              )
            }×`
          ),
        ]),
      ),
      "",
      markdown(
        [
          "TLS load generator → c_tls_epoll",
          "tls_loadgen round trips/s",
          "native client round trips/s",
          "native / C",
        ],
        ([["64 B × 50", "rt64"], ["4 KiB × 50", "rt4k"]] as const).map((
          [label, key],
        ) => {
          const c = tlsCells.map((r) => r.c_tls_epoll);
          return [
            label,
            fmt(middle(c.map((r) => r[`${key}PerS`])), 0),
            fmt(middle(c.map((r) => r[`${key}Client`])), 0),
            `${
              fmt(middle(c.map((r) => r[`${key}Client`] / r[`${key}PerS`])), 2)
            }×`,
          ];
        }),
      ),
      "",
      markdown(
        [
          "native server, native client, 64 B × 50",
          "no rules",
          "PROXY + allow + per-address limit",
          "ratio",
        ],
        [[
          "server µs CPU/round trip",
          fmt(middle(rules.map((c) => c.none)), 2),
          fmt(middle(rules.map((c) => c.rules)), 2),
          `${fmt(middle(rules.map((c) => c.rules / c.none)), 2)}×`,
        ]],
      ),
      "",
      markdown(
        [
          "native server, native client, 64 B × 50",
          "TCP",
          "Unix socket",
          "ratio",
        ],
        [[
          "server µs CPU/round trip",
          fmt(middle(unix.map((c) => c.tcp)), 2),
          fmt(middle(unix.map((c) => c.unix)), 2),
          `${fmt(middle(unix.map((c) => c.unix / c.tcp)), 2)}×`,
        ]],
      ),
      "",
      markdown(
        [
          "load generator → c_epoll, 64 B × 50",
          "round trips/s",
          "p99 µs",
          "/ C load generator",
          "errors",
        ],
        Object.keys(clients[0]).map(clientRow),
      ),
    ].join("\n"),
  );
}

if (import.meta.main) await main();
