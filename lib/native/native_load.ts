// Private: loadTest({ engine: "native" }) on the calling thread: it starts
// the load loop in a Web Worker (lib/native/load_worker.ts), which keeps to
// the duration on its own clock; stops it through shared memory and an
// eventfd when the signal aborts; and reads its progress from shared
// memory. Not exported from mod.ts.

import { optionError } from "../_helpers.ts";
import {
  assertNativeRuns,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  ioUringSupport,
  type Native,
  openLibc,
} from "./ffi.ts";
import {
  PROGRESS_DONE,
  PROGRESS_ERRORS,
  SNAPSHOT_LOAD,
  STOP_LOAD,
} from "./load_loop.ts";
import type { FromLoadWorker, LoadWorkerInit } from "./load_worker.ts";
import type { LoadPlan, LoadResult, NativeIo } from "./load_loop.ts";

const WORKER_URL = new URL("./load_worker.ts", import.meta.url);

/** Throws unless the native load generator can run here. */
export function assertNativeLoad(): void {
  assertNativeRuns(WORKER_URL);
}

/** The test to run, as loadTest checked it. */
export interface NativeLoadOptions extends Omit<LoadPlan, "io"> {
  /** As asked for; by default io_uring where the kernel allows it. */
  io: NativeIo | undefined;
  progressInterval: number;
  onProgress?: (progress: {
    elapsedMs: number;
    roundTrips: number;
    rate: number;
    errors: number;
    latencyHistogram?: string;
  }) => void;
  /** Progress carries the latency histogram so far (a tick late). */
  progressHistogram?: boolean;
  signal: AbortSignal | undefined;
}

/** Runs the load loop in a worker; resolves with what it measured. */
export async function nativeLoad(
  options: NativeLoadOptions,
): Promise<LoadResult & { io: NativeIo }> {
  const native = openLibc();
  let io: NativeIo;
  try {
    io = chooseIo(native, options.io, epollOnly(options));
  } catch (error) {
    native.close();
    throw error;
  }
  const wakeFd = native.libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  const control = new Int32Array(new SharedArrayBuffer(4));
  const progress = new Float64Array(new SharedArrayBuffer(16));
  const worker = new Worker(WORKER_URL, { type: "module" });
  const one = new BigUint64Array([1n]);
  const stop = () => {
    if (Atomics.exchange(control, 0, STOP_LOAD) === STOP_LOAD) return;
    native.libc.write(wakeFd, one, one.byteLength);
  };
  let startedAt = performance.now();
  let ticker: ReturnType<typeof setInterval> | undefined;
  let lastCount = 0;
  let lastAt = startedAt;
  const { onProgress } = options;
  /** The histogram the loop last sent, when asked for (progressHistogram). */
  let snapshot: string | undefined;
  const tick = () => {
    const now = performance.now();
    const done = progress[PROGRESS_DONE];
    onProgress?.({
      elapsedMs: now - startedAt,
      roundTrips: done,
      rate: (done - lastCount) / ((now - lastAt) / 1000),
      errors: progress[PROGRESS_ERRORS],
      ...(snapshot === undefined ? {} : { latencyHistogram: snapshot }),
    });
    if (
      options.progressHistogram &&
      Atomics.compareExchange(control, 0, 0, SNAPSHOT_LOAD) === 0
    ) {
      native.libc.write(wakeFd, one, one.byteLength);
    }
    lastCount = done;
    lastAt = now;
  };
  /** The loop is running (and keeps to the duration itself). */
  const started = () => {
    startedAt = lastAt = performance.now();
    if (onProgress !== undefined) {
      ticker = setInterval(tick, options.progressInterval);
    }
  };
  options.signal?.addEventListener("abort", stop, { once: true });
  try {
    const outcome = await new Promise<
      Exclude<FromLoadWorker, { t: "started" } | { t: "snapshot" }>
    >((resolve) => {
      worker.onmessage = (event: MessageEvent<FromLoadWorker>) => {
        const message = event.data;
        if (message.t === "started") started();
        else if (message.t === "snapshot") snapshot = message.latencyHistogram;
        else resolve(message);
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        resolve({ t: "failed", message: event.message });
      };
      const init: LoadWorkerInit = {
        hostname: options.hostname,
        port: options.port,
        path: options.path,
        proxy: options.proxy,
        udp: options.udp,
        tls: options.tls,
        expect: options.expect,
        reconnectEvery: options.reconnectEvery,
        message: options.message,
        connections: options.connections,
        count: options.count,
        countPerConnection: options.countPerConnection,
        rate: options.rate,
        timeout: options.timeout,
        warmup: options.warmup,
        duration: options.duration,
        sources: options.sources,
        io,
        wakeFd,
        control: control.buffer as SharedArrayBuffer,
        progress: progress.buffer as SharedArrayBuffer,
      };
      worker.postMessage(init);
    });
    if (outcome.t === "failed") {
      throw new Error(`The native load generator failed: ${outcome.message}`);
    }
    return { ...outcome.result, io };
  } finally {
    clearInterval(ticker);
    options.signal?.removeEventListener("abort", stop);
    worker.terminate();
    native.libc.close(wakeFd);
    native.close();
  }
}

/**
 * What of `options` runs on epoll only, if anything: UDP (each socket
 * stamps its datagrams with its own sequence), TLS (OpenSSL's sessions fed
 * as readiness comes), and reconnects (a socket replaced while operations
 * on the old one may still be in the ring).
 */
function epollOnly(options: NativeLoadOptions): string | undefined {
  if (options.udp) return "UDP";
  if (options.tls !== undefined) return "TLS";
  if (options.reconnectEvery !== Infinity) return "reconnectEvery";
  if (options.expect.length > 0) return "expect";
  return undefined;
}

/**
 * io_uring unless `asked` says epoll or the kernel says no; epoll for what
 * `epollOnly` names.
 */
function chooseIo(
  native: Native,
  asked: NativeIo | undefined,
  epollFor: string | undefined,
): NativeIo {
  if (asked === "epoll") return "epoll";
  if (asked !== undefined && asked !== "io_uring") {
    throw optionError("nativeIo", `must be io_uring or epoll, got ${asked}`);
  }
  if (epollFor !== undefined) {
    if (asked === undefined) return "epoll";
    throw optionError(
      "nativeIo",
      `io_uring drives long-lived TCP and Unix streams; ${epollFor} runs on epoll`,
      TypeError,
    );
  }
  const refused = ioUringSupport(native);
  if (refused === undefined) return "io_uring";
  if (asked === undefined) return "epoll";
  throw optionError(
    "nativeIo",
    `io_uring is not available here (${refused})`,
    Deno.errors.NotSupported,
  );
}
