/**
 * Tail latency under connection churn: one client pings the server every
 * 5 ms (64 B, its echo awaited) while others churn. Used by `bench/run.ts`;
 * also runs alone:
 *
 * ```sh
 * deno run -A bench/churn.ts pinger PORT MS        # prints the pinger's JSON
 * deno run -A bench/churn.ts churn PORT MS KIND    # half-close or open-close
 * ```
 *
 * The pinger and the churn run as two processes, so that the churn's own
 * work does not delay the pinger's reads: the figures are the server's.
 *
 * @module
 */

import hdr from "npm:hdr-histogram-js@^3.0.1";

/** What churns beside the pinger. */
export type ChurnKind = "half-close" | "open-close";
export const CHURN_KINDS: readonly ChurnKind[] = ["half-close", "open-close"];
/** Connections in flight at once while churning. */
export const CHURN_CONNECTIONS = 2000;
/** The pinger's interval. */
export const PING_INTERVAL_MS = 5;

/** The pinger's latencies, in µs. */
export interface PingReport {
  pings: number;
  errors: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

/** What one churn run did. */
export interface ChurnReport {
  connections: number;
  errors: number;
}

/**
 * Pings `port` every {@linkcode PING_INTERVAL_MS} for `ms` over one
 * connection: 64 bytes out, the whole echo back, timed.
 */
export async function ping(port: number, ms: number): Promise<PingReport> {
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const message = new Uint8Array(64).fill(0x61);
  const buffer = new Uint8Array(65);
  let errors = 0;
  const end = performance.now() + ms;
  try {
    for (let next = performance.now(); next < end; next += PING_INTERVAL_MS) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const started = performance.now();
      await conn.write(message);
      let got = 0;
      while (got < message.length) {
        const n = await conn.read(buffer.subarray(got));
        if (n === null) throw new Error("Server closed the pinger");
        got += n;
      }
      if (got !== message.length) errors++;
      histogram.recordValue(Math.max(1, (performance.now() - started) * 1000));
    }
  } finally {
    conn.close();
  }
  const report = {
    pings: histogram.totalCount,
    errors,
    p50Us: histogram.getValueAtPercentile(50),
    p99Us: histogram.getValueAtPercentile(99),
    p999Us: histogram.getValueAtPercentile(99.9),
    maxUs: histogram.maxValue,
  };
  histogram.destroy();
  return report;
}

/**
 * Churns connections to `port` for `ms`, {@linkcode CHURN_CONNECTIONS} at
 * a time: `half-close` connects, sends 64 bytes, half-closes and reads the
 * echo to the end; `open-close` connects and closes at once.
 */
export async function churn(
  port: number,
  ms: number,
  kind: ChurnKind,
): Promise<ChurnReport> {
  const end = performance.now() + ms;
  const message = new Uint8Array(64).fill(0x62);
  let connections = 0;
  let errors = 0;
  async function one(): Promise<void> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      if (kind === "open-close") return;
      await conn.write(message);
      await conn.closeWrite();
      const buffer = new Uint8Array(128);
      let got = 0;
      for (let n; (n = await conn.read(buffer)) !== null;) got += n;
      if (got !== message.length) errors++;
    } finally {
      conn.close();
    }
  }
  async function lane(): Promise<void> {
    while (performance.now() < end) {
      try {
        await one();
      } catch {
        errors++;
      }
      connections++;
    }
  }
  await Promise.all(Array.from({ length: CHURN_CONNECTIONS }, lane));
  return { connections, errors };
}

if (import.meta.main) {
  const [what, port, ms, kind] = Deno.args;
  const report = what === "pinger"
    ? await ping(Number(port), Number(ms))
    : await churn(Number(port), Number(ms), kind as ChurnKind);
  console.log(JSON.stringify(report));
}
