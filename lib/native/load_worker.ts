// Private: the Web Worker of loadTest({ engine: "native" }) (see
// lib/native/native_load.ts): it opens libc for its own thread, runs the
// load loop, blocking in epoll_wait(), and sends back what it measured.
// Not exported from mod.ts.

import { openLibc } from "./ffi.ts";
import { EpollLoad } from "./load_epoll.ts";
import type { LoadConfig, LoadPlan, LoadResult } from "./load_loop.ts";
import { UringLoad } from "./load_uring.ts";
import { liveContexts } from "../tls/context.ts";
import { liveSessions } from "../tls/session.ts";

/** What the calling thread sends: the test, and shared memory. */
export interface LoadWorkerInit extends LoadPlan {
  wakeFd: number;
  control: SharedArrayBuffer;
  progress: SharedArrayBuffer;
}

/** What the worker says, once. */
export type FromLoadWorker =
  | { t: "started" }
  | { t: "result"; result: LoadResult }
  | { t: "snapshot"; latencyHistogram: string }
  | { t: "failed"; message: string };

const scope = globalThis as unknown as {
  postMessage(message: FromLoadWorker): void;
  onmessage: ((event: MessageEvent<LoadWorkerInit>) => void) | null;
};

scope.onmessage = (event) => {
  scope.onmessage = null;
  const init = event.data;
  let native;
  try {
    native = openLibc();
    const config: LoadConfig = {
      ...init,
      control: new Int32Array(init.control),
      progress: new Float64Array(init.progress),
      snapshots: (latencyHistogram) =>
        scope.postMessage({ t: "snapshot", latencyHistogram }),
    };
    const loop = init.io === "io_uring"
      ? new UringLoad(native, config)
      : new EpollLoad(native, config);
    // The duration counts from here.
    scope.postMessage({ t: "started" });
    const result = loop.run();
    // Every OpenSSL object the loop made is freed (the tests rely on it).
    const leaked = liveSessions() + liveContexts();
    if (leaked > 0) throw new Error(`${leaked} TLS objects not freed`);
    scope.postMessage({ t: "result", result });
  } catch (error) {
    scope.postMessage({ t: "failed", message: String(error) });
  } finally {
    native?.close();
  }
};
