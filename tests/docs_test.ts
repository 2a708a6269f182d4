// The docs cannot go stale: every shell transcript in README.md and docs/
// (a ```console block: `$ command` lines, each followed by its output) is
// run here and compared with what the program prints, as Rust's trycmd and
// Python's cram check CLI docs. How a transcript is written:
//
// - Output is stdout and stderr together, without colour. `[..]` in a line
//   stands for any text (times, sizes, paths); a line `...` for any number
//   of lines (a load test's progress, say).
// - `<!-- server PORT: FLAGS -->` just before a block starts
//   `deno task server --port 0 FLAGS` for it (several such lines start
//   several). PORT is the port the docs show: in the commands it becomes the
//   real one, and in the output the real one becomes PORT again. A client
//   or server command without --port, --unix or --ws gets `--port` of the first
//   one, so that `deno task client "hi"` talks to the default port's
//   server as it would. A `--metrics HOST:PORT`, `--control HOST:PORT` or
//   `--websocket HOST:PORT` among the FLAGS listens on a free port instead,
//   and PORT stands for it the same way.
// - `SERVER_PID` in a command is the first server's process id (to send
//   it a signal).
// - `<!-- redis -->` starts a redis-server for the block; `redis://REDIS`
//   in it stands for its URL, `REDIS_SOCKET` for the path of its Unix
//   socket.
// - `<!-- agent NAME -->` (after `<!-- redis -->`) starts a load agent
//   called NAME on that Redis for the block, as
//   `deno task client --redis redis://REDIS --agent --agent-name NAME`.
// - `<!-- setup: COMMAND -->` runs COMMAND (in bash, as the steps run)
//   before the servers start, to make the files they need; it must succeed.
// - `/tmp/` in a command is a fresh folder of the block's, and in the
//   output that folder is `/tmp/` again.
// - Commands run in bash from the repository's root, one at a time, with no
//   stdin; `deno task` runs quiet (no "Task …" line), and Deno's own
//   "Download …" lines are dropped.
//
// A block with `$ ` lines that is not ```console fails the test: every
// transcript is checked. Examples without output are ```sh blocks.

import assert from "node:assert/strict";
import { ROOT, ServerProcess, Spawned } from "./_process.ts";
import { startRedis } from "./_redis.ts";

/** The files whose transcripts are checked. */
function docFiles(): string[] {
  const docs = [...Deno.readDirSync(`${ROOT}docs`)]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...docs];
}

/** One ```console block: where it is, what it needs, what it runs. */
interface Transcript {
  file: string;
  line: number;
  servers: { port: string; flags: string }[];
  setup: string[];
  redis: boolean;
  agents: string[];
  steps: { command: string; expected: string[] }[];
}

/**
 * The transcripts of `file`; the places of its blocks with `$ ` lines that
 * are not ```console go in `misfenced`.
 */
function transcripts(
  file: string,
  text: string,
  misfenced: string[],
): Transcript[] {
  const lines = text.split("\n");
  const found: Transcript[] = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\S*)/.exec(lines[i]);
    if (fence === null) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i].startsWith("```"); i++) {
      body.push(lines[i]);
    }
    const isShell = body.some((line) => line.startsWith("$ "));
    if (fence[1] !== "console") {
      if (isShell) misfenced.push(`${file}:${start + 1}`);
      continue;
    }
    const servers: Transcript["servers"] = [];
    const setup: string[] = [];
    const agents: string[] = [];
    let redis = false;
    // The directives: comment lines just above, blank lines between.
    for (
      let j = start - 1;
      j >= 0 && (lines[j] === "" || lines[j].startsWith("<!--"));
      j--
    ) {
      const server = /^<!-- server (\d+):?(.*?) -->$/.exec(lines[j]);
      if (server) servers.unshift({ port: server[1], flags: server[2].trim() });
      if (lines[j] === "<!-- redis -->") redis = true;
      const agent = /^<!-- agent (\S+) -->$/.exec(lines[j]);
      if (agent) agents.unshift(agent[1]);
      const command = /^<!-- setup: (.*) -->$/.exec(lines[j]);
      if (command) setup.unshift(command[1]);
    }
    const steps: Transcript["steps"] = [];
    for (const line of body) {
      if (line.startsWith("$ ")) {
        steps.push({ command: line.slice(2), expected: [] });
      } else {
        assert.ok(steps.length > 0, `${file}:${start + 2}: output before $`);
        steps.at(-1)!.expected.push(line);
      }
    }
    found.push({
      file,
      line: start + 1,
      servers,
      setup,
      redis,
      agents,
      steps,
    });
  }
  return found;
}

