// Private: the interactive client session behind `client.ts --interactive`.
// Not exported from mod.ts.

import { target } from "../client/dial.ts";
import type { ConnectOptions } from "../types.ts";
import { writeAll } from "../_helpers.ts";
import { decodeLine, readLines } from "./input.ts";
import { terminalSafeStream } from "../_text.ts";
import { chatJsonAsText } from "../relay/chat_render.ts";
import { MAX_MESSAGE_LIMIT } from "../websocket/config.ts";

const NEWLINE = new Uint8Array([0x0a]);

/** Options of {@linkcode runSession}. */
export interface SessionOptions extends ConnectOptions {
  /**
   * Milliseconds to wait to connect, and, once the input has ended, for the
   * server to close its side; 0 waits forever.
   */
  timeout: number;
  /** Lines to send: usually stdin. */
  input: ReadableStream<Uint8Array>;
  /** Where everything the server sends goes, as it arrives: usually stdout. */
  output: WritableStream<Uint8Array>;
  /**
   * `output` is a terminal: what the server sends is printed as text, with
   * control sequences (escape codes, a bare `\r`) shown as U+FFFD instead
   * of acting on the terminal. Otherwise bytes are copied as they are.
   */
  terminal?: boolean;
}

/**
 * How a session ended: `"input"` when the input ended or said `exit` and the
 * server then closed, `"timeout"` when the server did not close within the
 * timeout after that, `"server"` when the server closed first.
 */
export type SessionEnd = "input" | "server" | "timeout";

/**
 * Connects, sends each input line as soon as it is complete, and copies what
 * the server sends to `output` as it arrives, both at once. A line that is
 * exactly `exit` (not sent) or the end of the input half-closes the
 * connection; the session then ends when the server closes.
 *
 * @throws {Deno.errors.ConnectionRefused} Nothing listens there.
 * @throws {Deno.errors.ConnectionReset} The server reset the connection.
 */
export async function runSession(options: SessionOptions): Promise<SessionEnd> {
  const { timeout } = options;
  const conn = await target(options).connect(
    timeout > 0 ? AbortSignal.timeout(timeout) : undefined,
  );
  const input = options.input.getReader();
  // On a terminal, chat's JSON reads as text, and nothing acts on it.
  const safe = options.terminal ? terminalSafeStream() : undefined;
  const json = options.terminal ? chatJsonAsText() : undefined;
  const printing = safe?.readable.pipeTo(options.output, {
    preventClose: true,
  });
  json?.readable.pipeTo(safe!.writable).catch(() => {});
  const output = (json?.writable ?? options.output).getWriter();
  let serverDone = false;
  let receiveError: unknown;
  const receiving = (async () => {
    // Over WebSocket a read is one message (up to the buffer's size), a line
    // of the line modes sent without its newline: each is printed on a line
    // of its own.
    const messages = options.websocket !== undefined;
    const buffer = new Uint8Array(messages ? MAX_MESSAGE_LIMIT : 64 * 1024);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        await output.write(buffer.slice(0, n));
        if (messages && n > 0 && buffer[n - 1] !== 0x0a) {
          await output.write(NEWLINE);
        }
      }
    } catch (error) {
      receiveError = error;
    }
    serverDone = true;
    // The conversation is over: stop waiting for input.
    await input.cancel();
  })();
  let inputEnded = false;
  try {
    for await (const line of readLines(input)) {
      if (serverDone || decodeLine(line) === "exit") break;
      await writeAll(conn, line);
    }
    if (!serverDone) {
      inputEnded = true;
      await conn.closeWrite();
      if (!await settlesWithin(receiving, timeout)) return "timeout";
    }
    if (receiveError !== undefined) throw receiveError;
    return inputEnded ? "input" : "server";
  } catch (error) {
    // A write fails when the server has gone; its side says why.
    throw receiveError ?? error;
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    await receiving;
    if (printing === undefined) {
      output.releaseLock();
    } else {
      await output.close();
      await printing;
    }
    input.releaseLock();
  }
}

/** Whether `promise` settles within `ms` milliseconds (0 waits forever). */
async function settlesWithin(
  promise: Promise<void>,
  ms: number,
): Promise<boolean> {
  if (ms === 0) {
    await promise;
    return true;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = await Promise.race([promise.then(() => true), expired]);
  clearTimeout(timer);
  return settled;
}

/**
 * Stdout for what a server sent: made safe on a terminal when it may be
 * anything (`untrusted`: not the user's own bytes echoed), as it is.
 */
export function stdout(untrusted: boolean): WritableStream<Uint8Array> {
  if (!untrusted || !Deno.stdout.isTerminal()) return Deno.stdout.writable;
  const safe = terminalSafeStream();
  safe.readable.pipeTo(Deno.stdout.writable).catch(() => {});
  return safe.writable;
}
