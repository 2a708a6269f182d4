// Private: UDP echo (RFC 862's datagram service), the small engine beside
// the connection engine: every datagram goes back to its sender unchanged,
// or, in info mode, each datagram is a command and gets its answer.
// Deno.listenDatagram rather than node:dgram: measured 2026-11-29, 64-byte
// ping-pong over 50 sockets, server on one core, 31,700 round trips/s
// against 10,800 for node:dgram under Deno (and 30,300 for Node's dgram
// under Node). It needs --unstable-net. Not exported from mod.ts.

import { getLogger, type Logger } from "../_logtape.ts";
import {
  describeError,
  formatAddr,
  LOG_CATEGORY,
  optionError,
} from "../_helpers.ts";
import type { ServerConfig } from "../core/config.ts";
import {
  COUNTERS,
  DATAGRAM_BYTES_OUT,
  DATAGRAMS_OUT,
} from "../core/counters.ts";
import { DatagramPolicy } from "../core/datagrams.ts";
import { newLimitsTable } from "../rules/limits.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);

/** Larger than any datagram (MAX_DATAGRAM), so none is ever cut short. */
const BUFFER_SIZE = 65_536;

/**
 * Throws `Deno.errors.NotSupported` unless Deno runs with `--unstable-net`,
 * which Deno.listenDatagram needs.
 */
export function assertDatagramsSupported(): void {
  if (!("listenDatagram" in Deno)) {
    throw optionError(
      "udp",
      "run Deno with --unstable-net (Deno.listenDatagram is unstable)",
      Deno.errors.NotSupported,
    );
  }
}

/** A UDP echo socket, counting into `counters` (see counters.ts). */
export class DatagramEcho {
  readonly addr: Deno.NetAddr;
  readonly counters: Float64Array = new Float64Array(COUNTERS);
  /** Resolves once the socket is closed and its loop over. */
  readonly finished: Promise<void>;
  #socket: Deno.DatagramConn;
  #policy: DatagramPolicy;
  #log: Logger;
  #closed = false;

  /**
   * Binds `hostname:port` for UDP.
   *
   * @throws {Deno.errors.AddrInUse} Another socket holds the port.
   */
  constructor(hostname: string, port: number, config: ServerConfig) {
    this.#socket = Deno.listenDatagram({ hostname, port, transport: "udp" });
    this.addr = this.#socket.addr as Deno.NetAddr;
    this.#log = logger;
    this.#policy = new DatagramPolicy(
      config,
      this.addr,
      this.counters,
      newLimitsTable(),
      (record) => this.#log[record.level](record.message, record.properties),
    );
    this.#log.debug("UDP echo on {address}", {
      address: formatAddr(this.addr),
    });
    this.finished = this.#loop();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }

  async #loop(): Promise<void> {
    const buffer = new Uint8Array(BUFFER_SIZE);
    const counters = this.counters;
    while (!this.#closed) {
      let n: number;
      let peer: Deno.Addr;
      try {
        const [data, from] = await this.#socket.receive(buffer);
        n = data.length;
        peer = from;
      } catch (error) {
        if (this.#closed) break;
        // An ICMP error for an earlier reply, say: that peer's, not ours.
        this.#log.debug("UDP receive failed: {error}", {
          error: describeError(error),
        });
        continue;
      }
      // Echo: exactly what came in, to where it came from, never more.
      const reply = this.#policy.receive(
        buffer.subarray(0, n),
        peer,
        performance.now(),
      );
      if (reply === undefined) continue;
      try {
        await this.#socket.send(reply, peer);
        counters[DATAGRAMS_OUT]++;
        counters[DATAGRAM_BYTES_OUT] += reply.length;
      } catch (error) {
        if (this.#closed) break;
        this.#log.debug("UDP reply to {peer} failed: {error}", {
          peer: formatAddr(peer),
          error: describeError(error),
        });
        continue;
      }
      if (this.#log.isEnabledFor("debug")) {
        this.#log.debug("Echoed {bytes} UDP bytes to {peer}", {
          bytes: n,
          peer: formatAddr(peer),
        });
      }
    }
  }
}
