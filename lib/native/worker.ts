// Private: a Web Worker of the native engine (lib/native/native_server.ts):
// it opens libc for its own thread and runs one echo loop, blocking in
// epoll_wait(), until the loop ends. It returns to its own event loop only
// to receive operator lines. Its log records go to the calling thread in
// batches. Not exported from mod.ts.

import type { Fault } from "../faults/spec.ts";
import type { ServerConfig, TlsSettings } from "../core/config.ts";
import type { LimitsConfig } from "../rules/limits.ts";
import { openLibc } from "./ffi.ts";
import { EchoLoop, type LoopRecord } from "./loop.ts";
import type { DeliverMessage, RelayMessage } from "../relay/bridge.ts";
import type { Ending } from "../core/endings.ts";
import { liveSessions } from "../tls/session.ts";
import { liveContexts } from "../tls/context.ts";

/** What the calling thread sends first: the loop's sockets and memory. */
export interface NativeWorkerInit {
  t: "init";
  listenFd: number;
  udpFd: number;
  udpTable: Pick<LimitsConfig, "table" | "seeds">;
  wakeFd: number;
  control: SharedArrayBuffer;
  counters: SharedArrayBuffer;
  /** Where this loop's counters start in `counters`, and how many. */
  offset: number;
  length: number;
  open: SharedArrayBuffer;
  /** Operator lines posted, one counter per loop, and this loop's index. */
  mail: SharedArrayBuffer;
  index: number;
  server: ServerConfig;
  address: string;
  logInfo: boolean;
  logDebug: boolean;
}

/** What the calling thread sends. */
export type ToNativeWorker =
  | NativeWorkerInit
  | {
    t: "announce";
    /** The line, with its `\n`. */
    line: Uint8Array;
  }
  | DeliverMessage
  /** End every connection politely, after what came before. */
  | { t: "finish"; reason: Ending }
  /** New TLS handshakes use these certificates; answered by "reloaded". */
  | { t: "reloadTls"; id: number; listen: TlsSettings }
  /** New connections get these faults; answered by "reloaded". */
  | { t: "setFaults"; id: number; faults: Fault[] }
  /** Upstream connects go to this address now; answered by "reloaded". */
  | { t: "upstreamAddress"; id: number; hostname: string };

/** What a native worker says. */
export type FromNativeWorker =
  | { t: "started" }
  | { t: "records"; records: LoopRecord[] }
  | { t: "failed"; message: string }
  | { t: "done" }
  /** A reload is done, or failed (`error`). */
  | { t: "reloaded"; id: number; error?: string }
  | RelayMessage;

const scope = globalThis as unknown as {
  postMessage(message: FromNativeWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToNativeWorker>) => void) | null;
};

let loop: EchoLoop | undefined;
let close = () => {};

/** Runs the loop until it ends, or until operator lines wait. */
function resume(): void {
  if (loop === undefined || loop.waiting) return;
  try {
    if (loop.run() === "mail") return;
  } catch (error) {
    scope.postMessage({ t: "failed", message: String(error) });
  }
  loop = undefined;
  close();
  const leaked = leakedTls();
  if (leaked !== undefined) {
    scope.postMessage({ t: "records", records: [leaked] });
  }
  scope.postMessage({ t: "done" });
}

/**
 * An error record if the loop left OpenSSL objects behind: every session
 * and context is freed by the time it ends (tests/tls_test.ts looks).
 */
function leakedTls(): LoopRecord | undefined {
  const sessions = liveSessions();
  const contexts = liveContexts();
  if (sessions === 0 && contexts === 0) return undefined;
  return {
    level: "error",
    message: "TLS objects not freed: {sessions} sessions, {contexts} contexts",
    properties: { sessions, contexts },
  };
}

function start(init: NativeWorkerInit): void {
  const native = openLibc();
  close = () => native.close();
  try {
    loop = new EchoLoop(native, {
      listenFd: init.listenFd,
      udpFd: init.udpFd,
      udpTable: init.udpTable,
      wakeFd: init.wakeFd,
      control: new Int32Array(init.control),
      counters: new Float64Array(init.counters, init.offset * 8, init.length),
      open: new Int32Array(init.open),
      mail: new Int32Array(init.mail, init.index * 4, 1),
      server: init.server,
      address: init.address,
      logInfo: init.logInfo,
      logDebug: init.logDebug,
      post: (records) => scope.postMessage({ t: "records", records }),
      send: (message, transfer) => scope.postMessage(message, transfer),
    });
  } catch (error) {
    close();
    throw error;
  }
}

scope.onmessage = (event) => {
  const message = event.data;
  if (message.t === "init") {
    try {
      start(message);
    } catch (error) {
      scope.postMessage({ t: "failed", message: String(error) });
      scope.postMessage({ t: "done" });
      return;
    }
    scope.postMessage({ t: "started" });
  } else if (message.t === "deliver") {
    loop?.deliver(message.items, message.acks);
  } else if (message.t === "finish") {
    loop?.finishAll(message.reason);
  } else if (message.t === "setFaults") {
    loop?.setFaults(message.faults);
    scope.postMessage({ t: "reloaded", id: message.id });
  } else if (message.t === "upstreamAddress") {
    loop?.setUpstreamAddress(message.hostname);
    scope.postMessage({ t: "reloaded", id: message.id });
  } else if (message.t === "reloadTls") {
    try {
      loop?.reloadTls(message.listen);
      scope.postMessage({ t: "reloaded", id: message.id });
    } catch (error) {
      scope.postMessage({
        t: "reloaded",
        id: message.id,
        error: String(error),
      });
    }
  } else {
    loop?.announce(message.line);
  }
  resume();
};
