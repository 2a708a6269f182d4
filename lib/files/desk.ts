// Private: chat's file desk: the listener that a transfer's two connections
// come to (the sender's, which puts the bytes, and the receiver's, which
// gets them), the tickets that chat gives them (lib/files/ticket.ts), and
// the hop that moves the bytes between them: within this process, or
// through Redis between the instances of a cluster (lib/files/hop.ts,
// lib/files/redis_hop.ts). One desk per instance, beside its relay, so
// that workers need no hop of their own. Not exported from mod.ts.

import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY } from "../_helpers.ts";
import { throttled } from "../transport/throttled.ts";
import type { Guard } from "../rules/access.ts";
import { close, type Hop, LocalHop, type Outcome, refuse } from "./hop.ts";
import {
  MAX_PREFACE_BYTES,
  parsePreface,
  refusal,
  sign,
  type Ticket,
  TICKET_MS,
  type Transfer,
} from "./ticket.ts";

const logger = getLogger([LOG_CATEGORY, "files"]);

/** Milliseconds a transfer connection has to send its ticket. */
const PREFACE_MS = 10_000;
/** Milliseconds one side of a transfer waits for the other. */
export const PAIR_WAIT_MS = 60_000;

/** Where the desk listens: the chat listener's host, in clear or TLS. */
export type DeskListen =
  | { transport: "tcp"; hostname: string; port: number }
  | {
    transport: "tls";
    hostname: string;
    port: number;
    cert: string;
    key: string;
  };

/** Options of a {@linkcode FileDesk}. */
export interface DeskOptions {
  listen: DeskListen;
  /** How fast each transfer connection is read (Infinity: as fast as it can). */
  maxBytesPerSecond: number;
  /** The access rules (`allow`, `deny`): a refused peer is closed at once. */
  guard?: Guard;
  /**
   * Between instances: a hop through Redis, with the secret the cluster
   * shares (its tickets are good on every instance).
   */
  cluster?: { hop: Hop; secret: Promise<Uint8Array> };
  /** A transfer ended, counted once (where its receiver is). */
  ended?(result: "done" | "failed", bytes: number): void;
}

/** Makes the tickets of a transfer's sides (what chat's rules need). */
export interface TicketMaker {
  ticket(transfer: Omit<Transfer, "until">): Ticket;
}

/** The desk: see the top of this file. */
export class FileDesk implements TicketMaker {
  #options: DeskOptions;
  #listener: Deno.Listener;
  #hop: Hop;
  #secret: Uint8Array | undefined;
  /** Resolves once tickets can be made (a cluster's secret is read). */
  readonly ready: Promise<void>;
  #serving: Promise<void>;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #closed = false;

  /**
   * Listens at once (so that a port in use fails the server's start).
   *
   * @throws {Deno.errors.AddrInUse} Another socket listens there.
   */
  constructor(options: DeskOptions) {
    this.#options = options;
    const { listen } = options;
    this.#listener = listen.transport === "tls"
      ? Deno.listenTls({
        hostname: listen.hostname,
        port: listen.port,
        cert: listen.cert,
        key: listen.key,
      })
      : Deno.listen({ hostname: listen.hostname, port: listen.port });
    this.#hop = options.cluster?.hop ?? new LocalHop(PAIR_WAIT_MS);
    if (options.cluster === undefined) {
      this.#secret = crypto.getRandomValues(new Uint8Array(32));
      this.ready = Promise.resolve();
    } else {
      this.ready = options.cluster.secret.then((secret) => {
        this.#secret = secret;
      });
      this.ready.catch(() => {});
    }
    this.#serving = this.#accept();
  }

