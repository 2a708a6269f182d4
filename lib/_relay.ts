// Private: the broadcast and chat relay behind serveEcho's `broadcast` and
// `chat` modes. Not exported from mod.ts.

import { lineContent } from "./_lines.ts";
import { Pacer } from "./_pacer.ts";
import { replaceControls, REPLACEMENT, safeText } from "./_text.ts";

/** The longest name or room, in characters. */
export const MAX_NAME_LENGTH = 32;
/** Most bytes chat adds around a line: `<`, the name, `> ` and `\n`. */
export const MAX_CHAT_OVERHEAD = 4 * MAX_NAME_LENGTH + 4;
/** The room every chat client starts in. */
export const LOBBY = "lobby";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/**
 * A name or room: a letter or digit, then letters, digits, marks,
 * punctuation or symbols, but none of `<>[]` (so that no name reads as
 * `[server]` or as another user's `<name>`) and no U+FFFD (invalid UTF-8).
 */
const NAME_PATTERN = new RegExp(
  `^(?![^]*[<>\\[\\]${REPLACEMENT}])[\\p{L}\\p{N}][\\p{L}\\p{N}\\p{M}\\p{P}\\p{S}]{0,${
    MAX_NAME_LENGTH - 1
  }}$`,
  "u",
);
const COMMANDS = "/nick NAME, /join ROOM, /who, /quit";
const NAME_RULE =
  `1 to ${MAX_NAME_LENGTH} letters, digits or symbols, starting with a letter or digit; no spaces, no < > [ ], valid UTF-8`;

/** Where a member's lines go: its connection's send queue. */
export interface Inbox {
  /** Queues `line`; `false` when the queue is full. */
  post(line: Uint8Array): boolean;
  /** Drops every later line: the last one posted is the last one sent. */
  seal(): void;
}

/** A connected client, as the relay sees it. */
export interface Member {
  readonly peer: string;
  readonly out: Inbox;
  /** Chat name; empty in broadcast mode. */
  name: string;
  /** Chat room; empty in broadcast mode. */
  room: string;
  /** Set by `/quit`: the connection should close once its queue is sent. */
  quitting: boolean;
  /** Closes the connection at once because its queue is full. */
  dropQueueFull(): void;
}

/** One line to deliver, and how many bytes it may put in a queue. */
interface Task {
  bytes: number;
  run(): void;
}

/** Options of a {@linkcode Relay}. */
export interface RelayOptions {
  mode: "broadcast" | "chat";
  /** Lines of history a chat newcomer gets. */
  history: number;
  /** Most lines delivered between two moments when every writer is idle. */
  linesPerRound: number;
  /** Most bytes a round may add to one client's queue. */
  bytesPerRound: number;
  /** Called when a member changes its name. */
  renamed?(member: Member, from: string): void;
}

/**
 * What a listener needs of a relay: the {@linkcode Relay} itself, or, in a
 * worker, a link to the relay on the main thread (see lib/workers/worker.ts).
 */
export interface RelayPort {
  /** Number of members. */
  readonly size: number;
  /** Resolves once nothing waits to be delivered. */
  idle(): Promise<void>;
  /** To be called by a member's outbox when its writer starts or stops. */
  writerBusy(writer: object, busy: boolean): void;
  /** To be called by a member's outbox when its socket took bytes. */
  writerProgress(): void;
  /** Adds a member; in chat, names it and puts it in the lobby. */
  join(member: Member): void;
  /** Removes a member; in chat, tells its room. */
  leave(member: Member): void;
  /**
   * Relays lines a member sent (each a copy the relay may keep, with its
   * ending if it had one), resolving once all of them are delivered.
   */
  submit(member: Member, lines: Uint8Array[]): Promise<void>;
  /**
   * Sends `[server] text` to every member, or to those `only` accepts,
   * resolving once it is in their queues. With `last`, nothing is sent to
   * them after it (the shutdown notice).
   */
  announce(
    text: string,
    only?: (member: Member) => boolean,
    last?: boolean,
  ): Promise<void>;
}

/** Resolves on the event loop's next turn, after what is ready now. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

interface Room {
  members: Set<Member>;
  history: Uint8Array[];
}

/**
 * Delivers every line to every member (broadcast) or to the sender's room
 * (chat), in one order that every recipient sees.
 *
 * Delivery happens in rounds: at most `linesPerRound` lines, then a wait
 * until every member's writer has handed its batch to the socket, except
 * writers whose socket takes nothing (see {@linkcode Pacer}). A client that
 * reads therefore never holds more than two rounds in its queue, however
 * many clients talk at once and however busy the server is, while a client
 * that stops reading falls behind by a round each time and is dropped when
 * its queue is full. Senders wait for their lines to be delivered before
 * their next read, so a fast sender is paced by the relay rather than
 * filling its memory.
 */
