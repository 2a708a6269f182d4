// Private: files in our interactive client's chat. `/send NAME PATH` offers
// a file (its size and SHA-256 computed here: `/offer`); `/accept ID` takes
// one, resuming from what an earlier attempt saved; the server's file
// events (JSON lines, lib/relay/chat_files.ts) start each transfer on a
// connection of its own to the server's file listener, with the ticket the
// event carries. What comes in is written to a `.part` file in the download
// directory, checked against the offer's SHA-256, and only then given its
// (sanitised) name there. Not exported from mod.ts.

import { createHash } from "node:crypto";
import { writeAll } from "../_helpers.ts";
import { prefaceOf, type Transfer } from "../files/ticket.ts";
import { type FileEvent, JsonLines, textOfJson } from "../relay/chat_render.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Most bytes read from a file or a transfer connection at once. */
const CHUNK = 64 * 1024;
/** The longest file name saved, in UTF-8 bytes (most file systems' limit). */
const MAX_NAME_BYTES = 200;

/** Options of a {@linkcode FileAgent}. */
export interface FileAgentOptions {
  /** Connects to the chat server's host on `port`, as the chat connection. */
  dial(port: number): Promise<Deno.Conn>;
  /** Where files received go. */
  downloadDir: string;
  /** Sends a line (without its newline) to the chat server. */
  send(line: string): Promise<void>;
  /** Tells the user (a line without its newline). */
  print(line: string): Promise<void>;
}

/** A file offered by this client, until the server names it. */
interface Outgoing {
  path: string;
  size: number;
  sha256: string;
}

/**
 * A name for a received file that stays in the download directory: the
 * last part of `name` after any `/` or `\`, without control characters,
 * characters Windows forbids or leading dots, at most MAX_NAME_BYTES;
 * `file` when nothing is left.
 */
