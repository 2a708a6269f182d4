// Interop with peers nobody here wrote: netcat-openbsd and socat as clients of
// our server, and socat running `cat` as the server for our clients.

import assert from "node:assert/strict";
import { echoOnce, echoStream, serveEcho } from "../mod.ts";
import { concat, pseudoRandomBytes } from "./_helpers.ts";
import { run, runClient, Spawned } from "./_process.ts";

const PAYLOAD = pseudoRandomBytes(1024 * 1024 + 7, 42);

Deno.test("netcat-openbsd gets its stdin echoed back exactly", async (t) => {
  await using server = serveEcho({ port: 0 });
  const port = String(server.addr.port);
  for (
    const [name, input] of [["1 MiB binary", PAYLOAD], [
      "empty",
      new Uint8Array(),
    ]] as const
  ) {
    await t.step(name, async () => {
      // -N: shut down the socket's write side at EOF on stdin (a half-close).
      const result = await run("nc", ["-N", "127.0.0.1", port], input);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.stdout, input);
    });
  }
  assert.equal(server.stats.bytesOut, PAYLOAD.length);
});

Deno.test("socat gets its stdin echoed back exactly", async () => {
  await using server = serveEcho({ port: 0 });
  const result = await run(
    "socat",
    ["-t", "30", "-", `TCP:127.0.0.1:${server.addr.port}`],
    PAYLOAD,
  );
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.stdout, PAYLOAD);
});

Deno.test("parallel nc clients are each echoed their own bytes", async () => {
  await using server = serveEcho({ port: 0 });
  const port = String(server.addr.port);
  const inputs = Array.from(
    { length: 20 },
    (_, i) => pseudoRandomBytes(50_000 + i, i + 5),
  );
  const results = await Promise.all(
    inputs.map((input) => run("nc", ["-N", "127.0.0.1", port], input)),
  );
  results.forEach((result, i) => assert.deepEqual(result.stdout, inputs[i]));
});

/** socat listening on 127.0.0.1, port 0, running `cat` for each client. */
async function socatCat(): Promise<{ port: number; process: Spawned }> {
  const process = new Spawned("socat", [
    "-d",
    "-d",
    "TCP-LISTEN:0,bind=127.0.0.1,fork,reuseaddr",
    "EXEC:cat",
  ]);
  const line = await process.stderr.waitFor(
    /listening on AF=2 127\.0\.0\.1:\d+/,
  );
  return { port: Number(line.match(/:(\d+)$/)![1]), process };
}

Deno.test("our client CLI and library work against socat running cat", async (t) => {
  const { port, process } = await socatCat();
  await using _ = process;
  await t.step("client CLI with a message", async () => {
    const result = await runClient(["--port", String(port), "hi"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(new TextDecoder().decode(result.stdout), "hi\n");
  });
  await t.step("client CLI with binary stdin", async () => {
    const result = await runClient(["--port", String(port), "-"], PAYLOAD);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, PAYLOAD);
  });
  await t.step("echoOnce and echoStream", async () => {
    assert.equal(await echoOnce("héllo", { port }), "héllo");
    const chunks = [PAYLOAD.subarray(0, 1000), PAYLOAD.subarray(1000)];
    const echoed = await new Response(echoStream(chunks, { port })).bytes();
    assert.deepEqual(echoed, concat(chunks));
  });
});
