// IPv6: listening on ::1 and on :: (dual-stack), addresses as [::1]:PORT,
// the clients and the CLIs with --hostname ::1.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { echoOnce, loadTest, serveEcho } from "../mod.ts";
import { captureLogs, localPeer } from "./_helpers.ts";
import { LOCK, run, runClient, ServerProcess } from "./_process.ts";

const logs = await captureLogs();
const decoder = new TextDecoder();

engineTest(
  "serveEcho on ::1 echoes to IPv6 clients; addresses print as [::1]:PORT",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ engine, hostname: "::1", port: 0 });
    assert.equal(server.addr.hostname, "::1");
    const { port } = server.addr;
    assert.equal(await echoOnce("six", { hostname: "::1", port }), "six");
    const opened = await logs.waitFor((r) =>
      r.rawMessage.toString().startsWith("Opened {peer}")
    );
    assert.match(String(opened.properties.peer), /^\[::1\]:\d+$/);
    const report = await loadTest({ hostname: "::1", port, count: 100 });
    assert.equal(report.address, `[::1]:${port}`);
    assert.equal(report.roundTrips, 100);
  },
);

engineTest(
  "serveEcho on :: serves IPv4 and IPv6 clients, and logs the IPv4 one as IPv4",
  async (engine) => {
    logs.clear();
    await using server = serveEcho({ engine, hostname: "::", port: 0 });
    const { port } = server.addr;
    using v4 = await Deno.connect({ hostname: "127.0.0.1", port });
    const closed = logs.closed(localPeer(v4));
    v4.close();
    await closed;
    assert.equal(
      await echoOnce("over six", { hostname: "::1", port }),
      "over six",
    );
    assert.equal(await echoOnce("over four", { port }), "over four");
  },
);

Deno.test("server and client CLIs with --hostname ::1, with and without workers", async () => {
  for (const workers of ["1", "2"]) {
    await using server = await ServerProcess.start(
      ["--hostname", "::1", "--workers", workers, "--log-level", "error"],
      [
        Deno.execPath(),
        "run",
        LOCK,
        "--allow-net",
        "--allow-read",
        "--unstable-net",
        new URL("../server.ts", import.meta.url).pathname,
      ],
    );
    assert.match(server.stdout.lines[0], /^Listening on \[::1\]:\d+$/);
    const hi = await runClient([
      "--hostname",
      "::1",
      "--port",
      String(server.port),
      "hi",
    ]);
    assert.equal(hi.code, 0, hi.stderr);
    assert.equal(decoder.decode(hi.stdout), "hi\n");
    // A peer nobody here wrote, over IPv6.
    const nc = await run(
      "nc",
      ["-N", "::1", String(server.port)],
      new TextEncoder().encode("nc6"),
    );
    assert.equal(decoder.decode(nc.stdout), "nc6");
  }
  const refused = await runClient(["--hostname", "::1", "--port", "1", "hi"]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /^error: Echo via \[::1\]:1 failed: Connection refused/,
  );
});
