// Private: the PROXY protocol on the receiving side, as a wrapper around a
// listener: each connection's header is read once, before anything else
// (before TLS, as HAProxy sends it), and the engine gets a connection that
// looks like any other, whose remote address is the client the header
// names and whose first bytes are whatever came after the header. The hot
// path never asks whether it was proxied. Not exported from mod.ts.

import { formatAddr } from "../_helpers.ts";
import type { ProxyHeader } from "../proxy/header.ts";
import {
  headerClient,
  HeaderReader,
  headerTimedOut,
  NOT_TRUSTED,
} from "../proxy/reader.ts";
import type { AddressList } from "../rules/cidr.ts";
import { AcceptQueue } from "./accept_queue.ts";
import { WrappedConn, WrappedListener } from "./wrapped.ts";
import type { TransportEvents } from "./transport.ts";
import { assertInteger, optionError } from "../_helpers.ts";
import { cidrProblem } from "../rules/cidr.ts";
import type { ProxyConfig } from "../core/config.ts";
import type { ServeEchoOptions } from "../types.ts";

/** How to read PROXY headers. */
export interface ProxyOptions {
  /** Milliseconds a client has to send its whole header. */
  timeout: number;
  /** Only these may send headers; any peer when undefined. */
  trusted: AddressList | undefined;
}

/**
 * `listener`, with every connection's PROXY header read and checked first.
 * A peer that is not trusted, a header that is not valid, and one that is
 * not complete within the timeout are reported through `events` and closed.
 */
export function proxiedListener(
  listener: Deno.Listener,
  options: ProxyOptions,
  events: TransportEvents,
): Deno.Listener {
  return new ProxiedListener(listener, options, events);
}

class ProxiedListener extends WrappedListener {
  #options: ProxyOptions;
  #events: TransportEvents;
  #queue: AcceptQueue;
  /** Connections whose header is being read. */
  #reading = new Set<Deno.Conn>();

  constructor(
    listener: Deno.Listener,
    options: ProxyOptions,
    events: TransportEvents,
  ) {
    super(listener);
    this.#options = options;
    this.#events = events;
    this.#queue = new AcceptQueue(listener, (conn) => this.#read(conn));
  }

  override accept(): Promise<Deno.Conn> {
    return this.#queue.accept();
  }

  override close(): void {
    this.#queue.close();
    for (const conn of this.#reading) conn.close();
    this.#reading.clear();
  }

  async #read(conn: Deno.Conn): Promise<void> {
    const peer = formatAddr(conn.remoteAddr);
    const { trusted, timeout } = this.#options;
    const from = (conn.remoteAddr as Deno.NetAddr).hostname;
    // A Unix socket's peer is on this host: trusted like a local proxy.
    if (trusted !== undefined && from !== undefined && !trusted.match(from)) {
      conn.close();
      this.#events.proxyFailed(peer, NOT_TRUSTED);
      return;
    }
    this.#reading.add(conn);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.close();
    }, timeout);
    let reason: string;
    try {
      const result = await readHeader(conn);
      if (typeof result === "string") {
        reason = result;
      } else {
        const [header, rest] = result;
        this.#reading.delete(conn);
        return this.#queue.push(new ProxiedConn(conn, header, rest));
      }
    } catch (error) {
      if (!this.#reading.has(conn)) return; // Closed with the listener.
      reason = timedOut
        ? headerTimedOut(timeout)
        : `connection failed before its header ended: ${
          (error as Error).message
        }`;
    } finally {
      clearTimeout(timer);
    }
    this.#reading.delete(conn);
    try {
      conn.close();
    } catch {
      // Closed by the timeout.
    }
    this.#events.proxyFailed(peer, reason);
  }
}

/**
 * Reads `conn` until its PROXY header is complete. Returns the header and
 * the bytes that came after it, or why it is not valid.
 */
async function readHeader(
  conn: Deno.Conn,
): Promise<[ProxyHeader, Uint8Array] | string> {
  const reader = new HeaderReader();
  while (true) {
    const n = await conn.read(reader.space());
    if (n === null) return reader.ended();
    const step = reader.filled(n);
    if (step.state === "invalid") return step.reason;
    if (step.state === "done") return [step.header, step.rest];
  }
}

/**
 * A connection after its PROXY header: the address the header names, and
 * the bytes read past the header before the rest of the stream.
 */
class ProxiedConn extends WrappedConn {
  #remoteAddr: Deno.Addr;
  #rest: Uint8Array | null;

  constructor(conn: Deno.Conn, header: ProxyHeader, rest: Uint8Array) {
    super(conn);
    this.#remoteAddr = headerClient(header, conn.remoteAddr);
    this.#rest = rest.length > 0 ? rest : null;
  }

  override get remoteAddr(): Deno.Addr {
    return this.#remoteAddr;
  }

  override read(p: Uint8Array): Promise<number | null> {
    const rest = this.#rest;
    if (rest === null) return this.inner.read(p);
    const n = Math.min(p.length, rest.length);
    p.set(rest.subarray(0, n));
    this.#rest = n < rest.length ? rest.subarray(n) : null;
    return Promise.resolve(n);
  }

  override get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    const reader = this.inner.readable.getReader();
    let rest = this.#rest;
    this.#rest = null;
    return new ReadableStream({
      async pull(controller) {
        if (rest !== null) {
          controller.enqueue(rest.slice());
          rest = null;
          return;
        }
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
  }
}

/** The PROXY protocol options, checked; `undefined` when it is off. */
export function proxyConfig(
  options: Pick<
    ServeEchoOptions,
    "proxyProtocol" | "proxyTimeout" | "trustedProxies" | "websocket"
  >,
): ProxyConfig | undefined {
  const { proxyProtocol = false, proxyTimeout, trustedProxies } = options;
  for (const entry of trustedProxies ?? []) {
    const problem = cidrProblem(entry);
    if (problem !== undefined) throw optionError("trustedProxies", problem);
  }
  if (!proxyProtocol) {
    if (proxyTimeout !== undefined) {
      throw optionError("proxyTimeout", "needs proxyProtocol", TypeError);
    }
    // A WebSocket listener believes their X-Forwarded-For.
    if (trustedProxies !== undefined && options.websocket === undefined) {
      throw optionError(
        "trustedProxies",
        "needs proxyProtocol or websocket",
        TypeError,
      );
    }
    return undefined;
  }
  const timeout = proxyTimeout ?? 3000;
  assertInteger("proxyTimeout", timeout, 1, 2 ** 31 - 1);
  return { timeout, trusted: trustedProxies && [...trustedProxies] };
}
