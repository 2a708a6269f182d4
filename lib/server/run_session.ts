// Private: the streams driver of the line modes: it reads a connection,
// feeds its session (lib/modes/session.ts) and carries out what the session
// returns. Not exported from mod.ts.

import type { ServerConfig } from "../core/config.ts";
import { sessionFacts } from "../modes/info.ts";
import { handshakeFacts } from "../transport/tls.ts";
import type { Session, SessionFacts } from "../modes/session.ts";
import {
  closeGently,
  type Connection,
  discardRest,
  grown,
  INITIAL_BUFFER_SIZE,
  readChunk,
} from "./connection.ts";

/**
 * Serves `c` with `session` until the session or the server ends it: each
 * reply is sent before the next read, so a client that does not read its
 * replies is not read either. Returns why it ended.
 */
export async function runSession(
  c: Connection,
  session: Session,
): Promise<string> {
  // Starts small and doubles whenever a read fills it.
  let buffer = new Uint8Array(INITIAL_BUFFER_SIZE);
  while (true) {
    const chunk = await readChunk(c, buffer);
    if (c.finishing !== undefined) return await discardRest(c);
    const step = chunk === null ? session.end() : session.receive(chunk);
    if (step.send !== undefined) await c.out.send(step.send);
    if (step.close !== undefined) return await closeGently(c, step.close);
    buffer = grown(buffer, chunk!.length);
  }
}

/** What a session of `c` in `config`'s server may answer with. */
export function streamFacts(c: Connection, config: ServerConfig): SessionFacts {
  return sessionFacts(
    config,
    config.listen.transport,
    c.conn.remoteAddr,
    c.conn.localAddr,
    handshakeFacts(c.conn),
  );
}
