// Private: serveEcho's `line` mode. Not exported from mod.ts.

import { join, lineContent } from "../_lines.ts";
import {
  closeGently,
  type Connection,
  discardRest,
} from "../server/connection.ts";
import { readLines } from "./read_lines.ts";

const encoder = new TextEncoder();
const EXIT = encoder.encode("exit");
const QUIT = encoder.encode("quit");

/** Whether `line` is exactly `exit` or `quit`, with or without its ending. */
function isExit(line: Uint8Array): boolean {
  const text = lineContent(line);
  return text.length === 4 &&
    (equal(text, EXIT) || equal(text, QUIT));
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** The reply to a line over the limit, in every line mode. */
export function lineTooLong(maxLineBytes: number): Uint8Array {
  return encoder.encode(`ERR line too long (max ${maxLineBytes} bytes)\n`);
}

/**
 * Line mode: echoes each line as sent until the client half-closes, sends
 * `exit` or `quit`, or sends a line over the limit. Returns why it ended.
 */
export async function echoLines(
  c: Connection,
  maxLineBytes: number,
): Promise<string> {
  for await (const { lines, end, tooLong } of readLines(c, maxLineBytes)) {
    const exit = lines.findIndex(isExit);
    const replies = exit === -1 ? lines : lines.slice(0, exit);
    if (replies.length > 0) {
      await c.out.send(
        replies.length === 1
          ? replies[0]
          : join(replies, replies.reduce((sum, l) => sum + l.length, 0)),
      );
    }
    if (exit !== -1) return await closeGently(c, "exit command");
    if (tooLong) {
      await c.out.send(lineTooLong(maxLineBytes));
      return await closeGently(c, "line too long");
    }
    if (end) return await closeGently(c, "closed by client");
  }
  return await discardRest(c);
}
