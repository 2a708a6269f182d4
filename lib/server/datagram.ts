// Private: UDP echo (RFC 862's datagram service), the small engine beside
// the connection engine: every datagram goes back to its sender unchanged,
// or, in info mode, each datagram is a command and gets its answer.
// Deno.listenDatagram rather than node:dgram: measured 2026-11-29, 64-byte
// ping-pong over 50 sockets, server on one core, 31,700 round trips/s
// against 10,800 for node:dgram under Deno (and 30,300 for Node's dgram
// under Node). It needs --unstable-net. Not exported from mod.ts.

import { getLogger, type Logger } from "../_logtape.ts";
import {
  bareAddress,
  describeError,
  formatAddr,
  LOG_CATEGORY,
  optionError,
  plural,
} from "../_helpers.ts";
import { defaultId, infoAnswer } from "../modes/info.ts";
import type { ServerConfig } from "../core/config.ts";
import {
  COUNTERS,
  DATAGRAM_BYTES_IN,
  DATAGRAM_BYTES_OUT,
  DATAGRAMS_IN,
  DATAGRAMS_OUT,
  DATAGRAMS_RATE_LIMITED,
  DATAGRAMS_REFUSED,
} from "../core/counters.ts";
import { Limiter, newLimitsTable } from "../rules/limits.ts";
import { accessGuard, type Guard } from "../rules/access.ts";

const logger = getLogger([LOG_CATEGORY, "server"]);
const decoder = new TextDecoder();
const encoder = new TextEncoder();

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
  #guard: Guard | undefined;
  /** Datagrams a second per source address, when limited. */
  #rate: Limiter | undefined;
  #udpRate: number;
  /** When the last warning about dropped datagrams was logged. */
  #warnedAt = -Infinity;
  /** Info mode's reply to a datagram (none for exit); echo mode: none. */
  #answer:
    | ((data: Uint8Array, peer: Deno.Addr) => Uint8Array | undefined)
    | undefined;
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
    this.#guard = accessGuard(config.access);
    this.#udpRate = config.udpRate;
    if (config.udpRate !== Infinity) {
      this.#rate = new Limiter({
        perAddress: Infinity,
        connectRate: config.udpRate,
        ...newLimitsTable(),
      });
    }
    if (config.mode === "info") {
      const id = config.id || defaultId(config.host, this.addr);
      this.#answer = (data, peer) => {
        // One datagram, one command: its line ending, if any, is not part.
        const text = decoder.decode(data).replace(/\r?\n$/, "");
        const answer = infoAnswer(text, {
          host: config.host,
          id,
          transport: "udp",
          client: peer,
          server: this.addr,
        });
        return answer === undefined ? undefined : encoder.encode(`${answer}\n`);
      };
    }
    this.#log = logger;
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
      counters[DATAGRAMS_IN]++;
      counters[DATAGRAM_BYTES_IN] += n;
      if (this.#guard?.(peer) !== undefined) {
        counters[DATAGRAMS_REFUSED]++;
        continue;
      }
      const source = bareAddress((peer as Deno.NetAddr).hostname);
      if (this.#rate?.admit(source) !== undefined) {
        // Over its source's rate: dropped, so that a spoofed source cannot
        // turn this server into a firehose at a third party.
        counters[DATAGRAMS_RATE_LIMITED]++;
        this.#warnRateLimited(peer);
        continue;
      }
      // Echo: exactly what came in, to where it came from, never more.
      const reply = this.#answer === undefined
        ? buffer.subarray(0, n)
        : this.#answer(buffer.subarray(0, n), peer);
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

  /**
   * Says that datagrams are dropped for the rate, so that a client whose
   * echoes go missing can find out why: at most one warning a second while
   * it goes on, so that a flood cannot flood the log either.
   */
  #warnRateLimited(peer: Deno.Addr): void {
    const now = performance.now();
    if (now - this.#warnedAt < 1000) return;
    this.#warnedAt = now;
    const dropped = this.counters[DATAGRAMS_RATE_LIMITED];
    this.#log.warning(
      `Dropping UDP datagrams over {udpRate} a second from one source, the latest from {peer}: {dropped} ${
        plural(dropped, "datagram")
      } dropped so far`,
      { udpRate: this.#udpRate, peer: formatAddr(peer), dropped },
    );
  }
}
