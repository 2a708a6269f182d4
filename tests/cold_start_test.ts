// A first start downloads only what it uses: a plain server and a plain
// one-shot client need LogTape and no other npm package. Checked offline:
// each runs with --cached-only against a Deno cache that holds LogTape
// alone, so that needing any other package (node-redis, prom-client, Vega,
// HdrHistogram, fast-check) fails the run.

import assert from "node:assert/strict";
import { tempDir } from "./_helpers.ts";
import { CLIENT, LOCK, ROOT, run, SERVER, ServerProcess } from "./_process.ts";

/**
 * A Deno cache (DENO_DIR) holding only the npm package `name`, removed when
 * disposed.
 */
async function cacheWith(
  name: string,
): Promise<{ path: string } & AsyncDisposable> {
  const info = await run(Deno.execPath(), ["info", "--json"]);
  const { npmCache } = JSON.parse(new TextDecoder().decode(info.stdout));
  const dir = await tempDir("tcp-echo-cache-");
  const to = `${dir.path}/npm/registry.npmjs.org/${name}`;
  await Deno.mkdir(to, { recursive: true });
  const copy = await run("cp", [
    "-R",
    `${npmCache}/registry.npmjs.org/${name}/.`,
    to,
  ]);
  assert.equal(copy.code, 0, copy.stderr);
  return dir;
}

Deno.test("deno.json's imports are empty, so deno task installs nothing", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.deepEqual(Object.keys(config.imports), []);
  // deno task installs every package of a lockfile named by the config.
  assert.equal(config.lock, false);
  for (const task of ["server", "client", "test"]) {
    assert.match(config.tasks[task], /--lock=deno\.lock /, task);
  }
  // LogTape's download on a first start is not printed.
  for (const task of ["server", "client", "cert"]) {
    assert.match(config.tasks[task], /deno run --quiet /, task);
  }
});

Deno.test("a plain server and client start with LogTape alone in the cache", async () => {
  await using cache = await cacheWith("@logtape/logtape");
  const env = { DENO_DIR: cache.path };
  const offline = ["run", LOCK, "--cached-only", "--allow-net"];
  await using server = await ServerProcess.start(
    [],
    [Deno.execPath(), ...offline, "--allow-sys=hostname", SERVER],
    { env },
  );
  const client = await run(
    Deno.execPath(),
    [...offline, CLIENT, "--port", String(server.port), "hi"],
    undefined,
    ROOT,
    env,
  );
  assert.equal(client.code, 0, client.stderr);
  assert.equal(new TextDecoder().decode(client.stdout), "hi\n");
  assert.equal(client.stderr, "");
  // The check itself can fail: a load test needs HdrHistogram.
  const load = await run(
    Deno.execPath(),
    [...offline, CLIENT, "--port", String(server.port), "--count", "1"],
    undefined,
    ROOT,
    env,
  );
  assert.equal(load.code, 1);
  assert.match(load.stderr, /hdr-histogram-js.*--cached-only/);
});
