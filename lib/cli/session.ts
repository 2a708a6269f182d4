// Private: the interactive client session behind `client.ts --interactive`.
// Not exported from mod.ts.

import { target } from "../client/dial.ts";
import type { ConnectOptions } from "../types.ts";
import { writeAll } from "../_helpers.ts";
import { decodeLine, readLines } from "./input.ts";
import { terminalSafeStream } from "../_text.ts";
import { chatJsonAsText } from "../relay/chat_render.ts";
import { MAX_MESSAGE_LIMIT } from "../websocket/config.ts";
import { FileAgent, fileEvents } from "./chat_files.ts";

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
  /**
   * Where files other chat members send go; with it, the client takes
   * files in chat (`/send`, `/accept`: lib/cli/chat_files.ts). Not over
   * WebSocket.
   */
  downloadDir?: string;
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
  const shown = json?.writable ?? options.output;
  // Writes to the connection, one after another: lines typed, and what
  // the file agent says to the server.
  let writing: Promise<void> = Promise.resolve();
  const send = (bytes: Uint8Array): Promise<void> => {
    writing = writing.catch(() => {}).then(() => writeAll(conn, bytes));
    return writing;
  };
  const encoder = new TextEncoder();
  let files: FileAgent | undefined;
  let output: WritableStreamDefaultWriter<Uint8Array>;
  let filtered: Promise<void> | undefined;
  if (options.downloadDir !== undefined && options.websocket === undefined) {
    const agent = new FileAgent({
      dial: (port) =>
        target({ ...options, port, sendProxy: undefined }).connect(),
      downloadDir: options.downloadDir,
      send: (line) => send(encoder.encode(`${line}\n`)),
      print: async (line) => {
        await toUser.write(encoder.encode(`${line}\n`));
      },
    });
    files = agent;
    const events = fileEvents(agent, () => {
      send(encoder.encode("/caps files\n")).catch(() => {});
    });
    // What the agent prints joins what the server sends, between writes.
    const toUser = new UserLines(shown, printing !== undefined);
    filtered = events.readable.pipeTo(toUser.writable).catch(() => {});
    output = events.writable.getWriter();
  } else {
    output = shown.getWriter();
  }
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
      const text = decodeLine(line);
      if (serverDone || text === "exit") break;
      const instead = files && text !== undefined
        ? await files.input(text)
        : undefined;
      if (instead === null) continue;
      await send(instead === undefined ? line : encoder.encode(`${instead}\n`));
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
    await files?.close();
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    await receiving;
    if (filtered !== undefined) {
      await output.close().catch(() => {});
      await filtered;
      if (printing !== undefined) await printing;
    } else if (printing === undefined) {
      output.releaseLock();
    } else {
      await output.close();
      await printing;
    }
    input.releaseLock();
  }
}

/**
 * One way to the user for two sources: what the server sends (`writable`)
 * and whole lines of the client's own (`write`), which wait until the
 * server's bytes are at a line's end.
 */
class UserLines {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #atLineEnd = true;
  #held: Uint8Array[] = [];
  readonly writable: WritableStream<Uint8Array>;

  /** With `close`, the end of the server's bytes closes `output`. */
  constructor(output: WritableStream<Uint8Array>, close: boolean) {
    this.#writer = output.getWriter();
    this.writable = new WritableStream({
      write: async (chunk) => {
        if (chunk.length === 0) return;
        await this.#writer.write(chunk);
        this.#atLineEnd = chunk[chunk.length - 1] === 0x0a;
        if (this.#atLineEnd) await this.#flush();
      },
      close: async () => {
        await this.#flush();
        if (close) await this.#writer.close();
        else this.#writer.releaseLock();
      },
    });
  }

  async write(line: Uint8Array): Promise<void> {
    this.#held.push(line);
    if (this.#atLineEnd) await this.#flush();
  }

  async #flush(): Promise<void> {
    const held = this.#held;
    this.#held = [];
    for (const line of held) await this.#writer.write(line);
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
