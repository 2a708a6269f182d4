import { type Target, target } from "./client/dial.ts";
import type { ConnectOptions } from "./types.ts";
import { getLogger } from "./_logtape.ts";
import { isReset, REFUSAL_CAUSES } from "./client/failures.ts";
import { replaceControls } from "./_text.ts";
import {
  assertMilliseconds,
  IdleTimer,
  LOG_CATEGORY,
  writeAll,
} from "./_helpers.ts";

const logger = getLogger([LOG_CATEGORY, "client"]);

/** Size of the buffer each read from the server fills. */
const READ_BUFFER_SIZE = 64 * 1024;

/** Options for {@linkcode echoStream} and {@linkcode echoOnce}. */
export interface EchoStreamOptions extends ConnectOptions {
  /**
   * Milliseconds to wait for the server: to connect, and then for each
   * echoed chunk while bytes are owed or the close is due. The clock stops
   * while everything sent has come back and more input is awaited. 0 waits
   * forever. On expiry the call fails with a `TimeoutError` `DOMException`.
   *
   * @default {10000}
   */
  timeout?: number;
  /** Aborting this signal closes the connection and fails with its reason. */
  signal?: AbortSignal;
  /**
   * Return what the server sends without comparing it with what was sent,
   * as `nc` would: for servers that answer rather than echo (info mode, a
   * line mode's `ERR` lines). The connection still half-closes when the
   * input ends, and the result ends when the server closes.
   *
   * @default {false}
   */
  raw?: boolean;
}

/**
 * The server's echo did not match what was sent: it differed (the message
 * shows what the server sent instead), was short (the server closed early,
 * or before echoing anything, as a server that refuses a client does) or
 * was longer than what was sent.
 */
export class EchoError extends Error {
  /**
   * How the echo went wrong: it `differs`, is `short`, is `long`er than
   * what was sent, or the server `refused` it (closed or reset the
   * connection before echoing a byte).
   */
  readonly problem: EchoProblem;
  /** The byte of the echo where it went wrong. */
  readonly at: number;

  /**
   * Creates an error with a message saying how the echo differed.
   *
   * @param message What went wrong.
   * @param options What went wrong, where, and the error's cause, if any.
   */
  constructor(message: string, options?: EchoErrorOptions) {
    super(message, options);
    this.name = "EchoError";
    this.problem = options?.problem ?? "differs";
    this.at = options?.at ?? 0;
  }
}

/** How an echo went wrong (see {@linkcode EchoError.problem}). */
export type EchoProblem = "differs" | "short" | "long" | "refused";

/** Options of {@linkcode EchoError}. */
export interface EchoErrorOptions extends ErrorOptions {
  /**
   * How the echo went wrong.
   *
   * @default {"differs"}
   */
  problem?: EchoProblem;
  /**
   * The byte of the echo where it went wrong.
   *
   * @default {0}
   */
  at?: number;
}

/**
 * Sends `source` to an echo server and returns the echo as a stream, checking
 * every byte of it against what was sent. When `source` ends, the client
 * half-closes its side; the stream closes when the server closes after
 * echoing everything.
 *
 * The stream errors with {@linkcode EchoError} if the echo differs from what
 * was sent, is short or is too long, with a `TimeoutError` when the server is
 * silent for `timeout` ms while bytes are owed, and with the network error
 * (such as `Deno.errors.ConnectionRefused`) otherwise. Cancelling it closes
 * the connection.
 *
 * @example Stream bytes through a server
 * ```ts
 * import { echoStream, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * const chunks = [new Uint8Array([1, 2]), new Uint8Array([3])];
 * const echo = echoStream(chunks, { port: server.addr.port });
 * const bytes = await new Response(echo).bytes();
 * assert.deepEqual(bytes, new Uint8Array([1, 2, 3]));
 * ```
 *
 * @param source The bytes to send, as chunks (a `ReadableStream` works).
 * @param options Where to connect and how long to wait.
 * @returns A stream of the echoed bytes.
 * @throws {RangeError} An option is out of range; the error's `option` field
 * names it and its `reason` field says what is wrong.
 */
