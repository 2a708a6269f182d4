import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { EchoError, echoOnce, serveEcho } from "../mod.ts";
import { engineTest } from "./_engines.ts";
import { pseudoRandomBytes, readAll, writeAll } from "./_helpers.ts";

/**
 * A misbehaving peer: for each connection, `reply` gets what the client sent
 * (until its half-close) and returns what to send back before closing, or
 * `"hang"` to keep the connection open and silent until the test ends.
 */
function fakeServer(reply: (received: Uint8Array) => Uint8Array | "hang") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const conn of listener) {
      open.add(conn);
      const answer = reply(await readAll(conn));
      if (answer === "hang") continue;
      await writeAll(conn, answer);
      conn.close();
      open.delete(conn);
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of open) conn.close();
      await serving;
    },
  };
}

Deno.test("echoOnce() returns a string for a string", async () => {
  await using server = serveEcho({ port: 0 });
  const port = server.addr.port;
  assert.equal(await echoOnce("hello", { port }), "hello");
  assert.equal(await echoOnce("", { port }), "");
  assert.equal(
    await echoOnce("héllo ✓ 🦕\n\r\t", { port }),
    "héllo ✓ 🦕\n\r\t",
  );
});

Deno.test("echoOnce() returns bytes for bytes", async () => {
  await using server = serveEcho({ port: 0 });
  const port = server.addr.port;
  for (const size of [0, 1, 64 * 1024 + 1, 5 * 1024 * 1024]) {
    const payload = pseudoRandomBytes(size, size + 3);
    const echoed = await echoOnce(payload, { port });
    assert.ok(echoed instanceof Uint8Array);
    assert.deepEqual(echoed, payload);
  }
});

Deno.test("echoOnce() rejects when the connection is refused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await assert.rejects(echoOnce("x", { port }), Deno.errors.ConnectionRefused);
});

Deno.test("echoOnce() rejects with EchoError when the echo is short", async () => {
  await using fake = fakeServer((received) => received.subarray(0, 2));
  await assert.rejects(echoOnce("hello", { port: fake.port }), {
    name: "EchoError",
    message: "Echo is short: the server closed after 2 of 5 bytes",
  });
});

Deno.test("echoOnce() rejects with EchoError when the echo differs", async () => {
  await using fake = fakeServer((received) =>
    received.map((b, i) => i === 3 ? b ^ 1 : b)
  );
  await assert.rejects(
    echoOnce("hello", { port: fake.port }),
    (error) =>
      error instanceof EchoError && error.problem === "differs" &&
      error.at === 3 &&
      error.message ===
        'Echo differs from what was sent at byte 3: the server sent "mo"',
  );
});

Deno.test("echoOnce() shows what a server that answers said, and raw returns it", async () => {
  await using fake = fakeServer(() =>
    new TextEncoder().encode("ERR \x1b[2Jno\nsecond line\n")
  );
  await assert.rejects(
    echoOnce("hello", { port: fake.port }),
    (error) =>
      error instanceof EchoError && error.at === 0 &&
      // Its first line, with the escape sequence made harmless.
      error.message ===
        'Echo differs from what was sent at byte 0: the server sent "ERR \ufffd[2Jno" and more',
  );
  assert.equal(
    await echoOnce("hello", { port: fake.port, raw: true }),
    "ERR \x1b[2Jno\nsecond line\n",
  );
});

engineTest(
  "echoOnce() says when a server closes before echoing anything, and how much was sent",
  async (engine) => {
    // Over maxConnections: closed at once, as a refused client is.
    await using server = serveEcho({ port: 0, engine, maxConnections: 1 });
    using holder = await Deno.connect({ port: server.addr.port });
    await writeAll(holder, new Uint8Array([1]));
    await holder.read(new Uint8Array(1));
    await assert.rejects(
      echoOnce("hi", { port: server.addr.port }),
      (error) =>
        error instanceof EchoError && error.problem === "refused" &&
        /^The server (closed|reset) the connection before echoing anything \([02] bytes sent\): it may refuse this client \(access rules, connection limits\) or expect a PROXY header or TLS$/
          .test(error.message),
    );
    assert.equal(server.stats.rejected, 1);
  },
);

Deno.test("echoOnce() rejects with EchoError when the echo is too long", async () => {
  await using fake = fakeServer((received) =>
    new Uint8Array([...received, 33])
  );
  await assert.rejects(echoOnce("hello", { port: fake.port }), EchoError);
});

Deno.test("echoOnce() times out on a silent server", async () => {
  await using fake = fakeServer(() => "hang");
  const started = Date.now();
  await assert.rejects(echoOnce("hello", { port: fake.port, timeout: 200 }), {
    name: "TimeoutError",
    message: "Timed out after 200 ms waiting for 5 more echoed bytes",
  });
  assert.ok(Date.now() - started >= 190);
});

Deno.test("echoOnce() times out on a server that never closes", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept();
  const reply = echoOnce("ping", { port: listener.addr.port, timeout: 200 });
  using conn = await accepting;
  const buffer = new Uint8Array(4);
  assert.equal(await conn.read(buffer), 4);
  await writeAll(conn, buffer);
  await assert.rejects(reply, {
    name: "TimeoutError",
    message: "Timed out after 200 ms waiting for the server to close",
  });
  listener.close();
});

Deno.test("echoOnce() rejects when the server resets the connection", async () => {
  // node:net can send a reset (SO_LINGER 0); Deno.Conn cannot.
  const server = net.createServer((socket) => {
    socket.once("data", () => socket.resetAndDestroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  try {
    // Before any echo: said as a refusal.
    await assert.rejects(
      echoOnce(pseudoRandomBytes(4 * 1024 * 1024), { port }),
      (error) =>
        error instanceof EchoError && error.problem === "refused" &&
        error.message.startsWith(
          "The server reset the connection before echoing anything (",
        ),
    );
  } finally {
    server.close();
    await once(server, "close");
  }
});

Deno.test("echoOnce() with an aborted signal rejects with its reason", async (t) => {
  await using server = serveEcho({ port: 0 });
  const port = server.addr.port;
  await t.step("before the call", async () => {
    const reason = new Error("aborted before");
    await assert.rejects(
      echoOnce("x", { port, signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
  });
  await t.step("while waiting for the echo", async () => {
    await using fake = fakeServer(() => "hang");
    const controller = new AbortController();
    const reason = new Error("aborted during");
    const reply = echoOnce("x", { port: fake.port, signal: controller.signal });
    controller.abort(reason);
    await assert.rejects(reply, (error) => error === reason);
  });
});

Deno.test("echoOnce() rejects bad options", async () => {
  await assert.rejects(echoOnce("x", { port: 70000 }), RangeError);
  await assert.rejects(echoOnce("x", { timeout: -1 }), RangeError);
});