export class Relay implements RelayPort {
  #options: RelayOptions;
  #members = new Set<Member>();
  #names = new Map<string, Member>();
  #rooms = new Map<string, Room>();
  #nextUser = 1;
  #queue: Task[] = [];
  #head = 0;
  #pumping = false;
  #pacer = new Pacer();
  #idleWaiters: (() => void)[] = [];

  constructor(options: RelayOptions) {
    this.#options = options;
  }

  /** Number of members. */
  get size(): number {
    return this.#members.size;
  }

  /** Resolves once nothing waits to be delivered. */
  idle(): Promise<void> {
    if (!this.#pumping) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** To be called by a member's outbox when its writer starts or stops. */
  writerBusy(writer: object, busy: boolean): void {
    this.#pacer.busy(writer, busy);
  }

  /** To be called by a member's outbox when its socket took bytes. */
  writerProgress(): void {
    this.#pacer.progress();
  }

  /**
   * A worker started writing a batch (`true`) or reports every writer of
   * that batch settled (`false`); see lib/workers/worker.ts.
   */
  remoteBusy(busy: boolean): void {
    this.#pacer.remoteBusy(busy);
  }

  /** Adds a member; in chat, names it and puts it in the lobby. */
  join(member: Member): void {
    this.#members.add(member);
    if (this.#options.mode === "broadcast") return;
    member.name = this.#freeUserName();
    this.#names.set(member.name.toLowerCase(), member);
    this.#enqueue(MAX_CHAT_OVERHEAD * 3, () => {
      if (!this.#members.has(member)) return;
      this.#send(
        member,
        `* welcome, you are ${member.name}; commands: ${COMMANDS}`,
      );
      this.#enterRoom(member, LOBBY);
    });
  }

  /** Removes a member; in chat, tells its room. */
  leave(member: Member): void {
    if (!this.#forget(member)) return;
    if (this.#options.mode === "broadcast") return;
    this.#enqueue(MAX_CHAT_OVERHEAD, () => this.#leaveRoom(member));
  }

  /** Drops `member` and frees its name; `false` if it was not a member. */
  #forget(member: Member): boolean {
    if (!this.#members.delete(member)) return false;
    this.#names.delete(member.name.toLowerCase());
    return true;
  }

  /**
   * Relays lines a member sent (each a copy the relay may keep, with its
   * ending if it had one), resolving once all of them are delivered.
   */
  submit(member: Member, lines: Uint8Array[]): Promise<void> {
    if (lines.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const last = lines.length - 1;
      lines.forEach((line, i) => {
        // In chat, a control or invalid byte may become 3 (U+FFFD).
        const bytes = this.#options.mode === "chat"
          ? 3 * line.length
          : line.length;
        this.#enqueue(bytes + MAX_CHAT_OVERHEAD, () => {
          this.#handleLine(member, line);
          if (i === last) resolve();
        });
      });
    });
  }

