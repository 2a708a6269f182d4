// Access control: allow and deny lists over TCP, IPv6, TLS, Unix sockets,
// UDP and after a PROXY header, from the library and the CLI.

import assert from "node:assert/strict";
import { engineTest } from "./_engines.ts";
import { echoOnce, serveEcho } from "../mod.ts";
import { encodeProxyHeader } from "../lib/proxy/header.ts";
import { testCertificates } from "./_certs.ts";
import { captureLogs, sendAndRead } from "./_helpers.ts";
import { assertUsageErrors, LOCK, SERVER, ServerProcess } from "./_process.ts";

const logs = await captureLogs();
const encoder = new TextEncoder();

engineTest(
  "allow and deny: deny wins, allow keeps everyone else out, before a byte is read",
  async (engine, t) => {
    await t.step("allowed", async () => {
      await using server = serveEcho({ engine, port: 0, allow: ["127.0.0.1"] });
      assert.equal(
        await sendAndRead({ port: server.addr.port }, encoder.encode("in")),
        "in",
      );
      assert.equal(server.stats.accepted, 1);
    });
    await t.step("not in the allow list", async () => {
      logs.clear();
      await using server = serveEcho({
        engine,
        port: 0,
        allow: ["10.0.0.0/8", "::1"],
      });
      assert.equal(
        await sendAndRead({ port: server.addr.port }, encoder.encode("out")),
        "",
      );
      const record = await logs.waitFor((r) =>
        r.rawMessage === "Refused {peer}: not in the allow list"
      );
      assert.match(String(record.properties.peer), /^127\.0\.0\.1:\d+$/);
      assert.deepEqual(server.stats.refused, {
        denied: 0,
        notAllowed: 1,
        perAddress: 0,
        connectRate: 0,
      });
      assert.equal(server.stats.accepted, 0);
      assert.equal(server.stats.bytesIn, 0);
    });
    await t.step("deny wins over allow", async () => {
      logs.clear();
      await using server = serveEcho({
        engine,
        port: 0,
        allow: ["127.0.0.1"],
        deny: ["127.0.0.0/8"],
      });
      assert.equal(
        await sendAndRead({ port: server.addr.port }, encoder.encode("out")),
        "",
      );
      const record = await logs.waitFor((r) =>
        r.rawMessage === "Refused {peer}: denied by {rule}"
      );
      assert.equal(record.properties.rule, "127.0.0.0/8");
      assert.deepEqual(server.stats.refused, {
        denied: 1,
        notAllowed: 0,
        perAddress: 0,
        connectRate: 0,
      });
    });
    await t.step(
      "IPv6, and IPv4 clients of a dual-stack listener",
      async () => {
        await using server = serveEcho({
          engine,
          hostname: "::",
          port: 0,
          deny: ["::1"],
        });
        const { port } = server.addr;
        assert.equal(
          await sendAndRead(
            { hostname: "127.0.0.1", port },
            encoder.encode("v4"),
          ),
          "v4",
        );
        assert.equal(
          await sendAndRead({ hostname: "::1", port }, encoder.encode("v6")),
          "",
        );
        await using v4only = serveEcho({
          engine,
          hostname: "::",
          port: 0,
          deny: ["127.0.0.0/8"],
        });
        assert.equal(
          await sendAndRead(
            { hostname: "127.0.0.1", port: v4only.addr.port },
            encoder.encode("v4"),
          ),
          "",
        );
      },
    );
    await t.step("bad entries are option errors", () => {
      for (const entry of ["10.0.0/8", "10.0.0.0/33", "::1/129", "host", ""]) {
        assert.throws(
          () => serveEcho({ engine, port: 0, allow: [entry] }),
          (error: RangeError & { option: string }) =>
            error instanceof RangeError && error.option === "allow",
          entry,
        );
      }
    });
  },
);

engineTest(
  "access rules judge the address a PROXY header names",
  async (engine) => {
    {
      await using server = serveEcho({
        engine,
        port: 0,
        proxyProtocol: true,
        allow: ["10.0.0.0/8"],
      });
      const header = (hostname: string) =>
        encodeProxyHeader({
          version: 2,
          source: { hostname, port: 1000 },
          destination: { hostname: "10.0.0.1", port: 7 },
        });
      const { port } = server.addr;
      assert.equal(
        await sendAndRead(
          { port },
          header("10.9.8.7"),
          encoder.encode("inside"),
        ),
        "inside",
      );
      assert.equal(
        await sendAndRead(
          { port },
          header("192.0.2.1"),
          encoder.encode("outside"),
        ),
        "",
      );
      assert.deepEqual(server.stats.refused, {
        denied: 0,
        notAllowed: 1,
        perAddress: 0,
        connectRate: 0,
      });
    }
  },
);

Deno.test("access rules act before TLS, not on Unix sockets, and for UDP", async () => {
  await using certs = await testCertificates();
  {
    await using server = serveEcho({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      deny: ["127.0.0.1"],
    });
    await server.ready;
    // Closed before the handshake: the client's handshake fails.
    await assert.rejects(() =>
      echoOnce("x", {
        port: server.addr.port,
        tls: true,
        caCerts: [certs.ca],
        serverName: "localhost",
      })
    );
    assert.equal(server.stats.refused.denied, 1);
    assert.equal(server.stats.handshakeFailures, 0);
  }
  {
    const path = `${certs.dir}/access.sock`;
    await using server = serveEcho({ path, allow: ["10.0.0.0/8"] });
    await server.ready;
    assert.equal(await echoOnce("unix", { path }), "unix");
  }
  {
    await using server = serveEcho({
      port: 0,
      udp: "only",
      deny: ["127.0.0.1"],
    });
    await assert.rejects(
      () => echoOnce("x", { port: server.addr.port, udp: true, timeout: 200 }),
      (error: Error) => error.name === "TimeoutError",
    );
    assert.equal(server.stats.datagramsRefused, 1);
    assert.equal(server.stats.datagramsOut, 0);
  }
});

Deno.test("server --allow, --deny, --allow-file and --deny-file", async () => {
  await using certs = await testCertificates(); // A temporary directory.
  const allowFile = `${certs.dir}/allow.txt`;
  await Deno.writeTextFile(
    allowFile,
    "# the office\n10.0.0.0/8\n\n127.0.0.1   # this host\n",
  );
  await using server = await ServerProcess.start(
    ["--allow-file", allowFile, "--deny", "192.0.2.0/24"],
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
  );
  assert.equal(
    await sendAndRead({ port: server.port }, encoder.encode("from a file")),
    "from a file",
  );
  const badFile = `${certs.dir}/bad.txt`;
  await Deno.writeTextFile(badFile, "10.0.0.0/8\n# fine\n10.0.0/8\n");
  const cases: [string[], string][] = [
    [
      ["--allow", "10.0.0/8"],
      "Invalid --allow: not an IP address or CIDR block, got '10.0.0/8'",
    ],
    [
      ["--deny", "::1/200"],
      "Invalid --deny: has a prefix length that is not 0 to 128, got '::1/200'",
    ],
    [
      ["--deny-file", badFile],
      `Invalid --deny-file: line 3: "10.0.0/8" is not an IP address or CIDR block, got '${badFile}'`,
    ],
  ];
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", "--allow-read", SERVER],
    cases,
  );
});
