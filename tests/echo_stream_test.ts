import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { echoStream, serveEcho } from "../mod.ts";
import { concat, pseudoRandomBytes } from "./_helpers.ts";

engineTest(
  "echoStream() streams chunks through the server and back",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0 });
    const chunks = Array.from(
      { length: 50 },
      (_, i) => pseudoRandomBytes(i * 997, i + 1),
    );
    const echo = echoStream(chunks, { port: server.addr.port });
    assert.deepEqual(await new Response(echo).bytes(), concat(chunks));
  },
);

engineTest(
  "echoStream() reads from a ReadableStream source",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0 });
    const payload = pseudoRandomBytes(3 * 1024 * 1024);
    const source = new Blob([payload]).stream();
    const echo = echoStream(source, { port: server.addr.port });
    assert.deepEqual(await new Response(echo).bytes(), payload);
  },
);

engineTest(
  "echoStream() keeps its own copy of chunks the producer reuses",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0 });
    const buffer = new Uint8Array(1000);
    async function* reused() {
      for (let i = 1; i <= 20; i++) {
        buffer.fill(i);
        yield buffer;
      }
    }
    const echo = echoStream(reused(), { port: server.addr.port });
    const bytes = await new Response(echo).bytes();
    assert.equal(bytes.length, 20_000);
    for (let i = 0; i < 20; i++) assert.equal(bytes[i * 1000], i + 1);
  },
);

Deno.test("echoStream() does not time out while waiting on its source", async () => {
  await using server = serveEcho({ port: 0 });
  async function* slow() {
    yield new Uint8Array([1]);
    // Everything sent has come back; waiting here is the source's business.
    await new Promise((resolve) => setTimeout(resolve, 300));
    yield new Uint8Array([2]);
  }
  const echo = echoStream(slow(), { port: server.addr.port, timeout: 100 });
  assert.deepEqual(await new Response(echo).bytes(), new Uint8Array([1, 2]));
});

engineTest(
  "echoStream() closes the connection when cancelled",
  async (engine) => {
    await using server = serveEcho({ engine, port: 0 });
    const echo = echoStream([new Uint8Array(10)], { port: server.addr.port });
    const reader = echo.getReader();
    await reader.read();
    await reader.cancel(new Error("enough"));
    await server.shutdown();
    assert.equal(server.stats.active, 0);
  },
);
