// A real Redis for the tests: Debian's redis-server, on a Unix socket in a
// fresh directory (no TCP port at all), with AOF on and no snapshots, as
// README recommends. Stopped by its own handle. On request also on TCP and
// TLS, with a password.

import type { TestCertificates } from "./_certs.ts";

/** A running redis-server. */
export interface TestRedis extends AsyncDisposable {
  /** What serveEcho's `redis` option takes: its Unix socket. */
  url: string;
  /**
   * With `password` or `tls`: `redis://:PASSWORD@127.0.0.1:PORT`, and
   * `rediss://:PASSWORD@localhost:PORT` with `tls`.
   */
  tcpUrl?: string;
  tlsUrl?: string;
  dir: string;
  /** The running redis-server's process ID. */
  readonly pid: number;
  /** Kills it (SIGKILL: no goodbye) and waits for it to go. */
  kill(): Promise<void>;
  /** Starts it again on the same socket and data (its AOF). */
  start(): Promise<void>;
}

/**
 * Resolves once `path` exists, checking every 10 ms for up to 5 s; rejects
 * at once when `process` exits first.
 */
async function appears(
  path: string,
  process: Deno.ChildProcess,
): Promise<void> {
  let exit: number | undefined;
  process.status.then(({ code }) => exit = code);
  for (let i = 0; i < 500; i++) {
    try {
      await Deno.lstat(path);
      return;
    } catch {
      if (exit !== undefined) {
        throw new Error(`redis-server exited with ${exit}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  throw new Error(`${path} did not appear within 5 s`);
}

/** A port that was free a moment ago (Redis cannot be given port 0). */
function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** What else a test Redis listens on, and whether it asks a password. */
export interface TestRedisOptions {
  /** Also on TCP, with this password (`requirepass`). */
  password?: string;
  /** Also on TLS, with this certificate (clients are not asked for one). */
  tls?: TestCertificates;
  /** More configuration, as `--name value` arguments. */
  config?: string[];
}

/** Starts a redis-server for one test. */
export async function startRedis(
  options: TestRedisOptions = {},
): Promise<TestRedis> {
  const dir = await Deno.makeTempDir({ prefix: "tcp-echo-redis-" });
  const socket = `${dir}/redis.sock`;
  const tcp = options.password !== undefined || options.tls !== undefined;
  let ports = [0, 0];
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    const { password, tls } = options;
    child = new Deno.Command("redis-server", {
      args: [
        "--bind",
        "127.0.0.1",
        "--port",
        String(ports[0]),
        ...(tls
          ? [
            "--tls-port",
            String(ports[1]),
            "--tls-cert-file",
            tls.certFile,
            "--tls-key-file",
            tls.keyFile,
            "--tls-ca-cert-file",
            tls.caFile,
            "--tls-auth-clients",
            "no",
          ]
          : []),
        ...(password === undefined ? [] : ["--requirepass", password]),
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
        ...options.config ?? [],
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await appears(socket, child);
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
  // A port taken between freePort() and Redis's bind: Redis exits, and
  // the socket never appears; try other ports.
  for (let attempt = 1;; attempt++) {
    if (tcp) ports = [freePort(), options.tls ? freePort() : 0];
    try {
      await start();
      break;
    } catch (error) {
      await stop("SIGKILL");
      if (!tcp || attempt === 5) throw error;
    }
  }
  const auth = options.password === undefined ? "" : `:${options.password}@`;
  return {
    url: `unix://${socket}`,
    tcpUrl: tcp ? `redis://${auth}127.0.0.1:${ports[0]}` : undefined,
    tlsUrl: options.tls ? `rediss://${auth}localhost:${ports[1]}` : undefined,
    dir,
    get pid() {
      return child!.pid;
    },
    kill: () => stop("SIGKILL"),
    start,
    async [Symbol.asyncDispose]() {
      await stop("SIGTERM");
      await Deno.remove(dir, { recursive: true });
    },
  };
}
