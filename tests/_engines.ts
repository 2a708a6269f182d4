// The engines the echo-mode suites run against: Deno's sockets, and the
// native epoll loop over FFI where this machine can run it; and the ways
// loadTest() drives its connections, the native engine's two included.

import type { LoadTestOptions } from "../mod.ts";

/** An engine of serveEcho's `engine` option. */
export type Engine = "default" | "native";

/** Every engine this machine runs (the native one needs Linux). */
export const ENGINES: readonly Engine[] = Deno.build.os === "linux"
  ? ["default", "native"]
  : ["default"];

/**
 * Registers `fn` as a test of each engine in {@linkcode ENGINES}, named
 * `name [engine]`: the same contract, run on each.
 */
export function engineTest(
  name: string,
  fn: (engine: Engine, t: Deno.TestContext) => void | Promise<void>,
): void {
  for (const engine of ENGINES) {
    Deno.test(`${name} [${engine}]`, (t) => fn(engine, t));
  }
}

/** loadTest()'s options that choose how it drives its connections. */
export type LoadEngine = Pick<LoadTestOptions, "engine" | "nativeIo">;

/**
 * Every way this machine's loadTest() drives connections: the default
 * engine, and the native one on io_uring and on epoll (both are asked for
 * by name, so that a kernel refusing io_uring fails the test instead of
 * testing epoll twice).
 */
export const LOAD_ENGINES: readonly LoadEngine[] = [
  { engine: "default" },
  ...ENGINES.includes("native")
    ? [
      { engine: "native", nativeIo: "io_uring" } as const,
      { engine: "native", nativeIo: "epoll" } as const,
    ]
    : [],
];

/**
 * Registers `fn` as a test of each way in {@linkcode LOAD_ENGINES}, named
 * `name [engine]` or `name [native io]`.
 */
export function loadEngineTest(
  name: string,
  fn: (engine: LoadEngine, t: Deno.TestContext) => void | Promise<void>,
): void {
  for (const engine of LOAD_ENGINES) {
    const label = [engine.engine, engine.nativeIo].filter(Boolean).join(" ");
    Deno.test(`${name} [${label}]`, (t) => fn(engine, t));
  }
}