export function safeFileName(name: string): string {
  let base = name.split(/[/\\]/).pop() ?? "";
  base = base.replace(/[\p{Cc}\p{Cf}<>:"|?*]/gu, "_").trim();
  base = base.replace(/^\.+/, "").trim();
  while (encoder.encode(base).length > MAX_NAME_BYTES) {
    base = [...base].slice(0, -1).join("");
  }
  return base === "" ? "file" : base;
}

/** The SHA-256 of the file at `path`, in hex, and its size. */
export async function hashFile(
  path: string,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  using file = await Deno.open(path);
  const buffer = new Uint8Array(1024 * 1024);
  while (true) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
    size += n;
  }
  return { sha256: hash.digest("hex"), size };
}

/** `path` in `dir` with a free name: `name`, `name (1).ext`, … */
async function freePath(dir: string, name: string): Promise<string> {
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0
    ? [name.slice(0, dot), name.slice(dot)]
    : [name, ""];
  for (let i = 0; i < 1000; i++) {
    const path = `${dir}/${i === 0 ? name : `${stem} (${i})${ext}`}`;
    try {
      await Deno.lstat(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return path;
      throw error;
    }
  }
  throw new Error(`no free name for ${name} in ${dir}`);
}

/**
 * Reads `conn`'s first line (`OK` or `ERR …`), and what came after it in
 * the same read.
 */
async function answerOf(
  conn: Deno.Conn,
): Promise<{ line: string; rest: Uint8Array }> {
  const buffer = new Uint8Array(CHUNK);
  let filled = 0;
  while (true) {
    const newline = buffer.subarray(0, filled).indexOf(0x0a);
    if (newline !== -1) {
      return {
        line: decoder.decode(buffer.subarray(0, newline)),
        rest: buffer.slice(newline + 1, filled),
      };
    }
    if (filled === 1024) {
      return { line: "ERR an answer too long", rest: buffer };
    }
    const n = await conn.read(buffer.subarray(filled, 1024));
    if (n === null) {
      return { line: "ERR the server closed the transfer", rest: buffer };
    }
    filled += n;
  }
}

/** The file part of a chat session: see the top of this file. */
export class FileAgent {
  #options: FileAgentOptions;
  /** Offers sent, by SHA-256 and size, until `file-offered` names them. */
  #pending = new Map<string, Outgoing[]>();
  /** This client's offers, by id. */
  #outgoing = new Map<string, Outgoing>();
  /** Offers to this client, by id. */
  #incoming = new Map<string, Extract<FileEvent, { type: "file-offer" }>>();
  #tasks = new Set<Promise<void>>();
  #conns = new Set<Deno.Conn>();

  constructor(options: FileAgentOptions) {
    this.#options = options;
  }

  /**
   * A line the user typed: the line to send instead (`/send` becomes an
   * `/offer`, `/accept` gets its offset), `null` when nothing is to be
   * sent, `undefined` when it goes as it is.
   */
  async input(line: string): Promise<string | null | undefined> {
    const send = /^\/send(?:\s+(\S+)(?:\s+(.+))?)?\s*$/is.exec(line);
    if (send !== null) {
      const [, to, path] = send;
      if (to === undefined || path === undefined) {
        await this.#say("usage: /send NAME PATH");
        return null;
      }
      return await this.#offer(to, path.trim());
    }
    const accept = /^\/accept\s+(\S+)\s*$/i.exec(line);
    if (accept !== null) {
      const offer = this.#incoming.get(accept[1]);
      if (offer === undefined) return undefined;
      const offset = await this.#saved(offer);
      if (offset > 0) {
        await this.#say(
          `${offer.id}: ${offset} of ${offer.size} bytes are here already; asking for the rest`,
        );
      }
      return `/accept ${offer.id} ${offset}`;
    }
    return undefined;
  }

  async #say(text: string): Promise<void> {
    await this.#options.print(`[file] ${text}`);
  }

  async #offer(to: string, path: string): Promise<string | null> {
    let found: { sha256: string; size: number };
    try {
      const info = await Deno.stat(path);
      if (!info.isFile) {
        await this.#say(`${path} is not a file`);
        return null;
      }
      found = await hashFile(path);
    } catch (error) {
      await this.#say(`cannot read ${path}: ${(error as Error).message}`);
      return null;
    }
    const key = `${found.sha256} ${found.size}`;
    const list = this.#pending.get(key) ?? [];
    list.push({ path, ...found });
    this.#pending.set(key, list);
    const name = path.split(/[/\\]/).pop() || "file";
    return `/offer ${to} ${found.size} ${found.sha256} ${name}`;
  }

  /** The bytes of `offer` saved by an earlier attempt. */
  async #saved(
    offer: { name: string; size: number; sha256: string },
  ): Promise<number> {
    try {
      const { size } = await Deno.stat(this.#partPath(offer));
      return size <= offer.size ? size : 0;
    } catch {
      return 0;
    }
  }

  #partPath(offer: { name: string; sha256: string }): string {
    const name = safeFileName(offer.name);
    return `${this.#options.downloadDir}/.${name}.${
      offer.sha256.slice(0, 16)
    }.part`;
  }

  /** One of the server's file events. */
  event(event: FileEvent): void {
    switch (event.type) {
      case "file-offered": {
        const key = `${event.sha256} ${event.size}`;
        const list = this.#pending.get(key);
        const outgoing = list?.shift();
        if (list?.length === 0) this.#pending.delete(key);
        if (outgoing !== undefined) this.#outgoing.set(event.id, outgoing);
        return;
      }
      case "file-offer":
        if (event.receivable) this.#incoming.set(event.id, event);
        return;
      case "file-put": {
        const outgoing = this.#outgoing.get(event.id);
        if (outgoing === undefined) return;
        this.#run(this.#put(outgoing, event));
        return;
      }
      case "file-get":
        this.#run(this.#get(event));
        return;
      case "file-end":
        this.#outgoing.delete(event.id);
        this.#incoming.delete(event.id);
        return;
    }
  }

  #run(task: Promise<void>): void {
    const done = task.catch(async (error) => {
      await this.#say(`stopped: ${(error as Error).message}`).catch(() => {});
    }).finally(() => this.#tasks.delete(done));
    this.#tasks.add(done);
  }

  /** Connects for `transfer`, with its ticket; the server's answer. */
  async #open(
    transfer: Transfer,
    ticket: { port: number; token: string },
  ): Promise<{ conn: Deno.Conn; line: string; rest: Uint8Array }> {
    const conn = await this.#options.dial(ticket.port);
    this.#conns.add(conn);
    try {
      await writeAll(
        conn,
        encoder.encode(`${prefaceOf(transfer, ticket.token)}\n`),
      );
      return { conn, ...await answerOf(conn) };
    } catch (error) {
      this.#close(conn);
      throw error;
    }
  }

  #close(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }

  /** Sends `outgoing` from the ticket's offset. */
  async #put(
    outgoing: Outgoing,
    event: Extract<FileEvent, { type: "file-put" }>,
  ): Promise<void> {
    const { id, attempt, offset, size, until } = event;
    const { conn, line } = await this.#open(
      { id, attempt, side: "put", offset, size, until },
      event,
    );
    try {
      if (line !== "OK") return await this.#say(`${id}: ${line}`);
      // The server's last word (DONE, or ERR at any time), read while the
      // bytes go: an ERR stops the sending.
      let said: string | undefined;
      const answer = answerOf(conn).then(
        ({ line }) => said = line,
        () => said = "ERR the connection broke",
      );
      using file = await Deno.open(outgoing.path);
      await file.seek(offset, Deno.SeekMode.Start);
      const buffer = new Uint8Array(CHUNK);
      let sent = 0;
      while (sent < size - offset && said === undefined) {
        const n = await file.read(
          buffer.subarray(0, Math.min(CHUNK, size - offset - sent)),
        );
        if (n === null) {
          said = `${outgoing.path} is shorter now than when it was offered`;
          break;
        }
        try {
          await writeAll(conn, buffer.subarray(0, n));
        } catch {
          break;
        }
        sent += n;
      }
      if (sent === size - offset) await conn.closeWrite().catch(() => {});
      else if (said !== undefined) this.#close(conn);
      const last = said ?? await answer;
      if (sent < size - offset || last !== "DONE") {
        // The server says why, if it can (the receiver went away).
        return await this.#say(
          `${id}: sending stopped after ${
            offset + sent
          } of ${size} bytes: ${last}`,
        );
      }
      await this.#say(
        `${id}: sent ${event.name} to ${event.to} (bytes ${offset} to ${size}); waiting for its check`,
      );
    } finally {
      this.#close(conn);
    }
  }

  /** Gets the file of `event` into its `.part` file, checks it, names it. */
  async #get(event: Extract<FileEvent, { type: "file-get" }>): Promise<void> {
    const { id, attempt, offset, size, until, sha256 } = event;
    const part = this.#partPath(event);
    const { conn, line, rest } = await this.#open(
      { id, attempt, side: "get", offset, size, until },
      event,
    );
    let got = 0;
    try {
      if (line !== "OK") return await this.#say(`${id}: ${line}`);
      await Deno.mkdir(this.#options.downloadDir, { recursive: true });
      using file = await Deno.open(part, { write: true, create: true });
      await file.truncate(offset);
      await file.seek(offset, Deno.SeekMode.Start);
      const buffer = new Uint8Array(CHUNK);
      let chunk = rest.subarray(0, size - offset);
      while (true) {
        if (chunk.length > 0) {
          await writeAll(file, chunk);
          got += chunk.length;
        }
        if (got >= size - offset) break;
        let n: number | null;
        try {
          n = await conn.read(buffer);
        } catch {
          n = null;
        }
        if (n === null) break;
        chunk = buffer.subarray(0, Math.min(n, size - offset - got));
      }
    } finally {
      this.#close(conn);
    }
    if (got < size - offset) {
      return await this.#say(
        `${id}: interrupted at byte ${
          offset + got
        } of ${size}; /accept ${id} resumes`,
      );
    }
    const check = await hashFile(part);
    if (check.sha256 !== sha256) {
      await Deno.remove(part);
      await this.#options.send(`/done ${id} failed SHA-256 mismatch`);
      return await this.#say(
        `${id}: ${event.name} does not match its SHA-256; not kept`,
      );
    }
    const path = await freePath(
      this.#options.downloadDir,
      safeFileName(event.name),
    );
    await Deno.rename(part, path);
    await this.#options.send(`/done ${id} ok`);
    await this.#say(
      `${id}: saved ${event.name} as ${path} (${size} bytes, SHA-256 verified)`,
    );
  }

  /** Stops every transfer under way. */
  async close(): Promise<void> {
    for (const conn of this.#conns) this.#close(conn);
    await Promise.allSettled([...this.#tasks]);
  }
}

/** How chat's welcome starts, in text and in JSON. */
const CHAT_WELCOME = "* welcome, you are ";
const JSON_WELCOME = '{"type":"welcome"';

/** The events {@linkcode fileEvents} hands to the agent. */
const FILE_TYPES = new Set([
  "caps",
  "file-offer",
  "file-offered",
  "file-put",
  "file-get",
  "file-end",
]);

/**
 * What the server sends, on its way to the user: chat's file events go to
 * `agent` and read as text unless the session reads JSON (the server sends
 * them as JSON to a client that took files, whatever its protocol);
 * `chat` is called once the server's first line is chat's welcome. Every
 * other byte goes through as it comes.
 */
export function fileEvents(
  agent: FileAgent,
  chat: () => void,
): TransformStream<Uint8Array, Uint8Array> {
  /**
   * The first bytes, held until they say whether the server is chat: if
   * not, every byte goes through untouched, as it came.
   */
  let head: Uint8Array | undefined = new Uint8Array(0);
  let isChat = false;
  /** The session reads JSON: its last line that was not a file's was. */
  let json = false;
  const lines = new JsonLines((line, kind) => {
    if (kind === "json") {
      const event = fileEventOf(line);
      if (event === undefined) {
        json = true;
        return line;
      }
      agent.event(event);
      return json ? line : textOfJson(line) ?? line;
    }
    if (kind === "line") json = false;
    return line;
  });
  return new TransformStream({
    transform(chunk, controller) {
      if (head !== undefined) {
        const joined = new Uint8Array(head.length + chunk.length);
        joined.set(head);
        joined.set(chunk, head.length);
        const start = new TextDecoder().decode(joined.subarray(0, 64));
        if (
          start.startsWith(CHAT_WELCOME) ||
          start.startsWith(JSON_WELCOME)
        ) {
          isChat = true;
          chat();
        } else if (
          (CHAT_WELCOME.startsWith(start) || JSON_WELCOME.startsWith(start)) &&
          !start.includes("\n")
        ) {
          head = joined; // Not enough to tell yet.
          return;
        }
        head = undefined;
        chunk = joined;
      }
      if (!isChat) return controller.enqueue(chunk);
      const out = lines.push(chunk);
      if (out.length > 0) controller.enqueue(encoder.encode(out));
    },
    flush(controller) {
      if (head !== undefined && head.length > 0) controller.enqueue(head);
      const rest = lines.end();
      if (rest.length > 0) controller.enqueue(encoder.encode(rest));
    },
  });
}

/** `line` as a file event, if it is one. */
function fileEventOf(line: string): FileEvent | undefined {
  try {
    const object = JSON.parse(line);
    return FILE_TYPES.has(object?.type) ? object as FileEvent : undefined;
  } catch {
    return undefined;
  }
}
