// Private: reading lines typed or piped in, for the operator console and the
// interactive client. Not exported from mod.ts.

import { lineContent, LineSplitter } from "../_lines.ts";

/** The longest line {@linkcode readLines} accepts from a terminal or pipe. */
export const MAX_INPUT_LINE = 16 * 1024 * 1024;

/**
 * Yields each line `reader` delivers, with its ending (`\n` or `\r\n`), and
 * a last line without one. Ends when the stream ends or the reader is
 * cancelled.
 *
 * @throws {RangeError} A line is longer than {@linkcode MAX_INPUT_LINE}.
 */
export async function* readLines(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  const splitter = new LineSplitter(MAX_INPUT_LINE);
  while (true) {
    const { done, value } = await reader.read();
    const lines = done ? [splitter.end()] : splitter.push(value);
    for (const line of lines) if (line !== undefined) yield line;
    if (splitter.tooLong) {
      throw new RangeError(
        `Cannot read line: longer than ${MAX_INPUT_LINE} bytes`,
      );
    }
    if (done) return;
  }
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** A line's text without its ending, or `undefined` if it is not UTF-8. */
export function decodeLine(line: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(lineContent(line));
  } catch {
    return undefined;
  }
}
