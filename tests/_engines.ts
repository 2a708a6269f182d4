// The engines the echo-mode suites run against: Deno's sockets, and the
// native epoll loop over FFI where this machine can run it.

/** An engine of serveEcho's `engine` option. */
export type Engine = "default" | "native";

/** Every engine this machine runs (the native one needs Linux). */
export const ENGINES: readonly Engine[] = Deno.build.os === "linux"
  ? ["default", "native"]
  : ["default"];
