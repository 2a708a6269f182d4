// Private: the server CLI's live status (--status, --status-interval): the
// counters' totals and rates since the last tick, as one line redrawn in
// place on a terminal, or as a structured log record off one. Nothing ticks
// unless it is asked for. And the last record of a stopped server. Not
// exported from mod.ts.

import { getLogger } from "../_logtape.ts";
import { formatAddr, LOG_CATEGORY, plural } from "../_helpers.ts";
import type { EchoServer, EchoServerStats } from "../types.ts";
import { showLiveLine } from "./logging.ts";

/** What one tick shows. */
export interface Status {
  active: number;
  accepted: number;
  refused: number;
  dropped: number;
  bytesInPerSecond: number;
  bytesOutPerSecond: number;
  datagramsInPerSecond: number;
}

/** Connections refused for any reason, max connections included. */
function refusedOf(s: EchoServerStats): number {
  const r = s.refused;
  return s.rejected + r.denied + r.notAllowed + r.perAddress + r.connectRate;
}

/** The status between two readings of the counters, `seconds` apart. */
export function statusOf(
  before: EchoServerStats,
  now: EchoServerStats,
  seconds: number,
): Status {
  const rate = (a: number, b: number) => seconds > 0 ? (b - a) / seconds : 0;
  return {
    active: now.active,
    accepted: now.accepted,
    refused: refusedOf(now),
    dropped: now.dropped,
    bytesInPerSecond: rate(
      before.bytesIn + before.datagramBytesIn,
      now.bytesIn + now.datagramBytesIn,
    ),
    bytesOutPerSecond: rate(
      before.bytesOut + before.datagramBytesOut,
      now.bytesOut + now.datagramBytesOut,
    ),
    datagramsInPerSecond: rate(before.datagramsIn, now.datagramsIn),
  };
}

/** Bytes per second, as people read them. */
function perSecond(bytes: number): string {
  if (bytes < 1e3) return `${Math.round(bytes)} B/s`;
  if (bytes < 1e6) return `${(bytes / 1e3).toFixed(1)} kB/s`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB/s`;
  return `${(bytes / 1e9).toFixed(2)} GB/s`;
}

/** The status as one terminal line. */
export function statusLine(address: string, s: Status): string {
  const n = (x: number) => x.toLocaleString("en-US");
  return `${address}: ${n(s.active)} open, ${n(s.accepted)} accepted, in ${
    perSecond(s.bytesInPerSecond)
  }, out ${perSecond(s.bytesOutPerSecond)}, ${n(s.refused)} refused, ${
    n(s.dropped)
  } dropped`;
}

/**
 * Shows `server`'s status every `intervalMs`: redrawn in place on stderr
 * when `live` (a terminal), else logged as an info record. Disposing of it
 * stops the ticks and clears the line.
 */
export function showStatus(
  server: EchoServer<Deno.Addr>,
  { live, intervalMs }: { live: boolean; intervalMs: number },
): Disposable {
  const logger = getLogger([LOG_CATEGORY, "status"]);
  const address = formatAddr(server.addr);
  let before = server.stats;
  let at = performance.now();
  const tick = () => {
    const now = server.stats;
    const time = performance.now();
    const status = statusOf(before, now, (time - at) / 1000);
    before = now;
    at = time;
    if (live) return showLiveLine(statusLine(address, status));
    logger.info(
      "Status: {active} open, {accepted} accepted, {bytesInPerSecond} B/s in, {bytesOutPerSecond} B/s out, {refused} refused, {dropped} dropped",
      {
        ...status,
        bytesInPerSecond: Math.round(status.bytesInPerSecond),
        bytesOutPerSecond: Math.round(status.bytesOutPerSecond),
        datagramsInPerSecond: Math.round(status.datagramsInPerSecond),
      },
    );
  };
  const timer = setInterval(tick, intervalMs);
  if (live) tick();
  return {
    [Symbol.dispose]() {
      clearInterval(timer);
      if (live) showLiveLine(undefined);
    },
  };
}

/** Logs the server's last record: what it served. */
export function logStopped(stats: EchoServerStats): void {
  const datagrams = stats.datagramsIn > 0
    ? `, {datagramsOut} ${plural(stats.datagramsOut, "datagram")} echoed`
    : "";
  getLogger([LOG_CATEGORY, "cli"]).info(
    `Stopped: {accepted} ${
      plural(stats.accepted, "connection")
    } served, {rejected} rejected${datagrams}`,
    { ...stats },
  );
}
