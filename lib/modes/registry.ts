// Private: the line modes of serveEcho that are written once for every
// driver, free of I/O (./session.ts), one entry each. Echo mode is each
// driver's own fast path, and broadcast and chat go through the relay
// (lib/relay/). A new line mode is a file in this folder and a line here.
// Not exported from mod.ts.

import type { ServerConfig } from "../core/config.ts";
import type { EchoMode } from "../types.ts";
import { InfoSession } from "./info.ts";
import { LineSession } from "./line.ts";
import type { Session, SessionFacts } from "./session.ts";

/** Makes one connection's session; `facts` is called only if needed. */
export type SessionMaker = (
  config: ServerConfig,
  facts: () => SessionFacts,
) => Session;

/** The modes served by a session, by name. */
export const SESSIONS: Readonly<Partial<Record<EchoMode, SessionMaker>>> = {
  line: (config) => new LineSession(config.maxLineBytes),
  info: (config, facts) => new InfoSession(facts(), config.maxLineBytes),
};
