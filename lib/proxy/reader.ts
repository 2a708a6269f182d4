// Private: reading one connection's PROXY header, free of I/O: the driver
// reads into the space the reader lends it and says how much came; the
// reader says whether the header is complete, not valid, or needs more.
// Both drivers use it (lib/transport/proxied.ts over Deno's sockets,
// lib/native/loop.ts over libc). Not exported from mod.ts.

import { parseProxyHeader, type ProxyHeader, V2_MAX } from "./header.ts";

/** First read size: a v1 line or a v2 header with IPv6 addresses fit. */
const FIRST_READ = 256;

/** Where a header stands after a read. */
export type HeaderStep =
  | { state: "incomplete" }
  | { state: "invalid"; reason: string }
  | {
    state: "done";
    header: ProxyHeader;
    /** The bytes read past the header: the stream's first bytes. */
    rest: Uint8Array;
  };

/** One connection's PROXY header, read in as many pieces as it comes. */
export class HeaderReader {
  #buffer = new Uint8Array(FIRST_READ);
  #filled = 0;

  /** Where the next read goes (never empty until the header is decided). */
  space(): Uint8Array {
    if (this.#filled === this.#buffer.length) {
      // Only a v2 header with extensions grows past the first read.
      const bigger = new Uint8Array(Math.min(this.#buffer.length * 4, V2_MAX));
      bigger.set(this.#buffer);
      this.#buffer = bigger;
    }
    return this.#buffer.subarray(this.#filled);
  }

  /** `n` more bytes were read into {@linkcode space}. */
  filled(n: number): HeaderStep {
    this.#filled += n;
    const result = parseProxyHeader(this.#buffer.subarray(0, this.#filled));
    if (result.state === "invalid") return result;
    if (result.state === "done") {
      if (result.header.protocol === "dgram") {
        return {
          state: "invalid",
          reason: "v2 header names a datagram protocol on a stream",
        };
      }
      return {
        state: "done",
        header: result.header,
        rest: this.#buffer.slice(result.length, this.#filled),
      };
    }
    if (this.#filled >= V2_MAX) {
      return { state: "invalid", reason: "PROXY header too long" };
    }
    return result;
  }

  /** Why a connection that ended now failed (its end of stream came). */
  ended(): string {
    return this.#filled === 0
      ? "closed before sending a PROXY header"
      : "closed in the middle of its PROXY header";
  }
}

/** Why a connection whose header did not come in time failed. */
export function headerTimedOut(timeout: number): string {
  return `no complete PROXY header within ${timeout} ms`;
}

/** The reason a peer outside the trusted list is refused. */
export const NOT_TRUSTED = "not a trusted proxy";

/**
 * The client a header names: its source for a `proxy` command, or the
 * connection's own peer (`local`, `UNKNOWN`).
 */
export function headerClient(header: ProxyHeader, peer: Deno.Addr): Deno.Addr {
  return header.command === "proxy" && header.source
    ? { transport: "tcp", ...header.source }
    : peer;
}
