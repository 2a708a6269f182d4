import {
  EchoError,
  echoStream,
  type EchoStreamOptions,
} from "./echo_stream.ts";
import {
  assertDatagram,
  datagramTarget,
  ReplyWaiter,
} from "./client/datagram.ts";
import { assertMilliseconds } from "./_helpers.ts";

/** Options for {@linkcode echoOnce}. */
export type EchoOnceOptions = EchoStreamOptions;

/**
 * Sends a string to an echo server and returns the echo: connects, writes it
 * as UTF-8, half-closes, and reads until the server closes. The echo is
 * checked byte for byte against what was sent, then decoded as UTF-8.
 *
 * @example Echo a string
 * ```ts
 * import { echoOnce, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * assert.equal(await echoOnce("hi", { port: server.addr.port }), "hi");
 * ```
 *
 * @param message The text to send.
 * @param options Where to connect and how long to wait.
 * @returns The echoed text.
 * @throws {EchoError} The echo differs from the message, is short or is too long.
 * @throws {DOMException} A `TimeoutError` when the server is silent for `timeout` ms.
 * @throws {Deno.errors.ConnectionRefused} Nothing listens at the address.
 * @throws {unknown} `options.signal.reason` when the signal is aborted.
 */
export function echoOnce(
  message: string,
  options?: EchoOnceOptions,
): Promise<string>;
/**
 * Sends bytes to an echo server and returns the echo: connects, writes them,
 * half-closes, and reads until the server closes. The echo is checked byte
 * for byte against what was sent.
 *
 * @example Echo bytes
 * ```ts
 * import { echoOnce, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * const bytes = new Uint8Array([0, 13, 10, 255]);
 * assert.deepEqual(await echoOnce(bytes, { port: server.addr.port }), bytes);
 * ```
 *
 * @param message The bytes to send.
 * @param options Where to connect and how long to wait.
 * @returns The echoed bytes.
 * @throws {EchoError} The echo differs from the message, is short or is too long.
 * @throws {DOMException} A `TimeoutError` when the server is silent for `timeout` ms.
 * @throws {Deno.errors.ConnectionRefused} Nothing listens at the address.
 * @throws {unknown} `options.signal.reason` when the signal is aborted.
 */
export function echoOnce(
  message: Uint8Array,
  options?: EchoOnceOptions,
): Promise<Uint8Array>;
export async function echoOnce(
  message: string | Uint8Array,
  options?: EchoOnceOptions,
): Promise<string | Uint8Array> {
  const bytes = typeof message === "string"
    ? new TextEncoder().encode(message)
    : message;
  const echo = options?.udp
    ? await echoDatagram(bytes, options)
    : await new Response(echoStream([bytes], options)).bytes();
  return typeof message === "string" ? new TextDecoder().decode(echo) : echo;
}

/**
 * Sends `bytes` as one UDP datagram and waits up to `timeout` ms for the
 * reply from the server's port, which must be the same bytes.
 */
async function echoDatagram(
  bytes: Uint8Array,
  options: EchoOnceOptions,
): Promise<Uint8Array> {
  const target = datagramTarget(options);
  assertDatagram(bytes);
  const { timeout = 10_000, signal } = options;
  assertMilliseconds("timeout", timeout);
  signal?.throwIfAborted();
  const socket = target.open();
  const onAbort = () => socket.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  const waiter = new ReplyWaiter(socket, new Uint8Array(65_536));
  try {
    await socket.send(bytes, target.to);
    const reply = await waiter.next(target.to, timeout);
    if (reply === null) {
      throw new DOMException(
        `No reply from ${target.address} within ${timeout} ms`,
        "TimeoutError",
      );
    }
    if (options.raw) return reply.slice();
    const at = bytes.findIndex((byte, i) => reply[i] !== byte);
    if (reply.length !== bytes.length || at !== -1) {
      throw at !== -1 && at < reply.length
        ? new EchoError(`Reply differs from what was sent at byte ${at}`, {
          at,
        })
        : new EchoError(
          `Reply is ${reply.length} bytes, ${bytes.length} were sent`,
          {
            problem: reply.length < bytes.length ? "short" : "long",
            at: Math.min(reply.length, bytes.length),
          },
        );
    }
    return reply.slice();
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    try {
      socket.close();
    } catch {
      // Closed by the abort.
    }
    await waiter.settle();
  }
}
