// The client CLI's load mode, through spawned processes.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { assertUsageErrors, CLIENT, LOCK, runClient } from "./_process.ts";

const decoder = new TextDecoder();

Deno.test("client load mode prints a report, or one JSON object with --json", async () => {
  await using server = serveEcho({ port: 0 });
  const port = String(server.addr.port);
  const text = await runClient([
    "--port",
    port,
    "--connections",
    "10",
    "--count",
    "2000",
    "--size",
    "32",
  ]);
  assert.equal(text.code, 0, text.stderr);
  const lines = decoder.decode(text.stdout).trimEnd().split("\n");
  assert.equal(lines.length, 5, lines.join("\n"));
  assert.match(
    lines[0],
    /^target +127\.0\.0\.1:\d+, 10 of 10 connections, 32-byte messages$/,
  );
  assert.match(
    lines[1],
    /^round trips +2,000 in [\d.]+ s: [\d,]+\/s, [\d.]+ MB\/s each way$/,
  );
  assert.match(
    lines[2],
    /^latency +p50 [\d.,]+ (µs|ms), p90 .*, p99 .*, p99\.9 .*, max [\d.,]+ (µs|ms)$/,
  );
  assert.equal(
    lines[3],
    "errors       0 connect, 0 closed before any echo, 0 mismatched echoes, 0 other",
  );
  assert.match(lines[4], /^client CPU +[\d.]+ s \([\d,]+ % of one core\)$/);

  // The Rust client's flags, with their meaning there: --max-count is per
  // connection.
  const json = await runClient([
    "--port",
    port,
    "--num-clients",
    "3",
    "--max-count",
    "100",
    "--message",
    "hello",
    "--json",
  ]);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(decoder.decode(json.stdout));
  assert.equal(report.roundTrips, 300);
  assert.equal(report.connections, 3);
  assert.equal(report.messageBytes, 5);
  assert.equal(report.mismatches, 0);
  assert.ok(report.latencyUs.p99 > 0);
});

Deno.test("client load mode reports progress lines when stderr is not a terminal", async () => {
  await using server = serveEcho({ port: 0 });
  const result = await runClient([
    "--port",
    String(server.addr.port),
    "--duration",
    "1.2",
    "--report-interval",
    "0.4",
    "--json",
  ]);
  assert.equal(result.code, 0, result.stderr);
  const progress = result.stderr.trimEnd().split("\n");
  assert.ok(progress.length >= 1, result.stderr);
  for (const line of progress) {
    assert.match(line, /^\d+\.\d s: [\d,]+ round trips, [\d,]+\/s, 0 errors$/);
  }
});

Deno.test("client load mode exits 1 on a mismatch, 2 on bad flags", async (t) => {
  await t.step("mismatch", async () => {
    // A server that answers every message with the same wrong bytes.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      const conn = await listener.accept();
      const buffer = new Uint8Array(64);
      await conn.read(buffer);
      await conn.write(new Uint8Array(64));
      await conn.read(buffer).catch(() => null);
      conn.close();
    })();
    const result = await runClient([
      "--port",
      String(listener.addr.port),
      "--count",
      "5",
    ]);
    await serving;
    listener.close();
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^error: 1 error against 127\.0\.0\.1:\d+: Echo differs from what was sent at byte \d+\n$/,
    );
    assert.match(
      decoder.decode(result.stdout),
      /0 connect, 0 closed before any echo, 1 mismatched echoes, 0 other/,
    );
  });
  const cases: [string[], string][] = [
    [
      ["--count", "5", "--max-count", "6"],
      "Give --count or --max-count, not both",
    ],
    [
      ["--count", "5", "--duration", "1"],
      "Give --count or --duration, not both",
    ],
    [["--size", "5", "--message", "x"], "Give --size or --message, not both"],
    [
      ["--num-clients", "2", "--connections", "2"],
      "Give --connections or --num-clients, not both",
    ],
    [
      ["--num-clients", "0"],
      "Invalid --num-clients: must be a positive integer, got 0",
    ],
    [
      ["--connections", "0"],
      "Invalid --connections: must be a positive integer, got 0",
    ],
    [
      ["--duration=-1"],
      "Invalid --duration: expected a positive number, got '-1'",
    ],
    [
      ["--rate", "fast"],
      "Invalid --rate: expected a positive number, got 'fast'",
    ],
    [
      ["--count", "5", "hello"],
      "Unexpected MESSAGE or --interactive in a load test: use --message",
    ],
  ];
  await assertUsageErrors(
    [Deno.execPath(), "run", LOCK, "--allow-net", CLIENT],
    cases,
  );
});
