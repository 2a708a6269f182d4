// The faults' control API (lib/control/api.ts, serveControl, --control):
// its routes and answers, who it answers, and changes that reach open
// connections with liveFaults (latency, hang, down) or only new ones
// without.

import assert from "node:assert/strict";
import { serveControl, serveEcho } from "../mod.ts";
import { controlRoute } from "../lib/control/api.ts";
import { readExactly, writeAll } from "./_helpers.ts";
import { engineTest } from "./_engines.ts";
import { assertUsageErrors, LOCK, SERVER, ServerProcess } from "./_process.ts";

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

/** `method` on `url` with `body`: the status, and the JSON answer if any. */
async function call(
  url: string,
  method: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined
      ? undefined
      : typeof body === "string"
      ? body
      : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

/** The names of `server`'s faults. */
function namesOf(server: { faults: readonly { name?: string }[] }): string[] {
  return server.faults.map((f) => f.name ?? "");
}

/** One round trip of `n` bytes on `conn`, in ms. */
async function roundTrip(conn: Deno.Conn, n = 100): Promise<number> {
  const started = performance.now();
  await writeAll(conn, bytes(n));
  assert.deepEqual(await readExactly(conn, n), bytes(n));
  return performance.now() - started;
}

Deno.test("the control API reads, replaces, adds and removes faults, and says what is wrong", async () => {
  await using server = serveEcho({ port: 0, liveFaults: true });
  await using control = serveControl(server, { port: 0 });
  const api = `http://127.0.0.1:${control.addr.port}/faults`;
  assert.deepEqual(await call(api, "GET"), { status: 200, json: [] });
  const put = await call(api, "PUT", [{ kind: "latency", ms: 5 }]);
  assert.equal(put.status, 200);
  assert.deepEqual(put.json, [{
    kind: "latency",
    ms: 5,
    jitter: 0,
    distribution: "uniform",
    name: "latency",
    rate: 1,
    clients: [],
    direction: "both",
  }]);
  // What GET shows goes back through PUT as it is.
  assert.deepEqual((await call(api, "PUT", put.json)).json, put.json);
  const added = await call(`${api}/cut`, "POST", {
    kind: "limit",
    bytes: 10,
    direction: "send",
  });
  assert.equal(added.status, 201);
  assert.equal((added.json as { name: string }).name, "cut");
  // The command line's form, named by its own name.
  const cli = await call(api, "POST", "slicer:size=4,name=thin");
  assert.equal(cli.status, 201);
  assert.deepEqual(namesOf(server), ["latency", "cut", "thin"]);
  assert.deepEqual(
    await call(`${api}/cut`, "POST", { kind: "limit", bytes: 1 }),
    {
      status: 409,
      json: {
        error:
          "a fault named cut exists: DELETE /faults/cut first, or PUT /faults",
      },
    },
  );
  assert.deepEqual(
    await call(`${api}/x`, "POST", { kind: "latency", ms: -1 }),
    {
      status: 400,
      json: {
        error:
          "Cannot use faults: fault.ms: must be whole milliseconds from 0 to 2147483647, got -1",
      },
    },
  );
  assert.deepEqual(
    await call(`${api}/x`, "POST", { kind: "latency", ms: 1, name: "y" }),
    { status: 400, json: { error: 'the body names "y", the path "x"' } },
  );
  assert.equal((await call(api, "PUT", "{not json")).status, 400);
  assert.equal((await call(api, "PUT", { kind: "latency" })).status, 400);
  // Valid, but not on this engine, nor without UDP: 422 and 400.
  assert.deepEqual(await call(api, "PUT", [{ kind: "reset", bytes: 1 }]), {
    status: 422,
    json: {
      error:
        "Cannot use engine: default does not serve reset faults (the native engine does)",
    },
  });
  assert.equal(
    (await call(api, "PUT", [{ kind: "drop", probability: 1 }])).status,
    400,
  );
  assert.equal(server.faults.length, 3, "a refused change keeps the faults");
  assert.equal((await call(`${api}/thin`, "GET")).status, 200);
  assert.equal((await call(`${api}/cut`, "DELETE")).status, 204);
  assert.deepEqual(await call(`${api}/cut`, "DELETE"), {
    status: 404,
    json: { error: "no fault named cut" },
  });
  assert.equal((await call(`${api}/cut`, "GET")).status, 404);
  const patch = await fetch(api, { method: "PATCH" });
  await patch.body?.cancel();
  assert.equal(patch.status, 405);
  assert.equal(patch.headers.get("allow"), "GET, HEAD, PUT, POST, DELETE");
  const other = await fetch(`http://127.0.0.1:${control.addr.port}/metrics`);
  assert.equal(other.status, 404);
  assert.equal(await other.text(), "Not found: try /faults\n");
  assert.equal((await call(api, "DELETE")).status, 204);
  assert.deepEqual(server.faults, []);
  // Changes made at once are made one after the other, none lost.
  const names = Array.from({ length: 8 }, (_, i) => `l${i}`);
  const posts = await Promise.all(
    names.map((n) => call(`${api}/${n}`, "POST", { kind: "latency", ms: 1 })),
  );
  assert.ok(posts.every((p) => p.status === 201));
  assert.deepEqual(namesOf(server).sort(), names);
});

Deno.test("the control API answers loopback clients without a token, and anyone with it alone", async () => {
  await using server = serveEcho({ port: 0 });
  const request = (headers: Record<string, string> = {}) =>
    new Request("http://echo/faults", { headers });
  const from = (hostname: string): Deno.ServeHandlerInfo<Deno.Addr> => ({
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    completed: Promise.resolve(),
  });
  const open = controlRoute(server);
  for (
    const loopback of ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]
  ) {
    assert.equal(
      (await open(request(), from(loopback))!).status,
      200,
      loopback,
    );
  }
  const elsewhere = await open(request(), from("192.0.2.7"))!;
  assert.equal(elsewhere.status, 403);
  assert.match(await elsewhere.text(), /only with a token/);
  const guarded = controlRoute(server, "s3cret");
  for (
    const [headers, host] of [[{}, "127.0.0.1"], [{
      authorization: "Bearer wrong",
    }, "192.0.2.7"], [{ authorization: "Bearer s3cre" }, "127.0.0.1"]] as const
  ) {
    const refused = await guarded(request(headers), from(host))!;
    assert.equal(refused.status, 401, JSON.stringify(headers));
    assert.match(refused.headers.get("www-authenticate")!, /^Bearer /);
    await refused.body?.cancel();
  }
  const ok = await guarded(
    request({ authorization: "Bearer s3cret" }),
    from("192.0.2.7"),
  )!;
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  assert.equal(open(new Request("http://echo/other"), from("::1")), undefined);
  assert.throws(() => serveControl(server, { port: 0, token: "two words" }), {
    option: "token",
  });
});

