// Stream faults acted out by both engines, from a real client over
// loopback: cuts exact to the byte (a limit's clean end, a reset's
// ECONNRESET, a hang's silence), a down's close at once, pacing that keeps
// the echo exact and takes at least its time, a slow close, and
// setFaults() for new connections. (The default engine's faulted
// connection alone: tests/faulted_conn_test.ts.)

import assert from "node:assert/strict";
import { type FaultSpec, serveEcho } from "../mod.ts";
import { ENGINES, engineTest } from "./_engines.ts";
import { testCertificates } from "./_certs.ts";
import { readExactly, writeAll } from "./_helpers.ts";

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

/** What came back before the end, and how it ended. */
interface Received {
  bytes: Uint8Array;
  end: "eof" | "reset" | "open";
}

/**
 * Sends `n` bytes (then half-closes, with `halfClose`) and reads until the
 * end, or until `openMs` pass with nothing more (`open`).
 */
async function echo(
  port: number,
  n: number,
  { halfClose = true, openMs = 10_000 } = {},
): Promise<Received> {
  using conn = await Deno.connect({ port });
  conn.setNoDelay(true);
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reading = (async (): Promise<Received["end"]> => {
    const buffer = new Uint8Array(65536);
    try {
      while (true) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const n = await Promise.race([
          conn.read(buffer),
          new Promise<"open">((resolve) =>
            timer = setTimeout(resolve, openMs, "open")
          ),
        ]).finally(() => clearTimeout(timer));
        if (n === "open") return "open";
        if (n === null) return "eof";
        chunks.push(buffer.slice(0, n));
        length += n;
      }
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return "reset";
      throw error;
    }
  })();
  try {
    await writeAll(conn, bytes(n));
    if (halfClose) await conn.closeWrite();
  } catch {
    // A reset or close may come first.
  }
  const end = await reading;
  const all = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return { bytes: all, end };
}

async function served(engine: "default" | "native", faults: FaultSpec[]) {
  const server = serveEcho({ port: 0, engine, faults });
  await server.ready;
  return server;
}

engineTest(
  "limit on either side: exactly its bytes, then a clean end of stream",
  async (engine) => {
    for (const direction of ["receive", "send"] as const) {
      await using server = await served(engine, [
        { kind: "limit", bytes: 1000, direction },
      ]);
      const got = await echo(server.addr.port, 50_000);
      assert.equal(got.end, "eof", direction);
      assert.deepEqual(got.bytes, bytes(1000), direction);
      assert.equal(server.stats.faultActions.limit, 1, direction);
      // Closed for the reason the fault gave, not as the client's end (once
      // the server has finished: the client may see its end first).
      await server.shutdown();
      assert.equal(server.stats.closed.fault, 1, direction);
      assert.equal(server.stats.closed.closedByClient, 0, direction);
    }
  },
);

engineTest(
  "reset after N bytes: exactly N, then ECONNRESET (native; refused by the default engine)",
  async (engine) => {
    const faults: FaultSpec[] = [{
      kind: "reset",
      bytes: 1000,
      direction: "send",
    }];
    if (engine === "default") {
      assert.throws(
        () => serveEcho({ port: 0, faults }),
        /default does not serve reset faults/,
      );
      return;
    }
    await using server = await served(engine, faults);
    const got = await echo(server.addr.port, 50_000, { halfClose: false });
    assert.deepEqual(got, { bytes: bytes(1000), end: "reset" });
    assert.equal(server.stats.faultActions.reset, 1);
    assert.equal(server.stats.closed.fault, 1);
    // After a time, too: the connection is reset mid-stream.
    await using timed = await served(engine, [{ kind: "reset", afterMs: 200 }]);
    const started = performance.now();
    const cut = await echo(timed.addr.port, 10, { halfClose: false });
    assert.equal(cut.end, "reset");
    assert.ok(performance.now() - started >= 190);
  },
);

