import { echoStream, type EchoStreamOptions } from "./echo_stream.ts";

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
  const echo = await new Response(echoStream([bytes], options)).bytes();
  return typeof message === "string" ? new TextDecoder().decode(echo) : echo;
}