engineTest(
  "with liveFaults, a latency, a hang and a down reach connections already open; without, only new ones",
  async (engine) => {
    await using server = serveEcho({ port: 0, engine, liveFaults: true });
    await server.ready;
    const { port } = server.addr;
    using conn = await Deno.connect({ port });
    conn.setNoDelay(true);
    assert.ok(await roundTrip(conn) < 150);
    await server.setFaults([{ kind: "latency", ms: 150, direction: "send" }]);
    assert.ok(await roundTrip(conn) >= 150, "the latency reaches it");
    await server.setFaults([]);
    assert.ok(await roundTrip(conn) < 150, "and is lifted");
    // A hang stops it, both ways, still open; lifting it lets bytes pass.
    await server.setFaults([{ kind: "hang" }]);
    await writeAll(conn, bytes(50));
    const buffer = new Uint8Array(100);
    const waiting = conn.read(buffer);
    let timer;
    const hung = await Promise.race([
      waiting,
      new Promise<"hung">((resolve) =>
        timer = setTimeout(resolve, 300, "hung")
      ),
    ]);
    clearTimeout(timer);
    assert.equal(hung, "hung");
    await server.setFaults([]);
    await writeAll(conn, bytes(50));
    const n = await waiting;
    // What came while it hung is gone; what comes after is echoed.
    assert.ok(n !== null && n > 0);
    assert.deepEqual(buffer.subarray(0, n), bytes(50).subarray(0, n));
    assert.deepEqual(
      await readExactly(conn, 50 - n),
      bytes(50).subarray(n),
    );
    // A down closes it.
    await server.setFaults([{ kind: "down" }]);
    assert.equal(await conn.read(buffer), null);
    await server.setFaults([]);
    assert.equal(server.stats.faultActions.down, 1);
    assert.equal(server.stats.faultActions.hang, 1);

    // Without liveFaults: open connections keep what they had.
    await using fixed = serveEcho({ port: 0, engine });
    await fixed.ready;
    using open = await Deno.connect({ port: fixed.addr.port });
    open.setNoDelay(true);
    await roundTrip(open); // Accepted before the faults change.
    await fixed.setFaults([{ kind: "latency", ms: 150 }]);
    assert.ok(await roundTrip(open) < 150);
    using later = await Deno.connect({ port: fixed.addr.port });
    assert.ok(await roundTrip(later) >= 150);
  },
);

Deno.test("--control serves the API, beside --metrics on one listener when they name one address; a token file guards it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/token`, "t0ken\n");
    await using server = await ServerProcess.start(
      [
        "--control",
        "127.0.0.1:0",
        "--control-token-file",
        `${dir}/token`,
        "--fault",
        "latency:ms=1",
      ],
      [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
    );
    const line = await server.stdout.waitFor(/^Control API on /);
    const api = line.slice("Control API on ".length);
    assert.match(api, /^http:\/\/127\.0\.0\.1:\d+\/faults$/);
    assert.equal((await call(api, "GET")).status, 401);
    const listed = await call(api, "GET", undefined, {
      authorization: "Bearer t0ken",
    });
    assert.equal(listed.status, 200);
    assert.deepEqual((listed.json as { name: string }[]).map((f) => f.name), [
      "latency",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // One address for both: one listener answers /metrics and /faults.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const shared = probe.addr.port;
  probe.close();
  await using both = await ServerProcess.start(
    ["--metrics", `127.0.0.1:${shared}`, "--control", `127.0.0.1:${shared}`],
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
  );
  await both.stdout.waitFor(/^Control API on /);
  const base = `http://127.0.0.1:${shared}`;
  assert.equal((await call(`${base}/faults`, "GET")).status, 200);
  const metrics = await fetch(`${base}/metrics`);
  assert.match(await metrics.text(), /^tcp_echo_connections_active 0$/m);
  const none = await fetch(`${base}/x`);
  assert.equal(await none.text(), "Not found: try /metrics or /faults\n");
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
    [
      [
        ["--control", "localhost"],
        "Invalid --control: expected HOST:PORT ([ADDRESS]:PORT for IPv6), got 'localhost'",
      ],
      [
        ["--control", "127.0.0.1:70000"],
        "Invalid --control: must be an integer from 0 to 65535, got 70000",
      ],
      [
        ["--control-token-file", SERVER],
        "Give --control with --control-token-file",
      ],
    ],
  );
});
