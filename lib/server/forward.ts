// Private: proxy mode on the default engine (issue 23): each client's
// connection is forwarded to the upstream, byte for byte both ways, each
// side's end of stream passed on as a half-close, so that a client that
// half-closes still gets the rest of the upstream's answer. The faults act
// on the client's side (what the server receives goes upstream, what it
// sends comes from upstream). A connect that fails closes the client and
// is counted; the outage it starts is logged once (lib/upstream/outage.ts).
// Not exported from mod.ts.

import { describeError, formatAddr, writeAll } from "../_helpers.ts";
import type { Logger } from "../_logtape.ts";
import { BYTES_IN, BYTES_OUT, UPSTREAM_FAILURES } from "../core/counters.ts";
import type { UpstreamConfig } from "../upstream/config.ts";
import { dialUpstream } from "../upstream/dial.ts";
import { Outage, outageRecord } from "../upstream/outage.ts";
import type { LogRecord } from "../core/records.ts";
import type { Connection } from "./connection.ts";

/** What one read moves at most, each way. */
const CHUNK = 64 * 1024;

/** Why a connection ends when its upstream cannot be reached. */
export const UNREACHABLE = "upstream unreachable";

/** One listener's way to its upstream: its connects, counted and logged. */
export class UpstreamLink {
  readonly config: UpstreamConfig;
  #counters: Float64Array;
  #log: Logger;
  #outage = new Outage();

  constructor(config: UpstreamConfig, counters: Float64Array, log: Logger) {
    this.config = config;
    this.#counters = counters;
    this.#log = log;
  }

  #emit(record: LogRecord): void {
    this.#log[record.level](record.message, record.properties);
  }

  /** A connection to the upstream for `client`, or undefined if none. */
  async dial(client: Deno.Conn): Promise<Deno.Conn | undefined> {
    const upstream = this.config.address;
    try {
      const conn = await dialUpstream(this.config, client);
      const news = this.#outage.reached(Date.now());
      if (news !== undefined) this.#emit(outageRecord(upstream, news));
      return conn;
    } catch (error) {
      this.#counters[UPSTREAM_FAILURES]++;
      const reason = describeError(error);
      const news = this.#outage.failed(Date.now(), reason);
      if (news !== undefined) {
        this.#emit(outageRecord(upstream, news));
      } else {
        this.#log.debug("Upstream {upstream} still unreachable: {reason}", {
          upstream,
          reason,
          client: formatAddr(client.remoteAddr),
        });
      }
      return undefined;
    }
  }
}

/**
 * Forwards `c` to the upstream and back until both sides have ended;
 * resolves why it ended.
 */
export async function forward(
  c: Connection,
  link: UpstreamLink,
): Promise<string> {
  const upstream = await link.dial(c.conn);
  if (upstream === undefined) return UNREACHABLE;
  if (c.closedBecause !== undefined) {
    // Closed while it connected (the server stopped).
    upstream.close();
    return c.closedBecause;
  }
  const { counters } = c;
  let failed: { error: unknown; side: "client" | "upstream" } | undefined;
  const fail = (error: unknown, side: "client" | "upstream") => {
    failed ??= { error, side };
    c.close(c.closedBecause ?? "");
    try {
      upstream.close();
    } catch {
      // Closed already.
    }
  };
  await Promise.all([
    pump(c.conn, upstream, (n) => {
      c.bytesIn += n;
      counters[BYTES_IN] += n;
      c.idle?.touch();
    }).catch((error) => fail(error.error, error.side)),
    pump(upstream, c.conn, (n) => {
      c.bytesOut += n;
      counters[BYTES_OUT] += n;
      c.idle?.touch();
    }, true).catch((error) => fail(error.error, error.side)),
  ]);
  try {
    upstream.close();
  } catch {
    // Closed already.
  }
  if (failed === undefined) return "closed by client";
  if (c.finishing !== undefined) return c.finishing;
  if (c.closedBecause) return c.closedBecause;
  const reason = describeError(failed.error);
  return failed.side === "upstream" ? `upstream ${reason}` : reason;
}

/**
 * Moves bytes from `from` to `to` until `from` ends, then half-closes
 * `to`; `counted` hears of each piece written. Its errors say which side
 * failed (`from` is the upstream when `fromUpstream`).
 */
async function pump(
  from: Deno.Conn,
  to: Deno.Conn,
  counted: (n: number) => void,
  fromUpstream = false,
): Promise<void> {
  const buffer = new Uint8Array(CHUNK);
  const side = (reading: boolean) =>
    reading === fromUpstream ? "upstream" : "client";
  while (true) {
    let n: number | null;
    try {
      n = await from.read(buffer);
    } catch (error) {
      throw { error, side: side(true) };
    }
    try {
      if (n === null) return await to.closeWrite();
      await writeAll(to, buffer.subarray(0, n));
    } catch (error) {
      throw { error, side: side(false) };
    }
    counted(n);
  }
}
