// Private: UDP echo (RFC 862's datagram service), the small engine beside
// the connection engine: every datagram goes back to its sender unchanged,
// or, in info mode, each datagram is a command and gets its answer.
// Deno.listenDatagram rather than node:dgram: measured 2026-11-29, 64-byte
// ping-pong over 50 sockets, server on one core, 31,700 round trips/s
// against 10,800 for node:dgram under Deno (and 30,300 for Node's dgram
// under Node). It needs --unstable-net. Not exported from mod.ts.

import type { Fault } from "../faults/spec.ts";
import { DatagramFaults } from "../faults/datagrams.ts";
import { isDatagram } from "../faults/spec.ts";
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
  setFaultCount,
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
  /** Datagram faults, if any; held replies' peers, and their timer. */
  #faults: DatagramFaults | undefined;
  #peers = new Map<string, Deno.Addr>();
  #reorderTimer: ReturnType<typeof setTimeout> | undefined;

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
    if (config.faults.some(isDatagram)) {
      this.#faults = new DatagramFaults(config.faults);
    }
    this.#log.debug("UDP echo on {address}", {
      address: formatAddr(this.addr),
    });
    this.finished = this.#loop();
  }

  /** Replies from now on go through `faults`' datagram faults. */
  setFaults(faults: readonly Fault[]): void {
    this.#faults = faults.some(isDatagram)
      ? new DatagramFaults(faults, Math.random, this.#faults?.counts)
      : undefined;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#reorderTimer);
    this.#socket.close();
  }

  /** Sends `bytes` to `peer`, counted; false once the socket is closed. */
  async #send(bytes: Uint8Array, peer: Deno.Addr): Promise<boolean> {
    try {
      await this.#socket.send(bytes, peer);
      this.counters[DATAGRAMS_OUT]++;
      this.counters[DATAGRAM_BYTES_OUT] += bytes.length;
    } catch (error) {
      if (this.#closed) return false;
      this.#log.debug("UDP reply to {peer} failed: {error}", {
        peer: formatAddr(peer),
        error: describeError(error),
      });
    }
    return true;
  }

  /** The replies datagram faults let go now, and a timer for held ones. */
  async #faulted(reply: Uint8Array, peer: Deno.Addr): Promise<boolean> {
    const faults = this.#faults!;
    const key = formatAddr(peer);
    const address = (peer as Deno.NetAddr).hostname;
    const out = faults.reply(address, reply, performance.now(), key);
    const { dropped, duplicated, corrupted, reordered } = faults.counts;
    setFaultCount(this.counters, "drop", dropped);
    setFaultCount(this.counters, "duplicate", duplicated);
    setFaultCount(this.counters, "corrupt", corrupted);
    setFaultCount(this.counters, "reorder", reordered);
    for (const bytes of out) {
      if (!await this.#send(bytes, peer)) return false;
    }
    if (faults.holds(key)) {
      this.#peers.set(key, peer);
      this.#armReorder();
    }
    return true;
  }

  /** Sends held replies whose hold is over, and waits for the next. */
  #armReorder(): void {
    clearTimeout(this.#reorderTimer);
    this.#reorderTimer = undefined;
    if (this.#closed) return;
    const { out, next } = this.#faults!.due(performance.now());
    for (const [key, bytes] of out) {
      const peer = this.#peers.get(key);
      if (peer !== undefined) this.#send(bytes, peer);
    }
    for (const key of this.#peers.keys()) {
      if (!this.#faults!.holds(key)) this.#peers.delete(key);
    }
    if (next === Infinity) return;
    this.#reorderTimer = setTimeout(
      () => this.#armReorder(),
      next - performance.now(),
    );
  }

  async #loop(): Promise<void> {
    const buffer = new Uint8Array(BUFFER_SIZE);
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
      const sent = this.#faults === undefined
        ? await this.#send(reply, peer)
        : await this.#faulted(reply, peer);
      if (!sent) break;
      if (this.#log.isEnabledFor("debug")) {
        this.#log.debug("Echoed {bytes} UDP bytes to {peer}", {
          bytes: n,
          peer: formatAddr(peer),
        });
      }
    }
  }
}