engineTest(
  "hang: no byte after its count, and the connection still open after 2 s",
  async (engine) => {
    await using server = await served(engine, [
      { kind: "hang", bytes: 10, direction: "send" },
    ]);
    const got = await echo(server.addr.port, 100, {
      halfClose: false,
      openMs: 2000,
    });
    assert.deepEqual(got, { bytes: bytes(10), end: "open" });
    assert.equal(server.stats.faultActions.hang, 1);
  },
);

engineTest(
  "down closes a new connection at once; others are spared by clients",
  async (engine) => {
    await using server = await served(engine, [{ kind: "down" }]);
    const got = await echo(server.addr.port, 10);
    assert.equal(got.bytes.length, 0);
    assert.notEqual(got.end, "open");
    assert.equal(server.stats.faultActions.down, 1);
    await using spared = await served(engine, [
      { kind: "down", clients: ["192.0.2.0/24"] },
    ]);
    assert.deepEqual(await echo(spared.addr.port, 100), {
      bytes: bytes(100),
      end: "eof",
    });
  },
);

engineTest(
  "latency, slicer and bandwidth: every byte, in order, no sooner than they allow",
  async (engine) => {
    await using server = await served(engine, [
      { kind: "latency", ms: 100, direction: "receive" },
      { kind: "slicer", size: 100, delayMs: 10, direction: "send" },
      { kind: "bandwidth", bytesPerSecond: 100_000, direction: "send" },
    ]);
    const started = performance.now();
    const got = await echo(server.addr.port, 20_000);
    assert.deepEqual(got, { bytes: bytes(20_000), end: "eof" });
    // 100 ms in, 200 ms at 100 kB/s out, and 199 pieces 10 ms apart.
    const took = performance.now() - started;
    assert.ok(took >= 1990, `${took} ms`);
    // Every byte received was held back; nearly every one sent too.
    const held = server.stats.faultDelayedBytes;
    assert.ok(held >= 39_000 && held <= 40_000, `${held} bytes held back`);
  },
);

engineTest(
  "slow_close holds the close back; setFaults() changes new connections' faults, open ones keep theirs",
  async (engine) => {
    await using server = await served(engine, [{
      kind: "slow_close",
      ms: 300,
    }]);
    const started = performance.now();
    assert.deepEqual(await echo(server.addr.port, 10), {
      bytes: bytes(10),
      end: "eof",
    });
    assert.ok(performance.now() - started >= 300);
    using before = await Deno.connect({ port: server.addr.port });
    // Accepted (one round trip) before the faults change.
    await writeAll(before, Uint8Array.of(7));
    assert.deepEqual(await readExactly(before, 1), Uint8Array.of(7));
    await server.setFaults([{ kind: "limit", bytes: 5, direction: "send" }]);
    assert.deepEqual(await echo(server.addr.port, 100), {
      bytes: bytes(5),
      end: "eof",
    });
    await writeAll(before, bytes(100));
    const buffer = new Uint8Array(100);
    let n = 0;
    while (n < 100) n += (await before.read(buffer.subarray(n)))!;
    assert.deepEqual(buffer, bytes(100), "the open one keeps its whole echo");
    await server.setFaults([]);
    assert.deepEqual(await echo(server.addr.port, 100), {
      bytes: bytes(100),
      end: "eof",
    });
  },
);

