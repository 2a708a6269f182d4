// Private: a transfer between the instances of a cluster, through the Redis
// they share: the sender's instance appends the bytes to a stream of the
// transfer's own in chunks, and the receiver's instance reads them, writes
// them to its client, and acknowledges them in a second stream. The sender's
// instance keeps at most WINDOW chunks unacknowledged, so that Redis holds
// at most WINDOW × CHUNK bytes of a transfer whatever the two clients'
// speeds, and each client is held back by TCP at its own end. Why Redis
// and not a direct TCP hop: instances need not reach each other (only
// Redis), and the same tickets, TLS and bounds hold. With Redis, every
// transfer goes this way, also between two clients of one instance, so
// that a transfer connection may land on any instance. Not exported from
// mod.ts.

import { Buffer } from "node:buffer";
import type * as Redis from "npm:redis@^5.12.1";
import { writeAll } from "../_helpers.ts";
import { importLazily } from "../_lazy.ts";
import { clientOptions } from "../relay/redis_bus.ts";
import {
  type Admitted,
  CHUNK,
  DONE,
  type Hop,
  OK,
  type Outcome,
  pairKey,
  refuse,
} from "./hop.ts";
import type { Transfer } from "./ticket.ts";

/** Chunks a sender's instance may have in Redis unacknowledged. */
export const WINDOW = 16;
/** Seconds a transfer's streams live in Redis if an instance dies mid-way. */
const KEY_TTL_S = 3600;

type Client = ReturnType<typeof Redis.createClient>;

/** Options of a {@linkcode RedisHop}. */
export interface RedisHopOptions {
  url: string;
  /** The cluster's key prefix. */
  key: string;
  /** Milliseconds a side waits for the other (or for its next chunk). */
  waitMs: number;
}

/** The hop through Redis: see the top of this file. */
export class RedisHop implements Hop {
  #options: RedisHopOptions;
  #clients = new Set<Client>();
  #closed = false;

  constructor(options: RedisHopOptions) {
    this.#options = options;
  }

  /**
   * The secret every instance's tickets are signed with: the first
   * instance's, kept in Redis.
   */
  async secret(): Promise<Uint8Array> {
    const client = await this.#connect();
    try {
      const key = `${this.#options.key}:files:secret`;
      const mine = Buffer.from(crypto.getRandomValues(new Uint8Array(32)))
        .toString("base64");
      await client.set(key, mine, { NX: true });
      const shared = await client.get(key);
      if (shared === null) throw new Error(`${key} vanished`);
      return new Uint8Array(Buffer.from(shared, "base64"));
    } finally {
      this.#release(client);
    }
  }

  async #connect(): Promise<Client> {
    if (this.#closed) throw new Error("the server closed");
    const { createClient } = await importLazily<typeof Redis>(
      "npm:redis@^5.12.1",
    );
    const base = clientOptions(this.#options.url);
    const client = createClient(
      {
        ...base,
        socket: {
          ...base?.socket,
          connectTimeout: 5000,
          reconnectStrategy: false,
        },
      } as Parameters<typeof createClient>[0],
    );
    client.on("error", () => {});
    this.#clients.add(client);
    try {
      await client.connect();
    } catch (error) {
      this.#release(client);
      throw error;
    }
    return client;
  }

  #release(client: Client): void {
    this.#clients.delete(client);
    client.destroy();
  }