export function echoStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: EchoStreamOptions = {},
): ReadableStream<Uint8Array> {
  const exchange = new Exchange(source, options);
  return new ReadableStream({
    start: () => exchange.open(),
    pull: (controller) => exchange.pull(controller),
    cancel: (reason) => exchange.fail(reason),
  });
}

/** One connection: a writer task sending the source, reads driven by pulls. */
class Exchange {
  readonly #target: Target;
  readonly #timeout: number;
  readonly #signal: AbortSignal | undefined;
  readonly #raw: boolean;
  readonly #source: ReadableStreamDefaultReader<Uint8Array>;
  readonly #abort = new AbortController();
  /** Reused for every read; what is enqueued is a copy. */
  readonly #buffer = new Uint8Array(READ_BUFFER_SIZE);
  #idle: IdleTimer | undefined;
  #conn: Deno.Conn | undefined;
  #writing: Promise<void> = Promise.resolve();
  #sourceDone = false;
  #reading = false;
  /** Chunks sent (or being sent) whose echo has not fully come back. */
  #owed: Uint8Array[] = [];
  /** How much of `#owed[0]` has already come back. */
  #owedOffset = 0;
  #owedBytes = 0;
  #sent = 0;
  #received = 0;
  #error: unknown;
  #failed = false;

  constructor(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    options: EchoStreamOptions,
  ) {
    const { timeout = 10_000, signal, raw = false } = options;
    this.#target = target(options);
    assertMilliseconds("timeout", timeout);
    this.#timeout = timeout;
    this.#signal = signal;
    this.#raw = raw;
    this.#source = ReadableStream.from(source).getReader();
  }

