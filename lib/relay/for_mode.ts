// Private: the relay of a server in broadcast or chat mode, made once for
// every engine (lib/server/engine.ts, the worker pool, the native engine):
// the mode's rules, its pace from the send queue bounds, and its bus (in
// the process, or Redis with `redis`). Not exported from mod.ts.

import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY } from "../_helpers.ts";
import type { ServerConfig } from "../core/config.ts";
import {
  CHAT_LINES_LIMITED,
  CHAT_LOGINS,
  LINES_RELAYED,
  LOGIN_RESULTS,
} from "../core/counters.ts";
import { broadcastRules } from "./broadcast.ts";
import { ChatRules } from "./chat.ts";
import { HistoryFile } from "./chat_history.ts";
import { Relay } from "./relay.ts";
import { RedisBus } from "./redis_bus.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

/** The relay for broadcast and chat mode; `undefined` in the other modes. */
export function newRelay(
  config: ServerConfig,
  counters: Float64Array,
): Relay | undefined {
  if (config.mode !== "broadcast" && config.mode !== "chat") return undefined;
  const { history } = config;
  const keep = Math.floor(config.channelCapacity / 2);
  const archive = config.mode === "chat" && config.historyFile !== undefined
    ? HistoryFile.open({
      path: config.historyFile,
      sync: config.historySync,
      keep,
      warn: (message) => logger.warn("History: {message}", { message }),
    })
    : undefined;
  return new Relay({
    rules: config.mode === "broadcast"
      ? broadcastRules
      : (fanout) =>
        new ChatRules(fanout, {
          history,
          keep,
          archive,
          protocol: config.chatProtocol,
          certNames: config.certNames,
          rate: config.chatRate,
          users: config.chatUsers,
          requireLogin: config.chatRequireLogin,
          limited: () => counters[CHAT_LINES_LIMITED]++,
          login: (member, result) => {
            counters[CHAT_LOGINS + LOGIN_RESULTS.indexOf(result)]++;
            logger.info("Login {result} for {peer}", {
              result,
              peer: member.peer,
            });
          },
          renamed: (member, from) =>
            logger.debug("Renamed {peer} from {from} to {name}", {
              peer: member.peer,
              from,
              name: member.name,
            }),
        }),
    linesPerRound: Math.floor(config.channelCapacity / 2),
    bytesPerRound: Math.floor(config.channelBytes / 2),
    bus: config.redis &&
      new RedisBus(config.redis),
    relayed: () => counters[LINES_RELAYED]++,
  });
}
