// Private: the server's operator console (`--operator`). Not exported from
// mod.ts.

import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY, plural } from "../_helpers.ts";
import type { EchoServer } from "../types.ts";
import { decodeLine, readLines } from "./input.ts";

const logger = getLogger([LOG_CATEGORY, "cli"]);

/**
 * Sends each line of stdin to every client until stdin ends or `stop()` is
 * called.
 */
export function operatorConsole(
  server: EchoServer<Deno.Addr>,
): { stop(): Promise<void> } {
  const reader = Deno.stdin.readable.getReader();
  let stopped = false;
  (async () => {
    logger.info("Operator console: each line you type goes to every client");
    for await (const line of readLines(reader)) {
      const text = decodeLine(line);
      if (text === undefined) {
        logger.warning("Operator line not sent: it is not valid UTF-8");
      } else {
        const clients = server.announce(text);
        logger.debug(
          `Operator line sent to {clients} ${plural(clients, "client")}`,
          { clients },
        );
      }
    }
    if (!stopped) logger.info("Operator console closed: stdin ended");
  })().catch((error) =>
    logger.error("Operator console failed: {error}", { error })
  );
  return {
    stop() {
      stopped = true;
      return reader.cancel();
    },
  };
}
