// Private: the modes of serveEcho, one entry each. A new mode is a file in
// this folder and a line here. Not exported from mod.ts.

import type { RelayPort } from "../relay/relay.ts";
import type { ServerConfig } from "../core/config.ts";
import type { Connection } from "../server/connection.ts";
import type { EchoMode } from "../types.ts";
import { infoLines } from "./info.ts";
import { echoLines } from "./line.ts";
import { relayLines } from "./relay.ts";

/**
 * Serves one connection in a mode. Resolves with why it ended; echo mode
 * runs on the connection's own callbacks and ends it itself, so it returns
 * nothing.
 */
export type Mode = (
  c: Connection,
  config: ServerConfig,
  relay: RelayPort | undefined,
) => Promise<string> | undefined;

/** Every mode by its name. */
export const MODES_BY_NAME: Readonly<Record<EchoMode, Mode>> = {
  echo: (c) => {
    c.echo();
    return undefined;
  },
  line: (c, config) => echoLines(c, config.maxLineBytes),
  broadcast: (c, config, relay) => relayLines(c, relay!, config.maxLineBytes),
  chat: (c, config, relay) => relayLines(c, relay!, config.maxLineBytes),
  info: (c, config) => infoLines(c, config),
};
