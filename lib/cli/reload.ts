// Private: how the server CLI takes new TLS certificates on SIGHUP: the
// files its flags name are read again, and the server uses them for new
// handshakes; a file that cannot be used keeps the old ones, and the log
// says why. Not exported from mod.ts.

import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY, type OptionError } from "../_helpers.ts";
import type { EchoServer, TlsReload } from "../types.ts";

const logger = getLogger([LOG_CATEGORY, "cli"]);

/**
 * On each SIGHUP, calls `read` (which reads the files again, and throws
 * an Error that says what is wrong with one) and has `server` take what it
 * read; `flagOf` names the flag of an option error. Disposing it removes
 * the signal listener. Not on Windows, which has no SIGHUP.
 */
export function reloadOnHangup(
  server: EchoServer<Deno.Addr>,
  read: () => TlsReload,
  flagOf: (option: string) => string | undefined,
): Disposable {
  let reloading = Promise.resolve();
  const reload = async () => {
    logger.info("Received SIGHUP: reading the TLS certificates again");
    try {
      await server.reloadTls(read());
    } catch (error) {
      const { option, reason } = error as Partial<OptionError>;
      const flag = option && flagOf(option);
      const why = flag
        ? `Invalid ${flag}: ${reason}`
        : (error as Error).message;
      logger.error("Kept the TLS certificates: {why}", { why });
    }
  };
  // One at a time, in the order the signals came.
  const handler = () => {
    reloading = reloading.then(reload);
  };
  Deno.addSignalListener("SIGHUP", handler);
  return {
    [Symbol.dispose]() {
      Deno.removeSignalListener("SIGHUP", handler);
    },
  };
}

/**
 * On each SIGHUP, reads the chat users file at `path` again and has
 * `server` take it; a file that cannot be read or used keeps the old
 * users, and the log says why.
 */
export function reloadUsersOnHangup(
  server: EchoServer<Deno.Addr>,
  path: string,
): Disposable {
  const handler = () => {
    logger.info("Received SIGHUP: reading the chat users again");
    try {
      server.reloadChatUsers(Deno.readTextFileSync(path));
    } catch (error) {
      const { reason } = error as Partial<OptionError>;
      logger.error("Kept the chat users: {why}", {
        why: reason ?? (error as Error).message,
      });
    }
  };
  Deno.addSignalListener("SIGHUP", handler);
  return {
    [Symbol.dispose]() {
      Deno.removeSignalListener("SIGHUP", handler);
    },
  };
}
