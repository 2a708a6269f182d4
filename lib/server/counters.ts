// Private: where each listener keeps its counters, and their sum as
// EchoServerStats. One listener's counters are a slice of one Float64Array
// (a SharedArrayBuffer with workers), written by that listener alone. Not
// exported from mod.ts.

import type { EchoServerStats } from "../types.ts";

/** Where each listener keeps its counters: {@linkcode COUNTERS} numbers. */
export const ACCEPTED = 0;
export const REJECTED = 1;
export const BYTES_IN = 2;
export const BYTES_OUT = 3;
export const DROPPED = 4;
export const ACTIVE = 5;
export const ACCEPT_ERRORS = 6;
export const HANDSHAKE_FAILURES = 7;
export const DATAGRAMS_IN = 8;
export const DATAGRAMS_OUT = 9;
export const DATAGRAM_BYTES_IN = 10;
export const DATAGRAM_BYTES_OUT = 11;
export const PROXY_FAILURES = 12;
export const REFUSED_DENIED = 13;
export const REFUSED_NOT_ALLOWED = 14;
export const DATAGRAMS_REFUSED = 15;
export const REFUSED_PER_ADDRESS = 16;
export const REFUSED_CONNECT_RATE = 17;
export const DATAGRAMS_RATE_LIMITED = 18;
/**
 * How many numbers one listener's counters take: 19 so far, padded to 256
 * bytes so that no two listeners write to the same cache line.
 */
export const COUNTERS = 32;

/** Adds up the counters of every listener in `counters`. */
export function sumStats(counters: Float64Array): EchoServerStats {
  const total = new Float64Array(COUNTERS);
  const perWorker = [];
  for (let offset = 0; offset < counters.length; offset += COUNTERS) {
    for (let i = 0; i < COUNTERS; i++) total[i] += counters[offset + i];
    perWorker.push(counters[offset + ACCEPTED]);
  }
  return {
    active: total[ACTIVE],
    accepted: total[ACCEPTED],
    rejected: total[REJECTED],
    bytesIn: total[BYTES_IN],
    bytesOut: total[BYTES_OUT],
    dropped: total[DROPPED],
    acceptErrors: total[ACCEPT_ERRORS],
    handshakeFailures: total[HANDSHAKE_FAILURES],
    datagramsIn: total[DATAGRAMS_IN],
    datagramsOut: total[DATAGRAMS_OUT],
    datagramBytesIn: total[DATAGRAM_BYTES_IN],
    datagramBytesOut: total[DATAGRAM_BYTES_OUT],
    proxyHeaderFailures: total[PROXY_FAILURES],
    refused: {
      denied: total[REFUSED_DENIED],
      notAllowed: total[REFUSED_NOT_ALLOWED],
      perAddress: total[REFUSED_PER_ADDRESS],
      connectRate: total[REFUSED_CONNECT_RATE],
    },
    datagramsRefused: total[DATAGRAMS_REFUSED],
    datagramsRateLimited: total[DATAGRAMS_RATE_LIMITED],
    perWorker,
  };
}
