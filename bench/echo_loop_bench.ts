// Micro-benchmarks of per-connection echo loops: which loop shape and buffer
// policy the server should use. Each variant serves one loopback connection in
// this process; a bench iteration is a burst of ping-pong round trips over it,
// every echo checked. Client and server share the thread, so read the figures
// as ratios between variants, not as server costs (`deno task bench` and
// ../shared/bench measure those).
//
//   deno task bench:loops

import { serveEcho } from "../mod.ts";

const ROUND_TRIPS = 200;

type Loop = (conn: Deno.TcpConn) => Promise<void>;

/** A read/write loop whose buffer starts at `initial` and doubles when filled. */
function readWriteLoop(initial: number, max: number): Loop {
  return async (conn) => {
    let buffer = new Uint8Array(initial);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      for (let written = 0; written < n;) {
        written += await conn.write(buffer.subarray(written, n));
      }
      if (n === buffer.length && n < max) buffer = new Uint8Array(n * 2);
    }
  };
}

/**
 * The same loop on callbacks instead of `await` (serveEcho's shape): an idle
 * connection then holds no suspended async function.
 */
function callbackLoop(initial: number, max: number): Loop {
  return (conn) =>
    new Promise((resolve, reject) => {
      let buffer = new Uint8Array(initial);
      let length = 0;
      let offset = 0;
      const read = (): void => {
        conn.read(buffer).then(onRead, reject);
      };
      const onRead = (n: number | null): void => {
        if (n === null) return resolve();
        length = n;
        offset = 0;
        write();
      };
      const write = (): void => {
        conn.write(buffer.subarray(offset, length)).then(onWritten, reject);
      };
      const onWritten = (w: number): void => {
        offset += w;
        if (offset < length) return write();
        if (length === buffer.length && length < max) {
          buffer = new Uint8Array(length * 2);
        }
        read();
      };
      read();
    });
}

const LOOPS: Record<string, Loop> = {
  "pipeTo (Deno docs)": (conn) => conn.readable.pipeTo(conn.writable),
  "read/write, 64 KiB fixed": readWriteLoop(64 * 1024, 64 * 1024),
  "read/write, 1 KiB growing": readWriteLoop(1024, 256 * 1024),
  "read/write, 256 B growing": readWriteLoop(256, 256 * 1024),
  "read/write on callbacks, 512 B growing": callbackLoop(512, 256 * 1024),
  // Every read fills its 64-byte view exactly (the small message's size):
  // Deno then keeps the socket's read readiness instead of waiting for epoll
  // before the next read. Not a correct loop for bigger messages (they take
  // many reads); it bounds what that trick could save. Measured in the
  // server too, it saved nothing there.
  "read/write, 64-byte view (filled exactly)": readWriteLoop(64, 64),
  "BYOB reader + write": async (conn) => {
    const reader = conn.readable.getReader({ mode: "byob" });
    let buffer = new Uint8Array(64 * 1024);
    while (true) {
      const { done, value } = await reader.read(buffer);
      if (done || value === undefined) break;
      for (let written = 0; written < value.length;) {
        written += await conn.write(value.subarray(written));
      }
      buffer = new Uint8Array(value.buffer);
    }
  },
};

/** A server running `loop` on each connection, and one client connection. */
async function pair(loop: Loop | "serveEcho") {
  let close: () => Promise<void>;
  let port: number;
  if (loop === "serveEcho") {
    const server = serveEcho({ port: 0 });
    port = server.addr.port;
    close = () => server.shutdown();
  } else {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    port = listener.addr.port;
    const serving = (async () => {
      const conn = await listener.accept();
      conn.setNoDelay(true);
      await loop(conn).catch(() => {});
      try {
        conn.close();
      } catch {
        // pipeTo closes it.
      }
    })();
    close = async () => {
      listener.close();
      await serving;
    };
  }
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  client.setNoDelay(true);
  return {
    client,
    async close() {
      client.close();
      await close();
    },
  };
}

async function pingPong(conn: Deno.TcpConn, message: Uint8Array) {
  const echo = new Uint8Array(message.length);
  for (let i = 0; i < ROUND_TRIPS; i++) {
    await conn.write(message);
    for (let filled = 0; filled < echo.length;) {
      const n = await conn.read(echo.subarray(filled));
      if (n === null) throw new Error("closed");
      filled += n;
    }
    if (echo[echo.length - 1] !== message[message.length - 1]) {
      throw new Error("echo differs");
    }
  }
}

for (const size of [64, 4096]) {
  const message = new Uint8Array(size).map((_, i) => i & 255);
  const variants: [string, Loop | "serveEcho"][] = [
    ["serveEcho (ours)", "serveEcho"],
    ...Object.entries(LOOPS),
  ];
  for (const [name, loop] of variants) {
    Deno.bench({
      name,
      group: `${size} B × ${ROUND_TRIPS} round trips`,
      baseline: loop === "serveEcho",
      // Sanitizers do not apply to benchmarks; each pair is closed in `fn`.
      async fn(b) {
        const { client, close } = await pair(loop);
        await pingPong(client, message); // warm up this connection's buffers
        b.start();
        await pingPong(client, message);
        b.end();
        await close();
      },
    });
  }
}
