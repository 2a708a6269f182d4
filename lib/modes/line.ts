// Private: serveEcho's `line` mode, free of I/O (see ./session.ts). Not
// exported from mod.ts.

import { join, lineContent } from "../_lines.ts";
import { LinesSession, lineTooLong, type Step } from "./session.ts";
import type { Ending } from "../core/endings.ts";

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

/** Bytes of `lines` as one array (the line itself when there is one). */
export function joined(lines: Uint8Array[]): Uint8Array | undefined {
  if (lines.length === 0) return undefined;
  if (lines.length === 1) return lines[0];
  return join(lines, lines.reduce((sum, l) => sum + l.length, 0));
}

/**
 * Line mode: echoes each line as sent until the client half-closes, sends
 * `exit` or `quit`, or sends a line over the limit.
 */
export class LineSession extends LinesSession {
  protected answer(
    lines: Uint8Array[],
    ending: Ending | undefined,
  ): Step {
    const exit = lines.findIndex(isExit);
    const send = joined(exit === -1 ? lines : lines.slice(0, exit));
    if (exit !== -1) return { send, close: "exit command" };
    if (this.splitter.tooLong) {
      const tooLong = encoder.encode(
        lineTooLong(this.splitter.maxLineBytes),
      );
      return {
        send: send === undefined ? tooLong : joined([send, tooLong]),
        close: "line too long",
      };
    }
    return { send, close: ending };
  }
}
