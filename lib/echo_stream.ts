import { type Target, target } from "./client/dial.ts";
import type { ConnectOptions } from "./types.ts";
import { getLogger } from "@logtape/logtape";
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
}

/**
 * The server's echo did not match what was sent: it differed, was short
 * (the server closed early) or was longer than what was sent.
 */
export class EchoError extends Error {
  /**
   * Creates an error with a message saying how the echo differed.
   *
   * @param message What went wrong.
   * @param options The error's cause, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "EchoError";
  }
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
    const { timeout = 10_000, signal } = options;
    this.#target = target(options);
    assertMilliseconds("timeout", timeout);
    this.#timeout = timeout;
    this.#signal = signal;
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
        if (!this.#sourceDone) {
          throw new EchoError(
            `Echo is short: the server closed after ${this.#received} of ${this.#sent} bytes, before the input ended`,
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
      this.#check(buffer.subarray(0, n));
    } catch (error) {
      this.fail(error);
      throw this.#error;
    }
    controller.enqueue(buffer.slice(0, n));
  }

  /** Records the first failure and releases everything; idempotent. */
  fail(error: unknown): void {
    if (this.#failed) return;
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
        this.#owed.push(chunk);
        this.#owedBytes += chunk.length;
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
          `Echo is longer than what was sent: more than ${this.#received} bytes came back`,
        );
      }
      const take = Math.min(head.length - this.#owedOffset, bytes.length - i);
      for (let k = 0; k < take; k++) {
        if (bytes[i + k] !== head[this.#owedOffset + k]) {
          throw new EchoError(
            `Echo differs from what was sent at byte ${this.#received + k}`,
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
    if (this.#received < this.#sent) {
      throw new EchoError(
        `Echo is short: the server closed after ${this.#received} of ${this.#sent} bytes`,
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
