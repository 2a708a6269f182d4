// Shared test helpers: raw socket exchanges and a LogTape sink whose records
// tests can wait for, so they await server events instead of sleeping.

import { configure, type LogRecord } from "../lib/_logtape.ts";
import { writeAll } from "../lib/_helpers.ts";

export { writeAll };

/** Reads until EOF and returns everything read. */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  return concat(chunks);
}

/** Reads exactly `length` bytes, failing on an early EOF. */
export async function readExactly(
  conn: Deno.Conn,
  length: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const n = await conn.read(out.subarray(filled));
    if (n === null) throw new Error(`EOF after ${filled} of ${length} bytes`);
    filled += n;
  }
  return out;
}

/**
 * The lines of `bytes` by the definition: cut after every `\n`, the last
 * as it is.
 */
export function linesOf(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 10) {
      lines.push(bytes.slice(start, i + 1));
      start = i + 1;
    }
  }
  if (start < bytes.length) lines.push(bytes.slice(start));
  return lines;
}

/** Joins byte chunks into one array. */
export function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Deterministic pseudo-random bytes (a fixed xorshift), any length. */
export function pseudoRandomBytes(
  length: number,
  seed = 1,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

/**
 * Connects, writes `chunks` one write each, half-closes, and returns every
 * byte read until the server closed, reading while writing.
 */
export async function exchange(
  port: number,
  chunks: Uint8Array[],
): Promise<Uint8Array> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reading = readAll(conn);
  for (const chunk of chunks) await writeAll(conn, chunk);
  await conn.closeWrite();
  return await reading;
}

/**
 * Sends `chunks` on a new connection, half-closes, and returns what came
 * back as text: empty when the server closed first (a refused client, a bad
 * PROXY header), which is what the tests of those look for.
 */
export async function sendAndRead(
  options: Deno.ConnectOptions,
  ...chunks: Uint8Array[]
): Promise<string> {
  using conn = await Deno.connect(options);
  try {
    for (const chunk of chunks) await writeAll(conn, chunk);
    await conn.closeWrite();
  } catch {
    // Closed by the server already: what it sent is still read below.
  }
  try {
    return new TextDecoder().decode(await readAll(conn));
  } catch {
    return ""; // Reset by the server.
  }
}

/** A LogTape sink that keeps records and lets tests wait for one. */
export class LogCapture {
  readonly records: LogRecord[] = [];
  #waiters: { match: (r: LogRecord) => boolean; resolve: () => void }[] = [];

