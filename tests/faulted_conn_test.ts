// The default engine's faulted connection (lib/transport/faulted.ts) on
// real loopback sockets: an echo loop on the faulted side, Deno's client on
// the other. Cuts are exact to the byte; delays are lower bounds (their
// accuracy is a benchmark's).

import assert from "node:assert/strict";
import { checkFault, type StreamFault } from "../lib/faults/spec.ts";
import { faulted } from "../lib/transport/faulted.ts";
import { readAll, writeAll } from "./_helpers.ts";

/** The stream fault `fields` make, checked. */
function fault(fields: Record<string, unknown>): StreamFault {
  return checkFault(fields) as StreamFault;
}

/**
 * A listener whose one connection echoes through `faults` (receive and
 * send); resolves its connection, and once the echo is over and the socket
 * closed.
 */
async function faultedEcho(
  faults: { receive?: StreamFault[]; send?: StreamFault[] },
  run: (client: Deno.TcpConn) => Promise<void>,
  read: { bytes: number } = { bytes: 0 },
): Promise<void> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ port: listener.addr.port });
  const raw = await listener.accept();
  raw.setNoDelay(true);
  client.setNoDelay(true);
  const conn = faulted(raw, {
    receive: faults.receive ?? [],
    send: faults.send ?? [],
  });
  const echo = (async () => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        read.bytes += n;
        await writeAll(conn, buffer.subarray(0, n));
      }
      await conn.closeWrite();
    } catch {
      // The test closed it.
    } finally {
      conn.close();
    }
  })();
  try {
    await run(client);
  } finally {
    client.close();
    await echo;
    await conn.closed;
  }
}

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

Deno.test("no faults: an exact echo through a half-close", async () => {
  await faultedEcho({}, async (client) => {
    const sent = bytes(300_000);
    const reading = readAll(client);
    await writeAll(client, sent);
    await client.closeWrite();
    assert.deepEqual(await reading, sent);
  });
});

Deno.test("limit on either side: exactly its bytes, then a clean end of stream", async () => {
  for (const side of ["receive", "send"] as const) {
    await faultedEcho(
      { [side]: [fault({ kind: "limit", bytes: 1000 })] },
      async (client) => {
        const reading = readAll(client);
        await writeAll(client, bytes(5000));
        assert.deepEqual(await reading, bytes(1000), side);
      },
    );
  }
});

Deno.test("hang: no byte after its count, and the connection still open after 2 s", async () => {
  // On the send side the client gets its 10 bytes; on the receive side the
  // server reads 10 and stops both ways, its echo of them included.
  for (const side of ["receive", "send"] as const) {
    const read = { bytes: 0 };
    await faultedEcho(
      { [side]: [fault({ kind: "hang", bytes: 10 })] },
      async (client) => {
        await writeAll(client, bytes(100));
        const got = new Uint8Array(200);
        let n = 0;
        while (side === "send" && n < 10) {
          n += (await client.read(got.subarray(n)))!;
        }
        assert.deepEqual(got.subarray(0, n), bytes(n));
        let timer;
        const more = await Promise.race([
          client.read(got),
          new Promise<"open">((resolve) =>
            timer = setTimeout(resolve, 2000, "open")
          ),
        ]);
        clearTimeout(timer);
        assert.equal(more, "open", side);
      },
      read,
    );
    assert.equal(read.bytes, side === "receive" ? 10 : 100, side);
  }
});

Deno.test("latency, slicer and bandwidth: every byte, in order, no sooner than they allow", async () => {
  await faultedEcho(
    {
      receive: [fault({ kind: "latency", ms: 100 })],
      send: [
        fault({ kind: "slicer", size: 100, delayMs: 10 }),
        fault({ kind: "bandwidth", bytesPerSecond: 100_000, name: "bw" }),
      ],
    },
    async (client) => {
      const sent = bytes(20_000);
      const started = performance.now();
      const reading = readAll(client);
      await writeAll(client, sent);
      await client.closeWrite();
      assert.deepEqual(await reading, sent);
      // 100 ms in, 200 ms at 100 kB/s out, and 199 pieces 10 ms apart.
      const took = performance.now() - started;
      assert.ok(took >= 1990, `${took} ms`);
    },
  );
});

Deno.test("slow_close holds the socket's close back", async () => {
  const started = performance.now();
  await faultedEcho(
    { send: [fault({ kind: "slow_close", ms: 300 })] },
    async (client) => {
      await writeAll(client, bytes(10));
      await client.closeWrite();
      assert.deepEqual(await readAll(client), bytes(10));
    },
  );
  assert.ok(performance.now() - started >= 300);
});
