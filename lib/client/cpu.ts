// Private: the CPU time a load test's measured part costs this process, for
// both engines' reports (lib/client/stream_load.ts, lib/native/load_loop.ts). Not
// exported from mod.ts.

import process from "node:process";

/**
 * The CPU time (user and system, every thread of this process) spent from
 * when the measured part of a load test begins (after its warm-up) to when
 * it ends: the same window as its round trips per second, so that "% of
 * one core" leaves out starting up and warming up.
 */
export class CpuWindow {
  #from: number | undefined;
  #to: number | undefined;

  /** Whether the window has begun. */
  get begun(): boolean {
    return this.#from !== undefined;
  }

  /** The window begins now; later calls change nothing. */
  begin(): void {
    this.#from ??= cpuMs();
  }

  /** The window ends now, if it has begun; later calls change nothing. */
  end(): void {
    if (this.#from !== undefined) this.#to ??= cpuMs();
  }

  /** Milliseconds of CPU in the window (so far, if it has not ended). */
  get ms(): number {
    if (this.#from === undefined) return 0;
    return (this.#to ?? cpuMs()) - this.#from;
  }
}

/** CPU time (user + system) of this process so far, in milliseconds. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
