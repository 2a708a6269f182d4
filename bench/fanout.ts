/**
 * `deno task bench:fanout`: chat fan-out on each engine. One sender and
 * 1,000 readers in one room (chat mode's lobby); the sender writes its
 * lines at once, and the relay paces it (its next lines are read once the
 * last are delivered). Lines delivered a second = lines × readers / the
 * time from the first send to the last reader's last line. Every reader
 * checks that it got every line of the sender once and in order. The
 * server runs on CPU 0 and this process, the clients, on CPU 1.
 *
 * ```sh
 * deno task bench:fanout                          # 1,000 readers × 2,000 lines
 * deno task bench:fanout --readers 100 --lines 200 --reps 1
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  benchFlags,
  DENO,
  fmt,
  LOCK,
  markdown,
  middle,
  pinSelf,
  positive,
  ROOT,
  start,
} from "./_harness.ts";

const USAGE = `Usage: deno task bench:fanout [options]

Chat fan-out on each engine: one sender, many readers in one room; lines
delivered a second, every line checked at every reader.

Options:
  --readers N     readers in the room (default: 1000)
  --lines N       lines the sender sends (default: 2000)
  --reps N        repetitions, taking turns across engines (default: 3)
  -h, --help      print this help and exit`;

const ENGINES = ["default", "native"] as const;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Options {
  readers: number;
  lines: number;
  reps: number;
}

/** What one run measured. */
interface Cell {
  linesPerSecond: number;
  serverCpuUsPerLine: number;
  errors: number;
}

/**
 * One reader: reads lines until the sender's `lines`th, checking that the
 * sender's come once and in order; notices (`* …`) are skipped.
 */
async function reader(
  conn: Deno.Conn,
  sender: string,
  lines: number,
): Promise<{ errors: number; done: number }> {
  const prefix = `<${sender}> L `;
  const buffer = new Uint8Array(256 * 1024);
  let rest = "";
  let next = 0;
  let errors = 0;
  while (next < lines) {
    const n = await conn.read(buffer);
    if (n === null) return { errors: errors + 1, done: performance.now() };
    const text = rest + decoder.decode(buffer.subarray(0, n));
    const parts = text.split("\n");
    rest = parts.pop()!;
    for (const line of parts) {
      if (!line.startsWith(prefix)) continue;
      const seq = Number(
        line.slice(prefix.length, line.indexOf(" ", prefix.length)),
      );
      if (seq !== next) errors++;
      next = seq + 1;
    }
  }
  return { errors, done: performance.now() };
}

/** Reads `conn` until a line matching `pattern`; returns it. */
async function lineMatching(conn: Deno.Conn, pattern: RegExp): Promise<string> {
  const buffer = new Uint8Array(64 * 1024);
  let text = "";
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`closed before ${pattern}`);
    text += decoder.decode(buffer.subarray(0, n));
    const found = text.split("\n").find((l) => pattern.test(l));
    if (found !== undefined) return found;
  }
}

async function run(engine: string, o: Options): Promise<Cell> {
  await using server = await start([
    DENO,
    "run",
    LOCK,
    "--allow-net",
    "--allow-read",
    "--allow-ffi",
    `${ROOT}server.ts`,
    ...["--port", "0", "--mode", "chat", "--engine", engine],
    ...["--log-level", "error", "--history", "0"],
  ], true);
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < o.readers; i++) {
      conns.push(await Deno.connect({ port: server.port }));
    }
    const sender = await Deno.connect({ port: server.port });
    conns.push(sender);
    const welcome = await lineMatching(sender, /^\* welcome, you are /);
    const name = welcome.match(/you are (\S+);/)![1];
    // Every reader has heard the sender join: the room is whole.
    await Promise.all(
      conns.slice(0, -1).map((c) =>
        lineMatching(c, new RegExp(`^\\* ${name} joined`))
      ),
    );
    const pad = "x".repeat(16);
    const payload = encoder.encode(
      Array.from({ length: o.lines }, (_, i) => `L ${i} ${pad}\n`).join(""),
    );
    const cpuBefore = await server.cpuMs();
    const started = performance.now();
    const reading = conns.slice(0, -1).map((c) => reader(c, name, o.lines));
    // Written whole; the server reads it as the relay delivers.
    const writing = (async () => {
      let at = 0;
      while (at < payload.length) {
        at += await sender.write(payload.subarray(at));
      }
    })();
    const results = await Promise.all(reading);
    await writing;
    const ended = Math.max(...results.map((r) => r.done));
    const cpu = await server.cpuMs() - cpuBefore;
    const deliveries = o.lines * o.readers;
    return {
      linesPerSecond: deliveries / ((ended - started) / 1000),
      serverCpuUsPerLine: cpu * 1000 / deliveries,
      errors: results.reduce((sum, r) => sum + r.errors, 0),
    };
  } finally {
    for (const conn of conns) conn.close();
  }
}

async function main(): Promise<void> {
  const values = benchFlags(USAGE, () =>
    parseArgs({
      args: Deno.args,
      strict: true,
      options: {
        readers: { type: "string" },
        lines: { type: "string" },
        reps: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values);
  const o: Options = {
    readers: positive("readers", values.readers ?? "1000"),
    lines: positive("lines", values.lines ?? "2000"),
    reps: positive("reps", values.reps ?? "3"),
  };
  await pinSelf();
  const cells: Record<string, Cell[]> = { default: [], native: [] };
  for (let rep = 1; rep <= o.reps; rep++) {
    for (const engine of ENGINES) {
      console.error(`== ${engine}, repetition ${rep} of ${o.reps}`);
      cells[engine].push(await run(engine, o));
    }
  }
  const errors = Object.values(cells).flat().reduce((s, c) => s + c.errors, 0);
  const of = (engine: string, pick: (c: Cell) => number) =>
    middle(cells[engine].map(pick));
  const ratio = middle(
    cells.native.map((c, i) =>
      c.linesPerSecond / cells.default[i].linesPerSecond
    ),
  );
  console.log(
    [
      `${
        new Date().toISOString()
      }, Deno ${Deno.version.deno}; chat, 1 sender and ${o.readers} readers in one room, ${o.lines} lines of 24 bytes; server on CPU 0, clients on CPU 1; median of ${o.reps} repetitions; errors in all runs: ${errors}`,
      "",
      markdown(
        ["chat fan-out", "default", "native", "native / default"],
        [
          [
            "lines delivered/s",
            fmt(of("default", (c) => c.linesPerSecond), 0),
            fmt(of("native", (c) => c.linesPerSecond), 0),
            `${fmt(ratio, 2)}×`,
          ],
          [
            "server µs CPU/line delivered",
            fmt(of("default", (c) => c.serverCpuUsPerLine), 2),
            fmt(of("native", (c) => c.serverCpuUsPerLine), 2),
            "",
          ],
        ],
      ),
    ].join("\n"),
  );
}

if (import.meta.main) await main();
