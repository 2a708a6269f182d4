// Helpers for tests that spawn the CLIs and external peers (nc, socat).

import assert from "node:assert/strict";

export const ROOT: string = new URL("..", import.meta.url).pathname;
/**
 * The lockfile for every `deno run` a test spawns: deno.json leaves the lock
 * to each command (`"lock": false`, so that `deno task` does not download
 * every package the lock names), as its tasks do.
 */
export const LOCK: string = `--lock=${ROOT}deno.lock`;
export const SERVER: string = new URL("../server.ts", import.meta.url).pathname;
export const CLIENT: string = new URL("../client.ts", import.meta.url).pathname;

/**
 * Collects the lines of a child's output stream as they arrive, and lets a
 * test wait for a line matching a pattern.
 */
export class Lines {
  readonly lines: string[] = [];
  /** Resolves when the stream has ended. */
  readonly done: Promise<void>;
  #waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#collect(stream);
  }

  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    let partial = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const parts = (partial + text).split("\n");
      partial = parts.pop()!;
      for (const line of parts) this.#add(line);
    }
    if (partial) this.#add(partial);
    for (const w of this.#waiters) w.resolve("");
    this.#waiters = [];
  }

  #add(line: string): void {
    this.lines.push(line);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pattern.test(line)) return true;
      w.resolve(line);
      return false;
    });
  }

  /**
   * Resolves with the first line matching `pattern`, already seen or yet to
   * come; rejects if the stream ends first or `timeoutMs` passes.
   */
  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
    const seen = this.lines.find((line) => pattern.test(line));
    if (seen !== undefined) return seen;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const line = await new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(""), timeoutMs);
      this.#waiters.push({ pattern, resolve });
    }).finally(() => clearTimeout(timer));
    if (line === "") {
      throw new Error(
        `No line matching ${pattern}; got:\n${this.lines.join("\n")}`,
      );
    }
    return line;
  }

  get text(): string {
    return this.lines.join("\n");
  }
}

/** A spawned process with its stdout and stderr collected line by line. */
export class Spawned implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly stdout: Lines;
  readonly stderr: Lines;
  #status: Promise<Deno.CommandStatus> | undefined;

  constructor(
    command: string,
    args: string[],
    options: Deno.CommandOptions = {},
  ) {
    this.child = new Deno.Command(command, {
      args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...options,
    }).spawn();
    this.stdout = new Lines(this.child.stdout);
    this.stderr = new Lines(this.child.stderr);
  }

  /** Resolves with the exit status once the process and its output ended. */
  status(): Promise<Deno.CommandStatus> {
    this.#status ??= (async () => {
      const status = await this.child.status;
      await Promise.all([this.stdout.done, this.stderr.done]);
      return status;
    })();
    return this.#status;
  }

  /** Kills the process if it is still running, and waits for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await this.status();
  }
}

/** A server CLI process that has printed its listening line. */
export class ServerProcess extends Spawned {
  port = 0;

  /** Spawns `deno run server.ts --port 0 ARGS` and waits until it listens. */
  static async start(
    args: string[] = [],
    command: [string, ...string[]] = [
      Deno.execPath(),
      "run",
      LOCK,
      "--allow-net",
      SERVER,
    ],
    options: Deno.CommandOptions = {},
  ): Promise<ServerProcess> {
    const server = new ServerProcess(command[0], [
      ...command.slice(1),
      "--port",
      "0",
      ...args,
    ], options);
    const line = await server.stdout.waitFor(/^Listening on /).catch(
      async (error) => {
        await server[Symbol.asyncDispose]();
        throw new Error(`${error.message}\nstderr:\n${server.stderr.text}`);
      },
    );
    server.port = Number(line.match(/:(\d+)$/)![1]);
    return server;
  }
}

/** The command line that runs the client CLI with `args`. */
export function clientCommand(args: string[]): [string, string[]] {
  return [Deno.execPath(), ["run", LOCK, "--allow-net", CLIENT, ...args]];
}

/**
 * The `script(1)` command that runs `command` with `args` on a terminal
 * (a pseudo-terminal) of its own: what is written to script's stdin is
 * typed at that terminal, and script's stdout is what the terminal shows.
 * Script exits with the command's exit code.
 *
 * Script starts the command through `$SHELL -c`. The shell is set here and
 * told to `exec`, so that the command itself is the terminal's foreground
 * process and a typed Ctrl+C reaches it alone. (With SHELL unset, script
 * uses dash, which would otherwise wait on the command, die of that Ctrl+C
 * itself, and make script exit with 130.)
 */
export function onTerminal(
  command: string,
  args: string[],
): { command: string; args: string[]; env: Record<string, string> } {
  const quoted = [command, ...args].map((word) =>
    `'${word.replaceAll("'", `'\\''`)}'`
  );
  return {
    command: "script",
    args: ["-qfec", ["exec", ...quoted].join(" "), "/dev/null"],
    env: { SHELL: "/bin/sh" },
  };
}

/** Runs the client CLI to completion, with `stdin` as its input. */
export function runClient(
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  return run(...clientCommand(args), stdin);
}

/** Runs any command to completion, with `stdin` as its input. */
export async function run(
  command: string,
  args: string[],
  stdin?: Uint8Array,
  cwd?: string,
  env?: Record<string, string>,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    cwd,
    env,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writing = stdin
    ? (async () => {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(stdin);
        await writer.close();
      } catch (error) {
        // A command may end without reading all its input (openssl
        // s_client whose handshake failed): its output says what happened.
        if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      }
    })()
    : Promise.resolve();
  const [{ code, stdout, stderr }] = await Promise.all([
    child.output(),
    writing,
  ]);
  return { code, stdout, stderr: new TextDecoder().decode(stderr) };
}

/** Writes `text` to a child's piped stdin, keeping it open. */
export async function writeStdin(
  child: Deno.ChildProcess,
  text: string | Uint8Array,
): Promise<void> {
  const writer = child.stdin.getWriter();
  await writer.write(
    typeof text === "string" ? new TextEncoder().encode(text) : text,
  );
  writer.releaseLock();
}

/**
 * Runs `command` once per case, with the case's arguments added, and checks
 * that each is a usage error: exit 2, `error: MESSAGE (see --help)` on
 * stderr, and nothing on stdout.
 */
export async function assertUsageErrors(
  command: readonly string[],
  cases: readonly (readonly [readonly string[], string])[],
): Promise<void> {
  for (const [args, message] of cases) {
    const result = await run(command[0], [...command.slice(1), ...args]);
    const label = args.join(" ").slice(0, 50);
    assert.equal(result.code, 2, `${label}: ${result.stderr}`);
    assert.equal(result.stderr, `error: ${message} (see --help)\n`, label);
    assert.equal(result.stdout.length, 0, label);
  }
}

/**
 * Connects `count` times to 127.0.0.1:`port` and resets each connection at
 * once (SO_LINGER 0, through Python's socket module), synchronously: this
 * event loop, and so a server's accept loop here, stays away until every
 * one of them waits in the listen queue, reset.
 */
export function resetClients(port: number, count: number): void {
  const script = `import socket, struct, sys
for _ in range(int(sys.argv[2])):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()`;
  const { success } = new Deno.Command("python3", {
    args: ["-c", script, String(port), String(count)],
  }).outputSync();
  if (!success) throw new Error("python3 could not connect and reset");
}
