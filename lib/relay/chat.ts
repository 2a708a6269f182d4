// Private: chat mode's rules: names, rooms, commands and history, above the
// relay's fan-out (lib/relay/relay.ts), which they do not change. Not
// exported from mod.ts.

import { optionError } from "../_helpers.ts";
import { lineContent } from "../_lines.ts";
import { replaceControls, REPLACEMENT, safeText } from "../_text.ts";
import {
  type Fanout,
  type Member,
  MemberGroup,
  type RelayRules,
} from "./relay.ts";

/** The longest name or room, in characters. */
export const MAX_NAME_LENGTH = 32;
/** Most bytes chat adds around a line: `<`, the name, `> ` and `\n`. */
export const MAX_CHAT_OVERHEAD = 4 * MAX_NAME_LENGTH + 4;

/**
 * The longest line chat may send for a line of `maxLineBytes`: each control
 * or invalid byte may become U+FFFD (3 bytes), with a name and a newline.
 */
export function chatLineBytes(maxLineBytes: number): number {
  return 3 * maxLineBytes + 2 + MAX_CHAT_OVERHEAD;
}
/** How chat names its clients: `userN`, or by their certificates too. */
export const CHAT_NAMES = ["auto", "cert"] as const;

/**
 * Whether chat names clients by their certificates: `chatNames: "cert"`,
 * which needs chat mode and `clientCa`.
 */
export function certNamesConfig(
  options: { chatNames?: unknown; clientCa?: unknown },
  mode: string,
): boolean {
  const { chatNames = "auto" } = options;
  if (!(CHAT_NAMES as readonly unknown[]).includes(chatNames)) {
    throw optionError(
      "chatNames",
      `must be one of ${CHAT_NAMES.join(", ")}, got ${String(chatNames)}`,
    );
  }
  if (chatNames === "auto") return false;
  if (mode !== "chat") {
    throw optionError("chatNames", "names clients in chat mode only");
  }
  if (options.clientCa === undefined) {
    throw optionError(
      "chatNames",
      "names clients by verified certificates only: give clientCa (--tls-client-ca)",
      TypeError,
    );
  }
  return true;
}

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

/** Options of {@linkcode ChatRules}. */
export interface ChatOptions {
  /** Lines of history a newcomer gets. */
  history: number;
  /**
   * A member whose client certificate has a common name that is a valid
   * name is called by it, and cannot change it; an unverified holder of
   * that name is renamed.
   */
  certNames: boolean;
  /** Called when a member changes its name. */
  renamed?(member: Member, from: string): void;
}

/** A room: its members, and its last lines. */
class Room extends MemberGroup {
  history: Uint8Array[] = [];
}

/** What {@linkcode ChatRules} keep, as plain data (see `save`). */
interface ChatState {
  nextUser: number;
  /** Member key, name, room, and whether its certificate named it. */
  members: [string, string, string, boolean?][];
  /** Room, its members' keys in the order they came, its history. */
  rooms: [string, string[], string[]][];
}

/**
 * Chat: each member has a unique name (`userN` until `/nick`) and is in one
 * room (the lobby at first); a line goes to the sender's room as
 * `<name> text`, made safe for terminals; joins, leaves and renames are
 * announced to the room; a newcomer gets the room's last lines.
 */
export class ChatRules implements RelayRules {
  readonly noticeBytes = MAX_CHAT_OVERHEAD * 3;
  #fanout: Fanout;
  #options: ChatOptions;
  #names = new Map<string, Member>();
  /** Members named by their certificates. */
  #certified = new Set<Member>();
  #rooms = new Map<string, Room>();
  #nextUser = 1;

  constructor(fanout: Fanout, options: ChatOptions) {
    this.#fanout = fanout;
    this.#options = options;
  }

  /** In chat a control or invalid byte may become 3 (U+FFFD). */
  lineBytes(line: Uint8Array): number {
    return 3 * line.length + MAX_CHAT_OVERHEAD;
  }

