// Private: why a server ends a connection, as one typed list: the words its
// log records give (`reason`), each with the metrics label it counts as
// (lib/core/counters.ts). Both drivers and every mode end connections with
// these words; any other reason is an error's own text, counted as an
// `error`. Not exported from mod.ts.

import type { CloseReason } from "../types.ts";

/** Every reason the server gives, with the label it is counted under. */
export const ENDINGS = {
  "closed by client": "closedByClient",
  "idle timeout": "idleTimeout",
  "send queue full": "sendQueueFull",
  "quit command": "quitCommand",
  "exit command": "quitCommand",
  "line too long": "error",
  "message too big": "error",
  "protocol error": "error",
  "server shutting down": "shutdown",
  "grace period over": "shutdown",
  "server stopped": "serverStopped",
  "reset by peer": "reset",
  "broken pipe": "reset",
  "upstream unreachable": "error",
  "ended by a fault": "fault",
  "reset by a fault": "fault",
} as const satisfies Record<string, CloseReason>;

/** A reason the server gives for ending a connection. */
export type Ending = keyof typeof ENDINGS;