  readonly sink = (record: LogRecord): void => {
    this.records.push(record);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.match(record)) return true;
      w.resolve();
      return false;
    });
  };

  /** Forgets the records so far: call it first in each test that reads them. */
  clear(): void {
    this.records.length = 0;
  }

  /** The records whose raw message template is `template`. */
  find(template: string): LogRecord[] {
    return this.records.filter((r) => r.rawMessage === template);
  }

  /**
   * Resolves with the first record (already seen or yet to come) for which
   * `match` holds; rejects after `timeoutMs` so a missing event fails the
   * test instead of hanging it.
   */
  waitFor(
    match: (record: LogRecord) => boolean,
    timeoutMs = 10_000,
  ): Promise<LogRecord> {
    const seen = this.records.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`No matching log record within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.records.findLast(match)!);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  /** Waits for the server's "Closed" record of the connection from `peer`. */
  closed(peer: string): Promise<LogRecord> {
    return this.waitFor((r) =>
      r.rawMessage.toString().startsWith("Closed {peer}") &&
      r.properties.peer === peer
    );
  }
}

/** Routes the package's logs, every level, into a new {@linkcode LogCapture}. */
export async function captureLogs(): Promise<LogCapture> {
  const capture = new LogCapture();
  await configure({
    reset: true,
    sinks: { capture: capture.sink },
    loggers: [
      { category: ["tcp-echo"], lowestLevel: "trace", sinks: ["capture"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  return capture;
}

/** `host:port` of the local end of `conn`, as the server logs its peer. */
export function localPeer(conn: Deno.Conn): string {
  const { hostname, port } = conn.localAddr as Deno.NetAddr;
  return `${hostname}:${port}`;
}

const encoder = new TextEncoder();
const lineDecoder = new TextDecoder();

/**
 * A client of the line modes: sends text, collects every byte and line it
 * receives, and lets a test wait until enough has arrived.
 */
export class LineClient implements AsyncDisposable {
  readonly conn: Deno.Conn;
  /** Received lines, decoded, without their `\n`. */
  readonly lines: string[] = [];
  /** Resolves when the server closes (or resets) the connection. */
  readonly closed: Promise<void>;
  #received: Uint8Array[] = [];
  #partial: Uint8Array[] = [];
  #ended = false;
  #waiters: (() => void)[] = [];

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.closed = this.#read();
  }

  static async connect(port: number): Promise<LineClient> {
    return new LineClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Every byte received so far. */
  get bytes(): Uint8Array {
    return concat(this.#received);
  }

  /** Sends `text` (a string is sent as UTF-8). */
  send(text: string | Uint8Array): Promise<void> {
    return writeAll(
      this.conn,
      typeof text === "string" ? encoder.encode(text) : text,
    );
  }

  /**
   * Resolves once `done(lines)` holds; rejects after `timeoutMs`, or when
   * the connection ends first, listing what arrived.
   */
  async until(
    done: (lines: string[]) => boolean,
    timeoutMs = 15_000,
  ): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.lines)) {
      if (this.#ended) {
        throw new Error(`Connection ended; got:\n${this.lines.join("\n")}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `Timed out after ${timeoutMs} ms; got ${this.lines.length} lines:\n${
            this.lines.slice(-20).join("\n")
          }`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, left);
        this.#waiters.push(resolve);
      });
      clearTimeout(timer);
    }
    return this.lines;
  }

  /** Resolves with the first received line matching `pattern`. */
  async line(pattern: RegExp, timeoutMs?: number): Promise<string> {
    await this.until((lines) => lines.some((l) => pattern.test(l)), timeoutMs);
    return this.lines.find((l) => pattern.test(l))!;
  }

  /** Resolves once at least `count` lines have arrived. */
  count(count: number, timeoutMs?: number): Promise<string[]> {
    return this.until((lines) => lines.length >= count, timeoutMs);
  }

  /** Closes the connection if still open, and waits for the reader. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
    await this.closed;
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.conn.read(buffer);
        if (n === null) break;
        this.#add(buffer.slice(0, n));
      }
    } catch {
      // A reset, or closed by the test: either way the stream ended.
    }
    this.#ended = true;
    this.#wake();
  }

  #add(chunk: Uint8Array): void {
    this.#received.push(chunk);
    let start = 0;
    for (let end; (end = chunk.indexOf(10, start)) !== -1; start = end + 1) {
      const rest = chunk.subarray(start, end);
      if (this.#partial.length === 0) {
        this.lines.push(lineDecoder.decode(rest));
        continue;
      }
      this.#partial.push(rest);
      this.lines.push(lineDecoder.decode(concat(this.#partial)));
      this.#partial = [];
    }
    if (start < chunk.length) this.#partial.push(chunk.subarray(start));
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A temporary folder, removed with everything in it when disposed. */
export async function tempDir(
  prefix = "tcp-echo-",
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/**
 * A chat client on `port`, once welcomed; with `name`, once it has taken
 * it (`/nick`).
 */
export async function chatClient(
  port: number,
  name?: string,
): Promise<LineClient> {
  const client = await LineClient.connect(port);
  await client.line(/^\* welcome, you are /);
  if (name === undefined) return client;
  await client.send(`/nick ${name}\n`);
  await client.line(new RegExp(`is now ${name}$`));
  return client;
}