  async open(): Promise<void> {
    try {
      this.#signal?.throwIfAborted();
      this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
      this.#idle = new IdleTimer(this.#timeout, this.#onIdle);
      this.#conn = await this.#target.connect(this.#abort.signal);
      logger.debug("Connected to {address}", {
        address: this.#target.address,
      });
      this.#idle.touch();
      this.#writing = this.#write(this.#conn);
    } catch (error) {
      this.fail(error);
      throw this.#error;
    }
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>) {
    const conn = this.#conn!;
    const buffer = this.#buffer;
    let n: number | null;
    try {
      this.#reading = true;
      this.#idle!.touch();
      n = await conn.read(buffer);
      this.#reading = false;
      if (n === null) {
        if (this.#raw) {
          this.#finish();
          controller.close();
          return;
        }
        // Nothing came back of what was owed: an empty message's echo is
        // empty, anything else is a refusal.
        if (
          this.#received === 0 && (this.#owedBytes > 0 || !this.#sourceDone)
        ) {
          throw this.#refused(false);
        }
        if (!this.#sourceDone) {
          throw new EchoError(
            `Echo is short: the server closed after ${this.#received} of ${this.#handedOver()} bytes, before the input ended`,
            { problem: "short", at: this.#received },
          );
        }
        await this.#writing;
        if (this.#failed) throw this.#error;
        this.#checkComplete();
        this.#finish();
        controller.close();
        return;
      }
      this.#idle!.touch();
      if (this.#raw) this.#received += n;
      else this.#check(buffer.subarray(0, n));
    } catch (error) {
      this.fail(error);
      throw this.#error;
    }
    controller.enqueue(buffer.slice(0, n));
  }

  /**
   * Bytes handed to the socket so far: sent, or on their way when the
   * server closed.
   */
  #handedOver(): number {
    return this.#received + this.#owedBytes;
  }

  /** The error for a server that ended the connection before any echo. */
  #refused(reset: boolean): EchoError {
    const sent = this.#handedOver();
    return new EchoError(
      `The server ${
        reset ? "reset" : "closed"
      } the connection before echoing anything (${sent} ${
        sent === 1 ? "byte" : "bytes"
      } sent): ${REFUSAL_CAUSES}`,
      { problem: "refused" },
    );
  }

  /** Records the first failure and releases everything; idempotent. */
  fail(error: unknown): void {
    if (this.#failed) return;
    // A reset before any echo: most likely a refusal, said as one.
    if (
      isReset(error) && this.#conn !== undefined && this.#received === 0 &&
      !this.#raw
    ) {
      error = this.#refused(true);
    }
    this.#failed = true;
    this.#error = error;
    this.#abort.abort(error);
    this.#finish();
    this.#source.cancel(error).catch(() => {});
  }

  #finish(): void {
    this.#idle?.clear();
    this.#signal?.removeEventListener("abort", this.#onAbort);
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
  }

  /** Sends the source, then half-closes; never rejects (failures go to `fail`). */
  async #write(conn: Deno.Conn): Promise<void> {
    try {
      while (true) {
        const { done, value } = await this.#source.read();
        if (done) break;
        if (value.length === 0) continue;
        // The producer may reuse its buffer: keep our own copy to compare.
        const chunk = value.slice();
        if (!this.#raw) {
          this.#owed.push(chunk);
          this.#owedBytes += chunk.length;
        }
        await writeAll(conn, chunk);
        this.#sent += chunk.length;
        this.#idle!.touch();
      }
      this.#sourceDone = true;
      if (!this.#failed) await conn.closeWrite();
    } catch (error) {
      this.fail(error);
    }
  }

  /** Compares echoed bytes with the oldest bytes still owed. */
  #check(bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length) {
      const head = this.#owed[0];
      if (head === undefined) {
        throw new EchoError(
          `Echo is longer than what was sent: more than ${this.#received} bytes came back, then ${
            preview(bytes.subarray(i))
          }`,
          { problem: "long", at: this.#received },
        );
      }
      const take = Math.min(head.length - this.#owedOffset, bytes.length - i);
      for (let k = 0; k < take; k++) {
        if (bytes[i + k] !== head[this.#owedOffset + k]) {
          throw new EchoError(
            `Echo differs from what was sent at byte ${
              this.#received + k
            }: the server sent ${preview(bytes.subarray(i + k))}`,
            { at: this.#received + k },
          );
        }
      }
      i += take;
      this.#received += take;
      this.#owedBytes -= take;
      this.#owedOffset += take;
      if (this.#owedOffset === head.length) {
        this.#owed.shift();
        this.#owedOffset = 0;
      }
    }
  }

  #checkComplete(): void {
    if (this.#raw) return;
    if (this.#received < this.#sent) {
      throw new EchoError(
        `Echo is short: the server closed after ${this.#received} of ${this.#sent} bytes`,
        { problem: "short", at: this.#received },
      );
    }
  }

  #onAbort = (): void => {
    this.fail(this.#signal!.reason);
  };

  /** Fails with a timeout if we were waiting on the server, else waits on. */
  #onIdle = (): void => {
    const waiting = this.#conn === undefined ||
      (this.#reading && (this.#owedBytes > 0 || this.#sourceDone));
    if (!waiting) {
      this.#idle!.restart();
      return;
    }
    const ms = this.#timeout;
    const message = this.#conn === undefined
      ? `Connection timed out after ${ms} ms`
      : this.#owedBytes > 0
      ? `Timed out after ${ms} ms waiting for ${this.#owedBytes} more echoed bytes`
      : `Timed out after ${ms} ms waiting for the server to close`;
    this.fail(new DOMException(message, "TimeoutError"));
  };
}

/** Longest preview of what a server sent, in characters. */
const PREVIEW_CHARS = 80;

/**
 * What a server sent, from `bytes` on, for an error message: its first line,
 * quoted, made safe for a terminal (control characters as U+FFFD), and cut
 * at {@linkcode PREVIEW_CHARS} characters.
 */
function preview(bytes: Uint8Array): string {
  const text = new TextDecoder().decode(bytes.subarray(0, 4 * PREVIEW_CHARS));
  const line = text.split(/\r?\n/)[0];
  const cut = line.length > PREVIEW_CHARS
    ? `${line.slice(0, PREVIEW_CHARS)}…`
    : line;
  const rest = text.slice(line.length).replace(/^\r?\n/, "");
  const more = rest.length > 0 ? " and more" : "";
  return `"${replaceControls(cut)}"${more}`;
}
