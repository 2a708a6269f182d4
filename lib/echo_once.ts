import { echoStream, type EchoStreamOptions } from "./echo_stream.ts";

/** Options for {@linkcode echoOnce}. */
export type EchoOnceOptions = EchoStreamOptions;

/**
 * Sends one message to an echo server and returns the echo: connects, writes
 * everything, half-closes, and reads until the server closes. The echo is
 * checked byte for byte against the message.
 *
 * @example Echo a string and bytes
 * ```ts
 * import { echoOnce, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * const port = server.addr.port;
 * assert.equal(await echoOnce("hi", { port }), "hi");
 * assert.deepEqual(await echoOnce(new Uint8Array([0, 255]), { port }), new Uint8Array([0, 255]));
 * ```
 *
 * @param message The message: a string is sent as UTF-8 and the echo decoded
 * the same way; bytes are sent and returned as they are.
 * @param options Where to connect and how long to wait.
 * @returns The echoed message, of the same type as `message`.
 * @throws {EchoError} The echo differs from the message, is short or is too long.
 * @throws {DOMException} A `TimeoutError` when the server is silent for `timeout` ms.
 * @throws {Deno.errors.ConnectionRefused} Nothing listens at the address.
 * @throws {unknown} `options.signal.reason` when the signal is aborted.
 */
export function echoOnce(
  message: string,
  options?: EchoOnceOptions,
): Promise<string>;
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
  const echo = await new Response(echoStream([bytes], options)).bytes();
  return typeof message === "string" ? new TextDecoder().decode(echo) : echo;
}
