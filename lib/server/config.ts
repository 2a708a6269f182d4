// Private: the options of one listener, as serveEcho checked them. Not
// exported from mod.ts.

import type { ServeEchoOptions } from "../types.ts";

/** The options of one listener, checked and with their defaults filled in. */
export type ServerConfig = Required<
  Omit<ServeEchoOptions, "signal" | "workers">
>;
