// Private: what a UDP datagram means, free of I/O, for both drivers
// (lib/server/datagram.ts over Deno's sockets, lib/native/ over recvmmsg()
// and sendmmsg()): who may send (the access lists), how fast (udpRate per
// source, on a shared table), and the reply (the datagram itself, or info
// mode's answer). Counted in a listener's counters (counters.ts). Not
// exported from mod.ts.

import { bareAddress, formatAddr, plural } from "../_helpers.ts";
import { infoAnswer, sessionFacts } from "../modes/info.ts";
import { accessGuard, type Guard } from "../rules/access.ts";
import { Limiter, type LimitsConfig } from "../rules/limits.ts";
import type { ServerConfig } from "./config.ts";
import {
  DATAGRAM_BYTES_IN,
  DATAGRAMS_IN,
  DATAGRAMS_RATE_LIMITED,
  DATAGRAMS_REFUSED,
} from "./counters.ts";
import type { LogRecord } from "./records.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The datagrams of one UDP socket, as the server's options say. */
export class DatagramPolicy {
  readonly counters: Float64Array;
  /** Whether a datagram's source must be known: rules, a rate or info. */
  readonly needsPeer: boolean;
  #guard: Guard | undefined;
  #rate: Limiter | undefined;
  #udpRate: number;
  #warnedAt = -Infinity;
  #answer:
    | ((data: Uint8Array, peer: Deno.Addr) => Uint8Array | undefined)
    | undefined;
  #record: (record: LogRecord) => void;

  /**
   * The policy of a socket at `server`. `rateTable` is the table the
   * sources' rates are kept in, shared by every socket of the server.
   */
  constructor(
    config: ServerConfig,
    server: Deno.NetAddr,
    counters: Float64Array,
    rateTable: Pick<LimitsConfig, "table" | "seeds">,
    record: (record: LogRecord) => void,
  ) {
    this.counters = counters;
    this.#record = record;
    this.#guard = accessGuard(config.access);
    this.#udpRate = config.udpRate;
    if (config.udpRate !== Infinity) {
      this.#rate = new Limiter({
        perAddress: Infinity,
        connectRate: config.udpRate,
        ...rateTable,
      });
    }
    if (config.mode === "info") {
      this.#answer = (data, peer) => {
        // One datagram, one command: its line ending, if any, is not part.
        const text = decoder.decode(data).replace(/\r?\n$/, "");
        const answer = infoAnswer(
          text,
          sessionFacts(config, "udp", peer, server),
        );
        return answer === undefined ? undefined : encoder.encode(`${answer}\n`);
      };
    }
    this.needsPeer = this.#guard !== undefined || this.#rate !== undefined ||
      this.#answer !== undefined;
  }

  /**
   * `data` came from `peer` (which may be left out unless
   * {@linkcode needsPeer}) at `now` (milliseconds, any origin): returns
   * the reply to send back, or `undefined` when none goes (dropped and
   * counted, or `exit`). In echo mode the reply is `data` itself.
   */
  receive(
    data: Uint8Array,
    peer: Deno.Addr | undefined,
    now: number,
  ): Uint8Array | undefined {
    const counters = this.counters;
    counters[DATAGRAMS_IN]++;
    counters[DATAGRAM_BYTES_IN] += data.length;
    if (!this.needsPeer) return data;
    if (this.#guard?.(peer!) !== undefined) {
      counters[DATAGRAMS_REFUSED]++;
      return undefined;
    }
    if (this.#rate !== undefined) {
      const source = bareAddress((peer as Deno.NetAddr).hostname);
      if (this.#rate.admit(source) !== undefined) {
        // Over its source's rate: dropped, so that a spoofed source cannot
        // turn this server into a firehose at a third party.
        counters[DATAGRAMS_RATE_LIMITED]++;
        this.#warnRateLimited(peer!, now);
        return undefined;
      }
    }
    return this.#answer === undefined ? data : this.#answer(data, peer!);
  }

  /**
   * `count` datagrams of `bytes` in all came, each its own reply: echo
   * mode when {@linkcode needsPeer} is false, counted in bulk.
   */
  receivedAll(count: number, bytes: number): void {
    this.counters[DATAGRAMS_IN] += count;
    this.counters[DATAGRAM_BYTES_IN] += bytes;
  }

  /**
   * Says that datagrams are dropped for the rate, so that a client whose
   * echoes go missing can find out why: at most one warning a second while
   * it goes on, so that a flood cannot flood the log either.
   */
  #warnRateLimited(peer: Deno.Addr, now: number): void {
    if (now - this.#warnedAt < 1000) return;
    this.#warnedAt = now;
    const dropped = this.counters[DATAGRAMS_RATE_LIMITED];
    this.#record({
      level: "warning",
      message:
        `Dropping UDP datagrams over {udpRate} a second from one source, the latest from {peer}: {dropped} ${
          plural(dropped, "datagram")
        } dropped so far`,
      properties: { udpRate: this.#udpRate, peer: formatAddr(peer), dropped },
    });
  }
}