engineTest(
  "down how=refuse: connects are refused while it holds, from the start or live; lifted, the same port answers (workers too)",
  async (engine) => {
    for (const workers of [1, 2]) {
      await using server = serveEcho({
        port: 0,
        engine,
        workers,
        faults: [{ kind: "down", how: "refuse" }],
      });
      await server.ready;
      const { port } = server.addr;
      await assert.rejects(
        Deno.connect({ port }),
        Deno.errors.ConnectionRefused,
        `${workers}`,
      );
      await server.setFaults([]);
      assert.deepEqual(await echo(port, 100), {
        bytes: bytes(100),
        end: "eof",
      });
      // An open connection is not closed by it: only new ones are refused.
      using open = await Deno.connect({ port });
      await writeAll(open, bytes(1));
      assert.deepEqual(await readExactly(open, 1), bytes(1));
      await server.setFaults([{ kind: "down", how: "refuse" }]);
      await assert.rejects(
        Deno.connect({ port }),
        Deno.errors.ConnectionRefused,
      );
      await writeAll(open, bytes(1));
      assert.deepEqual(await readExactly(open, 1), bytes(1));
      await server.setFaults([]);
      assert.deepEqual(await echo(port, 10), { bytes: bytes(10), end: "eof" });
    }
    assert.throws(
      () =>
        serveEcho({
          port: 0,
          engine,
          faults: [{ kind: "down", how: "refuse", clients: ["10.0.0.0/8"] }],
        }),
      /refuse stops the listener for everyone: give it no clients and no rate/,
    );
  },
);

Deno.test("on TLS, the native engine's faults act on the plaintext: a limit exactly, a reset after its bytes, a latency keeping the echo exact", async () => {
  if (!ENGINES.includes("native")) return;
  await using certs = await testCertificates();
  const tls = { cert: certs.cert, key: certs.key };
  const connect = async (port: number) => {
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port,
      caCerts: [certs.ca],
    });
    await conn.handshake();
    return conn;
  };
  const readUntilEnd = async (conn: Deno.Conn) => {
    const chunks: number[] = [];
    const buffer = new Uint8Array(65536);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) return { bytes: Uint8Array.from(chunks), end: "eof" };
        chunks.push(...buffer.subarray(0, n));
      }
    } catch (error) {
      if (
        error instanceof Deno.errors.ConnectionReset ||
        error instanceof Deno.errors.UnexpectedEof
      ) {
        return { bytes: Uint8Array.from(chunks), end: "reset" };
      }
      throw error;
    }
  };
  {
    await using server = serveEcho({
      port: 0,
      engine: "native",
      ...tls,
      faults: [{ kind: "limit", bytes: 1000, direction: "send" }],
    });
    await server.ready;
    using conn = await connect(server.addr.port);
    const reading = readUntilEnd(conn);
    await writeAll(conn, bytes(5000));
    assert.deepEqual(await reading, { bytes: bytes(1000), end: "eof" });
  }
  {
    await using server = serveEcho({
      port: 0,
      engine: "native",
      ...tls,
      faults: [{ kind: "reset", bytes: 1000, direction: "send" }],
    });
    await server.ready;
    using conn = await connect(server.addr.port);
    const reading = readUntilEnd(conn);
    await writeAll(conn, bytes(5000)).catch(() => {});
    const got = await reading;
    assert.deepEqual(got.bytes, bytes(1000));
    assert.equal(got.end, "reset");
    assert.equal(server.stats.faultActions.reset, 1);
  }
  {
    await using server = serveEcho({
      port: 0,
      engine: "native",
      ...tls,
      faults: [{ kind: "latency", ms: 100 }],
    });
    await server.ready;
    using conn = await connect(server.addr.port);
    const started = performance.now();
    const reading = readUntilEnd(conn);
    await writeAll(conn, bytes(50_000));
    await conn.closeWrite();
    assert.deepEqual(await reading, { bytes: bytes(50_000), end: "eof" });
    assert.ok(performance.now() - started >= 200);
  }
});

Deno.test("down how=refuse on a Unix socket (native engine): the file stays and connects are refused; lifted, the same path answers", async () => {
  if (!ENGINES.includes("native")) return;
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/echo.sock`;
    await using server = serveEcho({
      path,
      engine: "native",
      faults: [{ kind: "down", how: "refuse" }],
    });
    await server.ready;
    await assert.rejects(
      Deno.connect({ transport: "unix", path }),
      Deno.errors.ConnectionRefused,
    );
    await server.setFaults([]);
    using conn = await Deno.connect({ transport: "unix", path });
    await writeAll(conn, bytes(100));
    assert.deepEqual(await readExactly(conn, 100), bytes(100));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
