// Private: chat history that survives a restart (serveEcho's
// `historyFile`): every room's lines appended to a file as JSON lines
// (`{"type":"message","room","from","text","ts"}`, as the JSON protocol
// says them),
// synced to the disk as `historySync` says (as Redis' appendfsync), read
// back at start so that a newcomer still gets the room's last lines, and
// rewritten with only what is kept once it has grown well past that. A
// last line torn by a crash, or any line that is not an entry, is skipped
// and reported, never a failure. Not exported from mod.ts.

import { optionError } from "../_helpers.ts";
import type { Said } from "./chat_render.ts";

/** When appended lines reach the disk (fsync): each, each second, or never. */
export const HISTORY_SYNCS = ["always", "second", "never"] as const;
export type HistorySync = typeof HISTORY_SYNCS[number];

/** What a history file's text holds. */
export interface ParsedHistory {
  /** Each room's lines, oldest first, the last `keep` of them. */
  rooms: Map<string, Said[]>;
  /** Lines that are not entries: their number and why. */
  skipped: { line: number; reason: string }[];
  /** Bytes up to the end of the last whole line (a torn tail cut off). */
  whole: number;
  /** Entries read. */
  entries: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads a history file's `bytes`, keeping the last `keep` lines a room. */
export function parseHistory(bytes: Uint8Array, keep: number): ParsedHistory {
  const rooms = new Map<string, Said[]>();
  const skipped: ParsedHistory["skipped"] = [];
  const end = bytes.lastIndexOf(0x0a) + 1;
  const lines = decoder.decode(bytes.subarray(0, end)).split("\n");
  lines.pop(); // After the last newline.
  let entries = 0;
  lines.forEach((text, i) => {
    let entry: Partial<Said>;
    try {
      entry = JSON.parse(text);
    } catch {
      skipped.push({ line: i + 1, reason: "not JSON" });
      return;
    }
    const { room: name, from, text: said, ts } = entry ?? {};
    if (
      entry?.type !== "message" || typeof name !== "string" ||
      typeof from !== "string" || typeof said !== "string" ||
      typeof ts !== "string"
    ) {
      skipped.push({ line: i + 1, reason: "not a history entry" });
      return;
    }
    entries++;
    let room = rooms.get(name);
    if (room === undefined) rooms.set(name, room = []);
    room.push({ type: "message", room: name, from, text: said, ts });
    if (room.length > keep) room.shift();
  });
  if (end < bytes.length) {
    skipped.push({
      line: lines.length + 1,
      reason: `torn (${bytes.length - end} bytes without a newline)`,
    });
  }
  return { rooms, skipped, whole: end, entries };
}

/** Options of {@linkcode HistoryFile.open}. */
export interface HistoryFileOptions {
  path: string;
  sync: HistorySync;
  /** Lines kept a room: what is read back, and what a rewrite keeps. */
  keep: number;
  /** Told of each line skipped at start, and of a write that failed. */
  warn(message: string): void;
}

/** The most entries a file holds beyond what is kept before a rewrite. */
const SLACK = 10_000;

/** An open history file: see the top of this file. */
export class HistoryFile {
  #options: HistoryFileOptions;
  #file: Deno.FsFile | undefined;
  /** What is kept, a room's last `keep` lines, as the file would say. */
  #rooms: Map<string, Said[]>;
  #entries: number;
  #dirty = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failed = false;

  private constructor(
    options: HistoryFileOptions,
    parsed: ParsedHistory,
    file: Deno.FsFile,
  ) {
    this.#options = options;
    this.#rooms = parsed.rooms;
    this.#entries = parsed.entries;
    this.#file = file;
  }

  /**
   * Reads the file at `options.path` (made if missing), reports what it
   * skips, cuts a torn last line off, and opens it for appending.
   *
   * @throws {TypeError} It cannot be read or written (the error's
   * `option` is `historyFile`).
   */
  static open(options: HistoryFileOptions): HistoryFile {
    const { path } = options;
    try {
      let bytes: Uint8Array = new Uint8Array(0);
      try {
        bytes = Deno.readFileSync(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      const parsed = parseHistory(bytes, options.keep);
      for (const { line, reason } of parsed.skipped) {
        options.warn(`${path}: skipped line ${line}, ${reason}`);
      }
      if (parsed.whole < bytes.length) Deno.truncateSync(path, parsed.whole);
      const file = Deno.openSync(path, {
        append: true,
        create: true,
        mode: 0o600,
      });
      return new HistoryFile(options, parsed, file);
    } catch (error) {
      throw optionError(
        "historyFile",
        `cannot use ${path}: ${(error as Error).message}`,
        TypeError,
      );
    }
  }

  /** Each room's kept lines, read at start. */
  get rooms(): ReadonlyMap<string, readonly Said[]> {
    return this.#rooms;
  }

  /** Appends a line said to its room's history. */
  append(said: Said): void {
    let kept = this.#rooms.get(said.room);
    if (kept === undefined) this.#rooms.set(said.room, kept = []);
    kept.push(said);
    if (kept.length > this.#options.keep) kept.shift();
    this.#write(`${JSON.stringify(said)}\n`);
    this.#entries++;
    if (this.#entries > this.#kept() + SLACK) this.#rewrite();
  }

  #kept(): number {
    let lines = 0;
    for (const kept of this.#rooms.values()) lines += kept.length;
    return lines;
  }

  #write(text: string): void {
    const file = this.#file;
    if (file === undefined || this.#failed) return;
    try {
      const bytes = encoder.encode(text);
      for (let at = 0; at < bytes.length;) {
        at += file.writeSync(bytes.subarray(at));
      }
      if (this.#options.sync === "always") file.syncDataSync();
      else if (this.#options.sync === "second") this.#syncSoon();
    } catch (error) {
      // Said once; the chat goes on without its file.
      this.#failed = true;
      this.#options.warn(
        `${this.#options.path}: cannot append, history is no longer kept on disk: ${
          (error as Error).message
        }`,
      );
    }
  }

  #syncSoon(): void {
    this.#dirty = true;
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#sync();
    }, 1000);
  }

  #sync(): void {
    if (!this.#dirty || this.#file === undefined) return;
    this.#dirty = false;
    try {
      this.#file.syncDataSync();
    } catch {
      // Seen by the next write.
    }
  }

  /** The file rewritten with only what is kept, in place of the old. */
  #rewrite(): void {
    const { path } = this.#options;
    const next = `${path}.${Deno.pid}.tmp`;
    try {
      const lines: string[] = [];
      for (const kept of this.#rooms.values()) {
        for (const said of kept) lines.push(JSON.stringify(said));
      }
      Deno.writeTextFileSync(next, lines.map((l) => `${l}\n`).join(""), {
        mode: 0o600,
      });
      const file = Deno.openSync(next, { read: true });
      file.syncDataSync();
      file.close();
      Deno.renameSync(next, path);
      this.#file?.close();
      this.#file = Deno.openSync(path, { append: true });
      this.#entries = lines.length;
    } catch (error) {
      this.#options.warn(
        `${path}: cannot rewrite it smaller: ${(error as Error).message}`,
      );
      this.#entries = 0; // Tried again after as many more lines.
    }
  }

  /** Syncs what is unsynced, and closes the file. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#sync();
    this.#file?.close();
    this.#file = undefined;
  }
}