  #keys(t: Transfer): { data: string; ack: string } {
    const base = `${this.#options.key}:file:${pairKey(t).replaceAll(" ", ":")}`;
    return { data: `${base}:data`, ack: `${base}:ack` };
  }

  async serve(side: Admitted): Promise<Outcome> {
    let client: Client;
    try {
      client = await this.#connect();
    } catch (error) {
      const reason = `Redis: ${(error as Error).message}`;
      await refuse(side.conn, reason);
      return { moved: 0, error: reason, alone: true };
    }
    try {
      return side.transfer.side === "put"
        ? await this.#put(client, side)
        : await this.#get(client, side);
    } catch (error) {
      const reason = `Redis: ${(error as Error).message}`;
      await refuse(side.conn, reason);
      return { moved: 0, error: reason };
    } finally {
      this.#release(client);
    }
  }

  /** The sender's side: its bytes into the data stream, WINDOW ahead at most. */
  async #put(client: Client, { transfer, conn, leftover }: Admitted) {
    const { data, ack } = this.#keys(transfer);
    const length = transfer.size - transfer.offset;
    const waitMs = this.#options.waitMs;
    await writeAll(conn, OK);
    let moved = 0;
    let sent = 0;
    let acked = 0;
    let ackId = "0";
    let heard = false;
    /** Reads acknowledgements until `enough`; an error if there is one. */
    const acks = async (enough: () => boolean): Promise<string | undefined> => {
      while (!enough()) {
        const reply = await client.xRead({ key: ack, id: ackId }, {
          BLOCK: waitMs,
          COUNT: 100,
        });
        if (reply === null) {
          return heard
            ? `the receiver stalled for ${waitMs / 1000} s`
            : `the other side did not come within ${waitMs / 1000} s`;
        }
        // deno-lint-ignore no-explicit-any
        for (const stream of reply as any[]) {
          for (const { id, message } of stream.messages) {
            ackId = id;
            heard = true;
            if (message.err !== undefined) return String(message.err);
            if (message.n !== undefined) acked = Number(message.n);
            if (message.done !== undefined) return undefined;
          }
        }
      }
      return undefined;
    };
    let chunk = leftover.subarray(0, length);
    const buffer = new Uint8Array(CHUNK);
    while (true) {
      if (chunk.length > 0) {
        await client.xAdd(data, "*", {
          d: Buffer.from(chunk) as unknown as string,
        });
        if (sent++ === 0) {
          await client.expire(data, KEY_TTL_S);
          await client.expire(ack, KEY_TTL_S);
        }
        moved += chunk.length;
      }
      const error = await acks(() => sent - acked < WINDOW);
      if (error !== undefined) {
        await refuse(conn, error);
        return { moved, error, alone: !heard };
      }
      if (moved === length) break;
      let n: number | null;
      try {
        n = await conn.read(
          buffer.subarray(0, Math.min(CHUNK, length - moved)),
        );
      } catch {
        n = null;
      }
      if (n === null) {
        const error = `the sender went away after ${moved} bytes`;
        await client.xAdd(data, "*", { err: error });
        return { moved, error };
      }
      chunk = buffer.subarray(0, n);
    }
    await client.xAdd(data, "*", { end: "1" });
    // Until the receiver's instance says it wrote the last byte.
    const error = await acks(() => false);
    await client.del([data, ack]);
    if (error !== undefined) {
      await refuse(conn, error);
      return { moved, error };
    }
    await writeAll(conn, DONE).catch(() => {});
    return { moved };
  }

  /** The receiver's side: the data stream's bytes to its client. */
  async #get(client: Client, { transfer, conn }: Admitted) {
    const { data, ack } = this.#keys(transfer);
    const { RESP_TYPES } = await importLazily<typeof Redis>(
      "npm:redis@^5.12.1",
    );
    const reader = client.withTypeMapping({
      [RESP_TYPES.BLOB_STRING]: Buffer,
    });
    const waitMs = this.#options.waitMs;
    await writeAll(conn, OK);
    let moved = 0;
    let consumed = 0;
    let lastId = "0";
    let heard = false;
    while (true) {
      const reply = await reader.xRead({ key: data, id: lastId }, {
        BLOCK: waitMs,
        COUNT: WINDOW,
      });
      if (reply === null) {
        const error = heard
          ? `the sender stalled for ${waitMs / 1000} s`
          : `the other side did not come within ${waitMs / 1000} s`;
        await client.xAdd(ack, "*", { err: error });
        return { moved, error, alone: !heard };
      }
      const ids: string[] = [];
      // deno-lint-ignore no-explicit-any
      for (const stream of reply as any[]) {
        for (const { id, message } of stream.messages) {
          lastId = id.toString();
          ids.push(lastId);
          heard = true;
          if (message.d !== undefined) {
            try {
              await writeAll(conn, message.d as Uint8Array);
            } catch {
              const error = `the receiver went away after ${moved} bytes`;
              await client.xAdd(ack, "*", { err: error });
              return { moved, error };
            }
            moved += message.d.length;
            consumed++;
          } else if (message.end !== undefined) {
            await client.xAdd(ack, "*", { done: "1" });
            return { moved };
          } else if (message.err !== undefined) {
            return { moved, error: message.err.toString() };
          }
        }
      }
      await client.xAdd(ack, "*", { n: String(consumed) });
      await client.xDel(data, ids);
    }
  }

  close(): void {
    this.#closed = true;
    for (const client of this.#clients) client.destroy();
    this.#clients.clear();
  }
}