/** Whether `actual` lines match `expected`, with `[..]` and `...`. */
function matches(expected: string[], actual: string[]): boolean {
  const line = (pattern: string, text: string) =>
    new RegExp(
      `^${
        pattern.split("[..]").map((part) =>
          part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
        ).join(".*")
      }$`,
    ).test(text);
  const from = (e: number, a: number): boolean => {
    if (e === expected.length) return a === actual.length;
    if (expected[e] === "...") {
      for (let k = a; k <= actual.length; k++) if (from(e + 1, k)) return true;
      return false;
    }
    return a < actual.length && line(expected[e], actual[a]) &&
      from(e + 1, a + 1);
  };
  return from(0, 0);
}

/** `text` with each whole `from` number replaced by `to`. */
function swapPort(text: string, from: string, to: string): string {
  return text.replace(new RegExp(`(?<![\\d.])${from}(?!\\d)`, "g"), to);
}

/** The path of the test Redis's Unix socket (its URL is `unix://PATH`). */
function socketOf(redis: { url: string } | undefined): string {
  return redis?.url.replace(/^unix:\/\//, "") ?? "REDIS_SOCKET";
}

/** The flags of HTTP endpoints, and the line that says where each is. */
const HTTP_FLAGS: [string, RegExp][] = [
  ["--metrics", /^Metrics on http:/],
  ["--control", /^Control API on http:/],
  ["--websocket", /^WebSocket on wss?:/],
];

async function check(t: Transcript): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "tcp-echo-docs-" });
  await using stack = new AsyncDisposableStack();
  stack.defer(() => Deno.remove(tmp, { recursive: true }));
  const redis = t.redis ? stack.use(await startRedis()) : undefined;
  for (const command of t.setup) {
    const done = await new Deno.Command("bash", {
      args: ["-c", command.replaceAll("/tmp/", `${tmp}/`)],
      cwd: ROOT,
      stdin: "null",
    }).output();
    assert.equal(
      done.code,
      0,
      `${t.file}:${t.line}: setup ${command}: ${
        new TextDecoder().decode(done.stderr)
      }`,
    );
  }
  for (const name of t.agents) {
    assert.ok(redis, `${t.file}:${t.line}: an agent needs <!-- redis -->`);
    const agent = stack.use(
      new Spawned(Deno.execPath(), [
        ...["run", "-A", "--unstable-net", `${ROOT}client.ts`],
        ...["--redis", redis.url, "--agent", "--agent-name", name],
      ]),
    );
    await agent.stderr.waitFor(/waiting for plans/);
  }
  const ports: [string, string][] = [];
  /** The first server's process id, for `SERVER_PID` in the commands. */
  let serverPid: number | undefined;
  for (const { port, flags } of t.servers) {
    const args = flags === ""
      ? []
      : flags.split(" ").map((arg) =>
        arg.replaceAll("/tmp/", `${tmp}/`)
          .replaceAll("redis://REDIS", redis?.url ?? "redis://REDIS")
          .replaceAll("REDIS_SOCKET", socketOf(redis))
      );
    // The HTTP endpoints listen on free ports, that stand for the shown ones.
    const endpoints: [string, RegExp][] = [];
    for (const [flag, printed] of HTTP_FLAGS) {
      const at = args.indexOf(flag);
      if (at === -1) continue;
      endpoints.push([args[at + 1].replace(/^.*:(\d+)$/, "$1"), printed]);
      args[at + 1] = args[at + 1].replace(/\d+$/, "0");
    }
    const server = stack.use(
      await ServerProcess.start(
        ["--log-level", "error", ...args],
        [Deno.execPath(), "run", "-A", "--unstable-net", `${ROOT}server.ts`],
      ),
    );
    ports.push([port, String(server.port)]);
    serverPid ??= server.child.pid;
    for (const [shown, printed] of endpoints) {
      const line = await server.stdout.waitFor(printed);
      ports.push([shown, line.match(/:(\d+)\/\w+$/)![1]]);
    }
  }
  for (const { command, expected } of t.steps) {
    let shell = command.replaceAll("deno task ", "deno task -q ")
      .replaceAll("/tmp/", `${tmp}/`);
    if (serverPid !== undefined) {
      shell = shell.replaceAll("SERVER_PID", String(serverPid));
    }
    if (redis) {
      shell = shell.replaceAll("redis://REDIS", redis.url)
        .replaceAll("REDIS_SOCKET", socketOf(redis));
    }
    for (const [shown, real] of ports) shell = swapPort(shell, shown, real);
    if (ports.length > 0) {
      shell = shell.replace(
        /deno task -q (client|server)\b(?![^|;&]*--(port|unix|ws)\b)/g,
        `deno task -q $1 --port ${ports[0][1]}`,
      );
    }
    const output = await new Deno.Command("bash", {
      args: ["-c", `exec 2>&1; set -o pipefail; ${shell}`],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
      signal: AbortSignal.timeout(60_000),
    }).output();
    let text = new TextDecoder().decode(output.stdout).replaceAll(tmp, "/tmp");
    for (const [shown, real] of ports) text = swapPort(text, real, shown);
    if (redis) {
      text = text.replaceAll(redis.url, "redis://REDIS")
        .replaceAll(socketOf(redis), "REDIS_SOCKET");
    }
    const actual = text.split("\n")
      .filter((line) => !/^Download https?:\/\//.test(line));
    if (actual.at(-1) === "") actual.pop();
    assert.ok(
      matches(expected, actual),
      `${t.file}:${t.line}: $ ${command}\n--- expected\n${
        expected.join("\n")
      }\n--- got\n${actual.join("\n")}`,
    );
  }
}

