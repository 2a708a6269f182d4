// Private: how the line modes read a connection. Not exported from mod.ts.

import { LineSplitter } from "../_lines.ts";
import {
  type Connection,
  grown,
  INITIAL_BUFFER_SIZE,
  readChunk,
} from "../server/connection.ts";

/** What one read gave a line mode. */
export interface LinesRead {
  /**
   * The lines it completed, each with its ending: views of the read buffer,
   * to use or copy before the next read. At the end of the stream, the last
   * line if it had no ending.
   */
  lines: Uint8Array[];
  /** The client half-closed: nothing follows. */
  end: boolean;
  /** A line went over the limit; nothing is split after it. */
  tooLong: boolean;
}

/**
 * Reads `c` into a buffer that starts small and doubles whenever a read fills
 * it, and yields the lines each read completes. Stops after the end of the
 * stream, or as soon as the connection is finishing (then `c.finishing` is
 * set and the caller discards the rest).
 */
export async function* readLines(
  c: Connection,
  maxLineBytes: number,
): AsyncGenerator<LinesRead> {
  const splitter = new LineSplitter(maxLineBytes);
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const chunk = await readChunk(c, buffer);
    if (c.finishing !== undefined) return;
    if (chunk === null) {
      const last = splitter.end();
      yield {
        lines: last === undefined ? [] : [last],
        end: true,
        tooLong: splitter.tooLong,
      };
      return;
    }
    yield {
      lines: splitter.push(chunk),
      end: false,
      tooLong: splitter.tooLong,
    };
    buffer = grown(buffer, chunk.length);
  }
}
