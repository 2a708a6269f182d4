// A real Redis for the tests: Debian's redis-server, on a Unix socket in a
// fresh directory (no TCP port at all), with AOF on and no snapshots, as
// README recommends. Stopped by its own handle.

/** A running redis-server. */
export interface TestRedis extends AsyncDisposable {
  /** What serveEcho's `redis` option takes. */
  url: string;
  dir: string;
  /** Kills it (SIGKILL: no goodbye) and waits for it to go. */
  kill(): Promise<void>;
  /** Starts it again on the same socket and data (its AOF). */
  start(): Promise<void>;
}

/** Resolves once `path` exists, checking every 10 ms for up to 5 s. */
async function appears(path: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      await Deno.lstat(path);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  throw new Error(`${path} did not appear within 5 s`);
}

/** Starts a redis-server for one test. */
export async function startRedis(): Promise<TestRedis> {
  const dir = await Deno.makeTempDir({ prefix: "tcp-echo-redis-" });
  const socket = `${dir}/redis.sock`;
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    child = new Deno.Command("redis-server", {
      args: [
        "--port",
        "0",
        "--unixsocket",
        socket,
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--dir",
        dir,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await appears(socket);
  };
  const stop = async (signal: Deno.Signal) => {
    if (child === undefined) return;
    try {
      child.kill(signal);
    } catch {
      // Gone already.
    }
    await child.status;
    child = undefined;
    await Deno.remove(socket).catch(() => {});
  };
  await start();
  return {
    url: `unix://${socket}`,
    dir,
    kill: () => stop("SIGKILL"),
    start,
    async [Symbol.asyncDispose]() {
      await stop("SIGTERM");
      await Deno.remove(dir, { recursive: true });
    },
  };
}