const misfenced: string[] = [];
for (const file of docFiles()) {
  const text = Deno.readTextFileSync(`${ROOT}${file}`);
  const found = transcripts(file, text, misfenced);
  if (found.length === 0) continue;
  Deno.test(`${file}: every transcript prints what it shows`, async (t) => {
    for (const transcript of found) {
      await t.step(`line ${transcript.line}`, () => check(transcript));
    }
  });
}

Deno.test("every transcript in the docs ($ lines) is a console block, so it is checked", () => {
  assert.deepEqual(misfenced, []);
});

Deno.test("the transcript matcher's wildcards: [..] in a line, ... for lines", () => {
  assert.ok(matches(["a [..] c"], ["a b c"]));
  assert.ok(!matches(["a [..] c"], ["a b d"]));
  assert.ok(matches(["x", "...", "z"], ["x", "1", "2", "z"]));
  assert.ok(matches(["x", "...", "z"], ["x", "z"]));
  assert.ok(!matches(["x", "z"], ["x", "y", "z"]));
  assert.ok(!matches(["x"], ["x", "more"]));
  assert.equal(
    swapPort("on 9000 and :9000, not 19000 or 1.9000", "9000", "1"),
    "on 1 and :1, not 19000 or 1.9000",
  );
});

/** A heading's anchor, as GitHub makes it. */
function slug(heading: string): string {
  return heading.trim().toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** The anchors of a markdown file's headings (outside code blocks). */
function anchors(text: string): Set<string> {
  const found = new Set<string>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const heading = /^#{1,6} (.*)$/.exec(line);
    if (!fenced && heading) found.add(slug(heading[1]));
  }
  return found;
}

Deno.test("every link between the docs reaches a file and a heading, and README links every topic", () => {
  const files = [...docFiles(), "ARCHITECTURE.md", "tests/README.md"];
  const broken: string[] = [];
  for (const file of files) {
    const text = Deno.readTextFileSync(`${ROOT}${file}`)
      .replace(/```[\s\S]*?```/g, "");
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue;
      const [path, anchor] = target.split("#");
      const resolved = path === ""
        ? file
        : new URL(path, `file:///${file}`).pathname.slice(1);
      let linked: string;
      try {
        linked = Deno.readTextFileSync(`${ROOT}${resolved}`);
      } catch {
        if (!isFolder(`${ROOT}${resolved}`)) broken.push(`${file}: ${target}`);
        continue;
      }
      if (anchor !== undefined && !anchors(linked).has(anchor)) {
        broken.push(`${file}: ${target} (no such heading)`);
      }
    }
  }
  assert.deepEqual(broken, []);
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  for (const doc of docFiles().filter((f) => f.startsWith("docs/"))) {
    assert.ok(readme.includes(`](${doc})`), `README links ${doc}`);
  }
});

function isFolder(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