  save(keyOf: (member: Member) => string): ChatState {
    return {
      nextUser: this.#nextUser,
      members: [...this.#fanout.members].map((
        m,
      ) => [keyOf(m), m.name, m.room, this.#certified.has(m)]),
      rooms: [...this.#rooms].map(([name, room]) => [
        name,
        [...room.members].map(keyOf),
        room.history.map((line) => decoder.decode(line)),
      ]),
    };
  }

  load(saved: unknown, memberOf: (key: string) => Member): void {
    const state = saved as ChatState;
    this.#nextUser = state.nextUser;
    for (const [key, name, room, certified] of state.members) {
      const member = memberOf(key);
      member.name = name;
      member.room = room;
      this.#names.set(name.toLowerCase(), member);
      if (certified) this.#certified.add(member);
    }
    for (const [name, keys, history] of state.rooms) {
      const room = new Room(keys.map(memberOf));
      room.history = history.map((line) => encoder.encode(line));
      this.#rooms.set(name, room);
    }
  }

  join(member: Member): void {
    member.name = this.#freeUserName();
    this.#names.set(member.name.toLowerCase(), member);
  }

  welcome(member: Member): void {
    const claim = this.#options.certNames ? member.certName : undefined;
    const note = claim === undefined ? undefined : this.#claim(member, claim);
    this.#send(
      member,
      `* welcome, you are ${member.name}${
        note === undefined ? "" : ` (${note})`
      }; commands: ${COMMANDS}`,
    );
    this.#enterRoom(member, LOBBY);
  }

  /**
   * Names `member` (not in a room yet) by its certificate's `name`, and
   * says how that went.
   */
  #claim(member: Member, name: string): string {
    if (!NAME_PATTERN.test(name)) {
      return `your certificate's name ${
        JSON.stringify(replaceControls(name.slice(0, MAX_NAME_LENGTH)))
      } is not a chat name`;
    }
    const holder = this.#names.get(name.toLowerCase());
    if (holder !== undefined && this.#certified.has(holder)) {
      return `${holder.name} is here already, with a certificate`;
    }
    if (holder !== undefined && holder !== member) {
      // The certificate proves the name; a /nick did not.
      this.#send(
        holder,
        `* ${holder.name} belongs to a client with its certificate`,
      );
      this.#rename(holder, this.#freeUserName());
    }
    this.#rename(member, name);
    this.#certified.add(member);
    return "from your certificate";
  }

  leave(member: Member): void {
    this.#names.delete(member.name.toLowerCase());
    this.#certified.delete(member);
  }

  farewell(member: Member): void {
    this.#leaveRoom(member);
  }

  line(member: Member, line: Uint8Array): void {
    if (!this.#fanout.members.has(member) || member.quitting) return;
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
    this.#fanout.postAll(room, out);
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
        this.#fanout.remove(member);
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
    if (this.#certified.has(member)) {
      return this.#error(member, "your name comes from your certificate");
    }
    const holder = this.#names.get(name.toLowerCase());
    if (holder === member && name === member.name) return;
    if (holder !== undefined && holder !== member) {
      return this.#error(member, `name taken: ${name}`);
    }
    this.#rename(member, name);
  }

  #rename(member: Member, name: string): void {
    const from = member.name;
    this.#names.delete(from.toLowerCase());
    this.#names.set(name.toLowerCase(), member);
    member.name = name;
    if (member.room !== "") {
      const notice = encoder.encode(`* ${from} is now ${name}\n`);
      this.#fanout.postAll(this.#room(member.room), notice);
    }
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
    for (const line of room.history) this.#fanout.post(member, line);
    room.add(member);
    const notice = encoder.encode(`* ${member.name} joined ${name}\n`);
    this.#fanout.postAll(room, notice);
  }

  #leaveRoom(member: Member): void {
    const room = this.#rooms.get(member.room);
    if (room === undefined || !room.delete(member)) return;
    const notice = encoder.encode(`* ${member.name} left ${member.room}\n`);
    this.#fanout.postAll(room, notice);
    if (room.members.size === 0 && member.room !== LOBBY) {
      this.#rooms.delete(member.room);
    }
  }

  #room(name: string): Room {
    let room = this.#rooms.get(name);
    if (room === undefined) {
      room = new Room();
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
    this.#fanout.post(member, encoder.encode(`${text}\n`));
  }
}