  /** The port transfers come to. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  get addr(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  ticket(transfer: Omit<Transfer, "until">): Ticket {
    const until = Date.now() + TICKET_MS;
    const secret = this.#secret;
    // Before a cluster's secret is read, a ticket no desk takes.
    const token = secret === undefined
      ? "0".repeat(22)
      : sign(secret, { ...transfer, until });
    return { port: this.port, until, token };
  }

  async #accept(): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed) return;
        logger.warn("File listener: {error}", {
          error: (error as Error).message,
        });
        await new Promise((resolve) => setTimeout(resolve, 10));
        continue;
      }
      const task = this.#handle(conn);
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  async #handle(raw: Deno.Conn): Promise<void> {
    const peer = peerOf(raw);
    const refused = this.#options.guard?.(raw.remoteAddr);
    if (refused !== undefined) {
      logger.info("File connection from {peer} refused: {reason}", {
        peer,
        reason: refused.reason,
      });
      return close(raw);
    }
    this.#conns.add(raw);
    const { maxBytesPerSecond } = this.#options;
    const conn = maxBytesPerSecond === Infinity
      ? raw
      : throttled(raw, maxBytesPerSecond);
    try {
      const first = await readPreface(conn);
      if ("error" in first) {
        logger.info("File connection from {peer} refused: {reason}", {
          peer,
          reason: first.error,
        });
        return await refuse(conn, first.error);
      }
      const parsed = parsePreface(first.line);
      if ("error" in parsed) return await refuse(conn, parsed.error);
      const { transfer, token } = parsed;
      await this.ready.catch(() => {});
      const why = this.#secret === undefined
        ? "the cluster's secret is not read yet"
        : refusal(this.#secret, transfer, token, Date.now());
      if (why !== undefined) {
        logger.info("File connection from {peer} refused: {reason}", {
          peer,
          reason: why,
        });
        return await refuse(conn, why);
      }
      const started = performance.now();
      const outcome = await this.#hop.serve({
        transfer,
        conn,
        leftover: first.leftover,
      });
      this.#ended(transfer, peer, outcome, performance.now() - started);
    } finally {
      this.#conns.delete(raw);
      close(conn);
    }
  }

  #ended(
    transfer: Transfer,
    peer: string,
    outcome: Outcome,
    ms: number,
  ): void {
    const counts = transfer.side === "get" || outcome.alone === true;
    if (!counts) return;
    const { id, attempt, offset, size } = transfer;
    if (outcome.error === undefined) {
      this.#options.ended?.("done", outcome.moved);
      logger.info(
        "File {id} (attempt {attempt}) to {peer}: {bytes} bytes from byte {offset} of {size} in {ms} ms",
        {
          id,
          attempt,
          peer,
          bytes: outcome.moved,
          offset,
          size,
          ms: Math.round(ms),
        },
      );
    } else {
      this.#options.ended?.("failed", outcome.moved);
      logger.warn(
        "File {id} (attempt {attempt}) with {peer} stopped: {reason}",
        { id, attempt, peer, reason: outcome.error },
      );
    }
  }

  /** Stops listening and ends every transfer under way. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    this.#hop.close();
    for (const conn of this.#conns) close(conn);
    await this.#serving;
    await Promise.allSettled([...this.#tasks]);
  }
}

/** How logs name the client of `conn`. */
function peerOf(conn: Deno.Conn): string {
  const addr = conn.remoteAddr as Deno.NetAddr;
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * Reads a transfer connection's first line within PREFACE_MS, and what came
 * after it in the same reads.
 */
async function readPreface(
  conn: Deno.Conn,
): Promise<{ line: string; leftover: Uint8Array } | { error: string }> {
  const buffer = new Uint8Array(MAX_PREFACE_BYTES + 1);
  let filled = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), PREFACE_MS);
  });
  try {
    while (true) {
      const newline = buffer.subarray(0, filled).indexOf(0x0a);
      if (newline !== -1) {
        return {
          line: new TextDecoder().decode(buffer.subarray(0, newline)).replace(
            /\r$/,
            "",
          ),
          leftover: buffer.slice(newline + 1, filled),
        };
      }
      if (filled === buffer.length) return { error: "a first line too long" };
      const read = conn.read(buffer.subarray(filled));
      const n = await Promise.race([read, late]);
      if (n === "late") {
        close(conn);
        await read.catch(() => null);
        return { error: `no ticket within ${PREFACE_MS / 1000} s` };
      }
      if (n === null) return { error: "closed before its ticket" };
      filled += n;
    }
  } catch (error) {
    return { error: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}
