// Private: serveEcho's `broadcast` and `chat` modes, as one connection sees
// them: lines go to the relay (lib/relay/relay.ts), which delivers them. Not
// exported from mod.ts.

import type { RelayPort } from "../relay/relay.ts";
import {
  closeGently,
  type Connection,
  discardRest,
} from "../server/connection.ts";
import { lineTooLong } from "./line.ts";
import { readLines } from "./read_lines.ts";

/**
 * Broadcast and chat modes: hands each line to the relay, waiting for it to
 * be delivered before reading on, until the client half-closes, quits or
 * sends a line over the limit. Returns why it ended.
 */
export async function relayLines(
  c: Connection,
  relay: RelayPort,
  maxLineBytes: number,
): Promise<string> {
  for await (const { lines, end, tooLong } of readLines(c, maxLineBytes)) {
    // Lines are kept by the relay; a last line without a newline gets one,
    // so it cannot run into the next client's line.
    await relay.submit(
      c,
      lines.map((line) => end ? withNewline(line) : line.slice()),
    );
    if (c.quitting) return await closeGently(c, "quit command");
    if (tooLong) {
      relay.leave(c);
      c.out.post(lineTooLong(maxLineBytes));
      return await closeGently(c, "line too long");
    }
    if (end) {
      relay.leave(c);
      return await closeGently(c, "closed by client");
    }
  }
  return await discardRest(c);
}

/** A copy of `line` with a `\n` after it. */
function withNewline(line: Uint8Array): Uint8Array {
  const out = new Uint8Array(line.length + 1);
  out.set(line);
  out[line.length] = 0x0a;
  return out;
}