  /**
   * Sends `[server] text` to every member, or to those `only` accepts,
   * resolving once it is in their queues. With `last`, nothing is sent to
   * them after it (the shutdown notice).
   */
  announce(
    text: string,
    only?: (member: Member) => boolean,
    last = false,
  ): Promise<void> {
    const line = encoder.encode(`[server] ${text}\n`);
    return new Promise((resolve) => {
      this.#enqueue(line.length, () => {
        for (const m of this.#members) {
          if (only !== undefined && !only(m)) continue;
          this.#post(m, line);
          if (last) m.out.seal();
        }
        resolve();
      });
    });
  }

  #enqueue(bytes: number, run: () => void): void {
    this.#queue.push({ bytes, run });
    if (!this.#pumping) this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    const { linesPerRound, bytesPerRound } = this.#options;
    while (this.#head < this.#queue.length) {
      // Let this turn's other lines (a burst of joins, many clients' lines)
      // arrive first, so that they go to each client in one write rather
      // than one write each.
      await nextTurn();
      let lines = 0;
      let bytes = 0;
      while (this.#head < this.#queue.length && lines < linesPerRound) {
        const task = this.#queue[this.#head];
        if (lines > 0 && bytes + task.bytes > bytesPerRound) break;
        this.#head++;
        lines++;
        bytes += task.bytes;
        task.run();
      }
      if (this.#head === this.#queue.length) {
        this.#queue = [];
        this.#head = 0;
      } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        // Amortised O(1) per task, however long the queue.
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      await this.#pacer.settled();
    }
    this.#pumping = false;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  #handleLine(member: Member, line: Uint8Array): void {
    if (this.#options.mode === "broadcast") {
      for (const m of this.#members) this.#post(m, line);
      return;
    }
    if (!this.#members.has(member) || member.quitting) return;
    const text = lineContent(line);
    if (text.length === 0) return;
    if (text[0] === 0x2f /* "/" */ && text[1] !== 0x2f) {
      this.#command(member, decoder.decode(text));
      return;
    }
    // "//text" sends "/text".
    const body = safeText(text[0] === 0x2f ? text.subarray(1) : text);
    const out = encoder.encode(`<${member.name}> ${body}\n`);
    const room = this.#room(member.room);
    for (const m of room.members) this.#post(m, out);
    room.history.push(out);
    if (room.history.length > this.#options.history) room.history.shift();
  }

  #command(member: Member, input: string): void {
    const [command, ...args] = input.trim().split(/\s+/);
    const arg = args.join(" ");
    switch (command.toLowerCase()) {
      case "/nick":
        return this.#nick(member, arg);
      case "/join":
        return this.#join(member, arg);
      case "/who": {
        const names = [...this.#room(member.room).members].map((m) => m.name);
        return this.#send(
          member,
          `* in ${member.room} (${names.length}): ${names.join(", ")}`,
        );
      }
      case "/quit":
        if (args.length > 0) return this.#error(member, "usage: /quit");
        member.quitting = true;
        this.#send(member, "* bye");
        this.#leaveRoom(member);
        this.#forget(member);
        return;
      default:
        return this.#error(
          member,
          `unknown command ${
            replaceControls(command.slice(0, MAX_NAME_LENGTH))
          } (try ${COMMANDS}; //text sends /text)`,
        );
    }
  }

  #nick(member: Member, name: string): void {
    if (!NAME_PATTERN.test(name)) {
      return this.#error(
        member,
        `usage: /nick NAME (${NAME_RULE})`,
      );
    }
    const holder = this.#names.get(name.toLowerCase());
    if (holder === member && name === member.name) return;
    if (holder !== undefined && holder !== member) {
      return this.#error(member, `name taken: ${name}`);
    }
    const from = member.name;
    this.#names.delete(from.toLowerCase());
    this.#names.set(name.toLowerCase(), member);
    member.name = name;
    const notice = encoder.encode(`* ${from} is now ${name}\n`);
    for (const m of this.#room(member.room).members) this.#post(m, notice);
    this.#options.renamed?.(member, from);
  }

  #join(member: Member, room: string): void {
    if (!NAME_PATTERN.test(room)) {
      return this.#error(
        member,
        `usage: /join ROOM (${NAME_RULE})`,
      );
    }
    if (room === member.room) {
      return this.#send(member, `* already in ${room}`);
    }
    this.#leaveRoom(member);
    this.#enterRoom(member, room);
  }

  #enterRoom(member: Member, name: string): void {
    const room = this.#room(name);
    member.room = name;
    for (const line of room.history) this.#post(member, line);
    room.members.add(member);
    const notice = encoder.encode(`* ${member.name} joined ${name}\n`);
    for (const m of room.members) this.#post(m, notice);
  }

  #leaveRoom(member: Member): void {
    const room = this.#rooms.get(member.room);
    if (room === undefined || !room.members.delete(member)) return;
    const notice = encoder.encode(`* ${member.name} left ${member.room}\n`);
    for (const m of room.members) this.#post(m, notice);
    if (room.members.size === 0 && member.room !== LOBBY) {
      this.#rooms.delete(member.room);
    }
  }

  #room(name: string): Room {
    let room = this.#rooms.get(name);
    if (room === undefined) {
      room = { members: new Set(), history: [] };
      this.#rooms.set(name, room);
    }
    return room;
  }

  #freeUserName(): string {
    while (this.#names.has(`user${this.#nextUser}`)) this.#nextUser++;
    return `user${this.#nextUser++}`;
  }

  #error(member: Member, message: string): void {
    this.#send(member, `ERR ${message}`);
  }

  #send(member: Member, text: string): void {
    this.#post(member, encoder.encode(`${text}\n`));
  }

  #post(member: Member, line: Uint8Array): void {
    if (!member.out.post(line)) member.dropQueueFull();
  }
}
