// The engines the echo-mode suites run against: Deno's sockets, and the
// native epoll loop over FFI where this machine can run it.

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
