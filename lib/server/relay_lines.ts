// Private: serveEcho's `broadcast` and `chat` modes on the streams driver,
// as one connection sees them: lines go to the relay (lib/relay/relay.ts),
// which delivers them. Not exported from mod.ts.

import { LineSplitter } from "../_lines.ts";
import type { Inbox, Member, RelayPort } from "../relay/relay.ts";
import { lineTooLong } from "../modes/session.ts";
import {
  closeGently,
  type Connection,
  discardRest,
  grown,
  INITIAL_BUFFER_SIZE,
  readChunk,
} from "./connection.ts";

const encoder = new TextEncoder();

/**
 * A connection as a member of the relay: its name, room and `/quit` are
 * the relay's business, kept here rather than on the connection.
 */
export class ConnectionMember implements Member {
  readonly connection: Connection;
  name = "";
  room = "";
  quitting = false;

  constructor(connection: Connection) {
    this.connection = connection;
  }

  get peer(): string {
    return this.connection.peer;
  }

  get out(): Inbox {
    return this.connection.out;
  }

  dropQueueFull(): void {
    this.connection.dropQueueFull();
  }
}

/**
 * Broadcast and chat modes: hands each line to the relay, waiting for it to
 * be delivered before reading on, until the client half-closes, quits or
 * sends a line over the limit. Returns why it ended.
 */
export async function relayLines(
  member: ConnectionMember,
  relay: RelayPort,
  maxLineBytes: number,
): Promise<string> {
  const c = member.connection;
  const splitter = new LineSplitter(maxLineBytes);
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const chunk = await readChunk(c, buffer);
    if (c.finishing !== undefined) return await discardRest(c);
    const end = chunk === null;
    const last = end ? splitter.end() : undefined;
    // Lines are kept by the relay; a last line without a newline gets one,
    // so it cannot run into the next client's line.
    const lines = end
      ? (last === undefined ? [] : [withNewline(last)])
      : splitter.push(chunk).map((line) => line.slice());
    await relay.submit(member, lines);
    if (member.quitting) return await closeGently(c, "quit command");
    if (splitter.tooLong) {
      relay.leave(member);
      c.out.post(encoder.encode(lineTooLong(maxLineBytes)));
      return await closeGently(c, "line too long");
    }
    if (end) {
      relay.leave(member);
      return await closeGently(c, "closed by client");
    }
    buffer = grown(buffer, chunk.length);
  }
}

/** A copy of `line` with a `\n` after it. */
function withNewline(line: Uint8Array): Uint8Array {
  const out = new Uint8Array(line.length + 1);
  out.set(line);
  out[line.length] = 0x0a;
  return out;
}
