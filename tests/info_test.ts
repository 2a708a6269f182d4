// Info mode: the commands over TCP, TLS, Unix sockets and UDP, after a
// PROXY header, on IPv6, and from the CLI.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { serveEcho } from "../mod.ts";
import { encodeProxyHeader } from "../lib/proxy/header.ts";
import { testCertificates } from "./_certs.ts";
import { LineClient, readAll, tempDir, writeAll } from "./_helpers.ts";
import { LOCK, run, SERVER, ServerProcess } from "./_process.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HOST = Deno.hostname();

/** Sends each command on one connection; returns the lines that came back. */
async function ask(conn: Deno.Conn, ...commands: string[]): Promise<string[]> {
  await using client = new LineClient(conn);
  await client.send(commands.map((c) => `${c}\n`).join(""));
  return await client.count(commands.length);
}

engineTest("info mode answers each command on TCP", async (engine) => {
  await using server = serveEcho({ engine, port: 0, mode: "info" });
  const { port } = server.addr;
  const conn = await Deno.connect({ port });
  const local = conn.localAddr as Deno.NetAddr;
  const before = Date.now();
  const answers = await ask(
    conn,
    "hostname",
    "id",
    "clientip",
    "clientport",
    "serverip",
    "serverport",
    "transport",
    "echo hello  world",
    "time",
    "help",
    "HOSTNAME",
    "nonsense here",
  );
  assert.deepEqual(answers.slice(0, 8), [
    HOST,
    `${HOST}:${port}`,
    "127.0.0.1",
    String(local.port),
    "127.0.0.1",
    String(port),
    "tcp",
    "hello  world",
  ]);
  const time = Date.parse(answers[8]);
  assert.match(answers[8], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(time >= before - 1000 && time <= Date.now() + 1000);
  assert.match(
    answers[9],
    /^commands: hostname, id, clientip, .*, exit, quit$/,
  );
  assert.equal(answers[10], HOST);
  assert.equal(answers[11], "ERR unknown command: nonsense here");
});

engineTest(
  "info mode: exit closes; a line over the limit is an error; the id can be set",
  async (engine) => {
    await using server = serveEcho({
      engine,
      port: 0,
      mode: "info",
      id: "web-1",
      maxLineBytes: 16,
    });
    const { port } = server.addr;
    {
      using conn = await Deno.connect({ port });
      await writeAll(conn, encoder.encode("id\nexit\nid\n"));
      assert.equal(decoder.decode(await readAll(conn)), "web-1\n");
    }
    {
      using conn = await Deno.connect({ port });
      await writeAll(conn, encoder.encode(`echo ${"x".repeat(20)}\n`));
      assert.equal(
        decoder.decode(await readAll(conn)),
        "ERR line too long (max 16 bytes)\n",
      );
    }
  },
);

engineTest(
  "info mode sees the client a PROXY header names, and IPv4 on a dual-stack listener as IPv4",
  async (engine) => {
    {
      await using server = serveEcho({
        engine,
        port: 0,
        mode: "info",
        proxyProtocol: true,
      });
      const conn = await Deno.connect({ port: server.addr.port });
      await writeAll(
        conn,
        encodeProxyHeader({
          version: 2,
          source: { hostname: "2001:db8::77", port: 7777 },
          destination: { hostname: "2001:db8::1", port: 80 },
        }),
      );
      assert.deepEqual(await ask(conn, "clientip", "clientport"), [
        "2001:db8::77",
        "7777",
      ]);
    }
    {
      await using server = serveEcho({
        engine,
        hostname: "::",
        port: 0,
        mode: "info",
      });
      const v4 = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.addr.port,
      });
      assert.deepEqual(await ask(v4, "clientip"), ["127.0.0.1"]);
      const v6 = await Deno.connect({
        hostname: "::1",
        port: server.addr.port,
      });
      assert.deepEqual(await ask(v6, "clientip", "serverip"), ["::1", "::1"]);
    }
  },
);

Deno.test("info mode over TLS says tls", async () => {
  await using certs = await testCertificates();
  {
    await using server = serveEcho({
      port: 0,
      mode: "info",
      cert: certs.cert,
      key: certs.key,
    });
    await server.ready;
    const conn = await Deno.connectTls({
      hostname: "localhost",
      port: server.addr.port,
      caCerts: [certs.ca],
    });
    assert.deepEqual(await ask(conn, "transport", "clientip"), [
      "tls",
      "127.0.0.1",
    ]);
  }
});

engineTest(
  "info mode over a Unix socket and UDP says which",
  async (engine) => {
    await using dir = await tempDir();
    {
      const path = `${dir.path}/info.sock`;
      await using server = serveEcho({ engine, path, mode: "info" });
      await server.ready;
      const conn = await Deno.connect({ transport: "unix", path });
      assert.deepEqual(await ask(conn, "transport", "clientip", "id"), [
        "unix",
        "ERR no IP address on a Unix socket",
        `${HOST}:${path}`,
      ]);
    }
    {
      await using server = serveEcho({
        engine,
        port: 0,
        mode: "info",
        udp: "only",
      });
      const socket = Deno.listenDatagram({
        hostname: "127.0.0.1",
        port: 0,
        transport: "udp",
      });
      const to = {
        transport: "udp" as const,
        hostname: "127.0.0.1",
        port: server.addr.port,
      };
      const buffer = new Uint8Array(1024);
      const answer = async (command: string) => {
        await socket.send(encoder.encode(command), to);
        const [data] = await socket.receive(buffer);
        return decoder.decode(data);
      };
      assert.equal(await answer("transport"), "udp\n");
      assert.equal(
        await answer("clientport\n"),
        `${(socket.addr as Deno.NetAddr).port}\n`,
      );
      assert.equal(await answer("echo over udp"), "over udp\n");
      socket.close();
      assert.equal(server.stats.datagramsOut, 3);
    }
  },
);

Deno.test("server --mode info --id: nc asks, and without --allow-sys it is a clear error", async () => {
  await using server = await ServerProcess.start([
    "--mode",
    "info",
    "--id",
    "web-1",
    "--udp",
  ], [
    Deno.execPath(),
    "run",
    LOCK,
    "--allow-net",
    "--allow-sys=hostname",
    "--unstable-net",
    SERVER,
  ]);
  const port = String(server.port);
  const nc = await run(
    "nc",
    ["-N", "127.0.0.1", port],
    encoder.encode("id\nhostname\nexit\n"),
  );
  assert.equal(decoder.decode(nc.stdout), `web-1\n${HOST}\n`);
  const udp = await run(
    "nc",
    ["-u", "-w", "1", "127.0.0.1", port],
    encoder.encode("id\n"),
  );
  assert.equal(decoder.decode(udp.stdout), "web-1\n");
  const denied = await run(Deno.execPath(), [
    "run",
    LOCK,
    "--allow-net",
    SERVER,
    "--mode",
    "info",
    "--port",
    "0",
  ]);
  assert.equal(denied.code, 2);
  assert.equal(
    denied.stderr,
    "error: Invalid --mode: info mode answers hostname: run Deno with --allow-sys=hostname\n",
  );
});
