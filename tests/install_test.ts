// README's `deno install` lines: tcp-echo-server and tcp-echo-client as
// commands of their own, installed from this clone into a temporary root.

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { tempDir } from "./_helpers.ts";
import { ROOT, run, ServerProcess } from "./_process.ts";

/** The permissions each command needs, as README lists them. */
const INSTALLS = {
  "tcp-echo-server": [
    ...["--allow-net", "--allow-read", "--allow-write", "--allow-sys=hostname"],
    ...["--allow-ffi", "--unstable-net", "server.ts"],
  ],
  "tcp-echo-client": [
    ...["--allow-net", "--allow-read", "--allow-write", "--allow-sys=hostname"],
    ...["--allow-ffi", "--unstable-net", "client.ts"],
  ],
};

Deno.test("deno install gives tcp-echo-server and tcp-echo-client commands that work", async () => {
  await using installRoot = await tempDir("tcp-echo-install-");
  const root = installRoot.path;
  for (const [name, args] of Object.entries(INSTALLS)) {
    const installed = await run(
      Deno.execPath(),
      [
        ...["install", "--quiet", "--global", "--root", root, "--name", name],
        ...["--config", `${ROOT}deno.json`, ...args],
      ],
      undefined,
      ROOT,
    );
    assert.equal(installed.code, 0, installed.stderr);
  }
  // The shims run `deno` from PATH.
  const env = { PATH: `${dirname(Deno.execPath())}:/usr/bin:/bin` };
  await using server = await ServerProcess.start(
    ["--log-level", "error"],
    [`${root}/bin/tcp-echo-server`],
    { env, cwd: root },
  );
  const client = await run(
    `${root}/bin/tcp-echo-client`,
    ["--port", String(server.port), "installed"],
    undefined,
    root,
    env,
  );
  assert.equal(client.code, 0, client.stderr);
  assert.equal(new TextDecoder().decode(client.stdout), "installed\n");
});
