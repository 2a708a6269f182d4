// Private: the relay of a server in broadcast or chat mode, made once for
// every engine (lib/server/engine.ts, the worker pool, the native engine):
// the mode's rules, its pace from the send queue bounds, and its bus (in
// the process, or Redis with `redis`). Not exported from mod.ts.

import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY } from "../_helpers.ts";
import type { ServerConfig } from "../core/config.ts";
import {
  CHAT_FILE_BYTES,
  CHAT_FILES,
  CHAT_LINES_LIMITED,
  CHAT_LOGINS,
  FILE_RESULTS,
  LINES_RELAYED,
  LOGIN_RESULTS,
} from "../core/counters.ts";
import { broadcastRules } from "./broadcast.ts";
import { ChatRules } from "./chat.ts";
import { HistoryFile } from "./chat_history.ts";
import { Relay } from "./relay.ts";
import { RedisBus } from "./redis_bus.ts";
import type { FilesOptions } from "./chat_files.ts";
import { tlsOf } from "../core/config.ts";
import { type DeskListen, FileDesk, PAIR_WAIT_MS } from "../files/desk.ts";
import { RedisHop } from "../files/redis_hop.ts";
import { accessGuard } from "../rules/access.ts";

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
          files: filesFor(config, counters),
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

/**
 * Chat's files: a desk listening beside the chat listener (on its host,
 * with its TLS), or why there is none.
 */
function filesFor(config: ServerConfig, counters: Float64Array): FilesOptions {
  const maxBytes = config.maxFileBytes;
  if (maxBytes === 0) return { maxBytes, off: "--max-file-bytes 0" };
  const { listen } = config;
  if (listen.transport === "unix") {
    return { maxBytes: 0, off: "it listens on a Unix socket" };
  }
  const tls = tlsOf(listen);
  const where: DeskListen = tls === undefined
    ? { transport: "tcp", hostname: listen.hostname, port: config.filePort }
    : {
      transport: "tls",
      hostname: listen.hostname,
      port: config.filePort,
      cert: tls.cert,
      key: tls.key,
    };
  const hop = config.redis && new RedisHop({
    url: config.redis.url,
    key: config.redis.key,
    waitMs: PAIR_WAIT_MS,
  });
  const desk = new FileDesk({
    listen: where,
    maxBytesPerSecond: config.maxBytesPerSecond,
    guard: accessGuard(config.access),
    cluster: hop && { hop, secret: hop.secret() },
    ended: (result, bytes) => {
      counters[CHAT_FILES + FILE_RESULTS.indexOf(result)]++;
      counters[CHAT_FILE_BYTES] += bytes;
    },
  });
  logger.debug("Chat files on {host}:{port}", {
    host: desk.addr.hostname,
    port: desk.port,
  });
  return { maxBytes, tickets: desk, close: () => desk.close() };
}
