// Private: chat mode's rules: names, rooms, commands and history, above the
// relay's fan-out (lib/relay/relay.ts), which they do not change. Not
// exported from mod.ts.

import { optionError } from "../_helpers.ts";
import { lineContent } from "../_lines.ts";
import { replaceControls, REPLACEMENT, safeText } from "../_text.ts";
import { ChatDoor, LOGIN_MARK, type LoginResult } from "./chat_door.ts";
import {
  type ChatEvent,
  lineOf,
  type Protocol,
  PROTOCOLS,
  type Said,
} from "./chat_render.ts";
import type { ChatUsers } from "./chat_users.ts";
import { ChatFiles, type FilesOptions, type FilesState } from "./chat_files.ts";
import {
  type Admission,
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

/** Whether `name` may be a chat name (or room). */
export function isChatName(name: string): boolean {
  return NAME_PATTERN.test(name);
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
const COMMANDS =
  "/nick NAME, /join ROOM, /who, /rooms, /msg NAME TEXT, /me TEXT, " +
  "/whois NAME, /history N, /login NAME PASSWORD, /protocol text|json, " +
  "/accept ID, /reject ID, /help, /quit";
/** Most rooms `/rooms` lists. */
const MAX_ROOMS_LISTED = 50;
const NAME_RULE =
  `1 to ${MAX_NAME_LENGTH} letters, digits or symbols, starting with a letter or digit; no spaces, no < > [ ], valid UTF-8`;

/** Options of {@linkcode ChatRules}. */
export interface ChatOptions {
  /** Lines of history a newcomer gets. */
  history: number;
  /**
   * Lines kept a room, for `/history N` (at least `history`; the default).
   * At most what one member's queue can take at once.
   */
  keep?: number;
  /** Where the rooms' lines are kept across restarts (a history file). */
  archive?: ChatArchive;
  /** How members read chat until `/protocol` (text by default). */
  protocol?: Protocol;
  /**
   * A member whose client certificate has a common name that is a valid
   * name is called by it, and cannot change it; an unverified holder of
   * that name is renamed.
   */
  certNames: boolean;
  /**
   * Lines a member may send a second, in a burst of as many (a token
   * bucket); past it, lines are refused with an `ERR` line. `Infinity`:
   * no limit (the default).
   */
  rate?: number;
  /** Registered names, taken only by logging in; none when undefined. */
  users?: ChatUsers;
  /** Members are in no room and may only log in until they have. */
  requireLogin?: boolean;
  /** Milliseconds a failed login waits before its answer (1000). */
  failureDelayMs?: number;
  /** Called when a member changes its name. */
  renamed?(member: Member, from: string): void;
  /** Called when flood control refuses one of a member's lines. */
  limited?(member: Member): void;
  /** Called when a login was tried. */
  login?(member: Member, result: LoginResult): void;
  /** The time in milliseconds (`performance.now` by default). */
  now?(): number;
  /** Files between members; none without. */
  files?: FilesOptions;
}

/** Where chat keeps its rooms' lines across restarts. */
export interface ChatArchive {
  /** Each room's lines at start, oldest first. */
  readonly rooms: ReadonlyMap<string, readonly Said[]>;
  /** Keeps a line said. */
  append(said: Said): void;
  close(): void;
}

/** Most rooms without members kept for their history. */
const MAX_EMPTY_ROOMS = 1000;

/** A room: its members, and its last lines. */
class Room extends MemberGroup {
  /** Its members who read JSON. */
  json = new MemberGroup();
  history: Said[] = [];
}

/** What {@linkcode ChatRules} keep, as plain data (see `save`). */
interface ChatState {
  nextUser: number;
  /**
   * Member key, name, room, whether its certificate named it, since when
   * (milliseconds since the epoch) it has been here, and whether it
   * logged in.
   */
  members: [string, string, string, boolean?, number?, boolean?, boolean?][];
  /** Room, its members' keys in the order they came, its history. */
  rooms: [string, string[], Said[]][];
  files?: FilesState;
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
  /** When each member came (milliseconds since the epoch). */
  #since = new Map<Member, number>();
  /** Members logged in with a password. */
  #loggedIn = new Set<Member>();
  /** Members who read JSON (see docs/chat-protocol.md). */
  #json = new Set<Member>();
  #door: ChatDoor;
  #files: ChatFiles;
  #nextUser = 1;

  constructor(fanout: Fanout, options: ChatOptions) {
    this.#fanout = fanout;
    this.#options = options;
    this.#door = new ChatDoor({
      rate: options.rate ?? Infinity,
      users: options.users,
      requireLogin: options.requireLogin ?? false,
      failureDelayMs: options.failureDelayMs ?? 1000,
      loggedIn: (member) =>
        this.#loggedIn.has(member) || this.#certified.has(member),
      json: (member) => this.#json.has(member),
      error: (text, json) =>
        lineOf({ type: "error", text }, json ? "json" : "text"),
      limited: options.limited,
      login: options.login,
      now: options.now ?? (() => performance.now()),
    });
    this.#files = new ChatFiles(options.files ?? { maxBytes: 0 }, {
      say: (member, event, json) =>
        this.#say(member, event, json ? "json" : undefined),
      byName: (name) => this.#names.get(name.toLowerCase()),
      user: (member, name) => this.#user(member, name),
    });
    for (const [name, lines] of options.archive?.rooms ?? []) {
      this.#room(name).history = lines.slice(-this.#keep);
    }
  }

  /** Lines kept a room. */
  get #keep(): number {
    return Math.max(this.#options.keep ?? 0, this.#options.history);
  }

  async close(): Promise<void> {
    this.#options.archive?.close();
    await this.#options.files?.close?.();
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
      ) => [
        keyOf(m),
        m.name,
        m.room,
        this.#certified.has(m),
        this.#since.get(m),
        this.#loggedIn.has(m),
        this.#json.has(m),
      ]),
      rooms: [...this.#rooms].map(([name, room]) => [
        name,
        [...room.members].map(keyOf),
        room.history,
      ]),
      files: this.#files.save(keyOf),
    };
  }

  load(saved: unknown, memberOf: (key: string) => Member): void {
    const state = saved as ChatState;
    this.#nextUser = state.nextUser;
    for (
      const [key, name, room, certified, since, loggedIn, json] of state
        .members
    ) {
      const member = memberOf(key);
      if (loggedIn) this.#loggedIn.add(member);
      if (json) this.#json.add(member);
      member.name = name;
      member.room = room;
      if (since !== undefined) this.#since.set(member, since);
      this.#names.set(name.toLowerCase(), member);
      if (certified) this.#certified.add(member);
    }
    for (const [name, keys, history] of state.rooms) {
      const room = new Room(keys.map(memberOf));
      for (const m of room.members) if (this.#json.has(m)) room.json.add(m);
      room.history = history;
      this.#rooms.set(name, room);
    }
    if (state.files !== undefined) this.#files.load(state.files, memberOf);
  }

  join(member: Member): void {
    if (this.#options.protocol === "json") this.#json.add(member);
    member.name = this.#freeUserName();
    this.#names.set(member.name.toLowerCase(), member);
    this.#since.set(member, Date.now());
  }

  /** Judged once, on the member's own relay: see lib/relay/chat_door.ts. */
  admit(member: Member, line: Uint8Array): Admission | Promise<Admission> {
    return this.#door.admit(member, line);
  }

  welcome(member: Member): void {
    const claim = this.#options.certNames ? member.certName : undefined;
    const note = claim === undefined ? undefined : this.#claim(member, claim);
    this.#say(member, {
      type: "welcome",
      name: member.name,
      ...(note === undefined ? {} : { note }),
      login: this.#outside(member),
    });
    if (!this.#outside(member)) this.#enterRoom(member, LOBBY);
  }

  /** Whether `member` must log in before it is in a room. */
  #outside(member: Member): boolean {
    return this.#options.requireLogin === true &&
      !this.#certified.has(member) &&
      !this.#loggedIn.has(member);
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
      this.#say(holder, { type: "claimed", name: holder.name });
      this.#rename(holder, this.#freeUserName());
    }
    this.#rename(member, name);
    this.#certified.add(member);
    return "from your certificate";
  }

  leave(member: Member): void {
    this.#files.left(member);
    this.#names.delete(member.name.toLowerCase());
    this.#certified.delete(member);
    this.#since.delete(member);
    this.#loggedIn.delete(member);
    this.#json.delete(member);
  }

  farewell(member: Member): void {
    this.#leaveRoom(member);
  }

  line(member: Member, line: Uint8Array): void {
    if (!this.#fanout.members.has(member) || member.quitting) return;
    const text = lineContent(line);
    if (text.length === 0) return;
    if (text[0] === 0) {
      // A login its own relay checked (lib/relay/chat_door.ts).
      const mark = decoder.decode(text);
      if (mark.startsWith(LOGIN_MARK)) {
        this.#logIn(member, mark.slice(LOGIN_MARK.length));
      }
      return;
    }
    if (text[0] === 0x2f /* "/" */ && text[1] !== 0x2f) {
      this.#command(member, decoder.decode(text));
      return;
    }
    // "//text" sends "/text".
    const body = safeText(text[0] === 0x2f ? text.subarray(1) : text);
    const room = this.#room(member.room);
    const said: Said = {
      type: "message",
      room: member.room,
      from: member.name,
      text: body,
      ts: new Date().toISOString(),
    };
    this.#tell(room, said);
    room.history.push(said);
    if (room.history.length > this.#keep) room.history.shift();
    this.#options.archive?.append(said);
  }

  #command(member: Member, input: string): void {
    const [command, ...args] = input.trim().split(/\s+/);
    const arg = args.join(" ");
    // What follows the command and its first word, spaces kept.
    const rest = /^\S+\s+\S+\s+(.*)$/s.exec(input.trim())?.[1] ?? "";
    switch (command.toLowerCase()) {
      case "/nick":
        return this.#nick(member, arg);
      case "/join":
        return this.#join(member, arg);
      case "/msg":
        return this.#private(member, args[0], rest);
      case "/me": {
        const action = /^\S+\s+(.*)$/s.exec(input.trim())?.[1] ?? "";
        if (action.trim() === "") return this.#error(member, "usage: /me TEXT");
        const text = safeText(encoder.encode(action));
        this.#tell(this.#room(member.room), {
          type: "action",
          from: member.name,
          text,
        });
        return;
      }
      case "/rooms":
        return this.#listRooms(member);
      case "/whois":
        return this.#whois(member, arg);
      case "/history":
        return this.#history(member, arg);
      case "/protocol":
        return this.#setProtocol(member, arg);
      case "/help":
        return this.#say(member, { type: "help", commands: COMMANDS });
      case "/who": {
        const names = [...this.#room(member.room).members].map((m) => m.name);
        return this.#say(member, { type: "who", room: member.room, names });
      }
      case "/quit":
        if (args.length > 0) return this.#error(member, "usage: /quit");
        member.quitting = true;
        this.#say(member, { type: "bye" });
        this.#leaveRoom(member);
        this.#fanout.remove(member);
        return;
      default:
        if (this.#files.command(member, command.toLowerCase(), args, input)) {
          return;
        }
        return this.#error(
          member,
          `unknown command ${
            replaceControls(command.slice(0, MAX_NAME_LENGTH))
          } (try /help; //text sends /text)`,
        );
    }
  }

  /**
   * `/msg NAME TEXT`: to that member alone, wherever it is (any room, any
   * thread, any instance: every relay applies it, the one that holds the
   * member delivers). The sender sees what it sent.
   */
  #private(member: Member, name: string | undefined, text: string): void {
    if (name === undefined || text.trim() === "") {
      return this.#error(member, "usage: /msg NAME TEXT");
    }
    const target = this.#user(member, name);
    if (target === undefined) return;
    const line = {
      type: "private",
      from: member.name,
      to: target.name,
      text: safeText(encoder.encode(text)),
    } as const;
    this.#say(member, { ...line, sent: true });
    if (target !== member) this.#say(target, { ...line, sent: false });
  }

  /** The member called `name`, or `ERR no such user` to `member`. */
  #user(member: Member, name: string): Member | undefined {
    const found = this.#names.get(name.toLowerCase());
    if (found === undefined) {
      this.#error(
        member,
        `no such user: ${replaceControls(name.slice(0, MAX_NAME_LENGTH))}`,
      );
    }
    return found;
  }

  #listRooms(member: Member): void {
    const rooms = [...this.#rooms].filter(([, room]) => room.size > 0)
      .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
    this.#say(member, {
      type: "rooms",
      rooms: rooms.slice(0, MAX_ROOMS_LISTED)
        .map(([name, room]) => [name, room.size]),
      total: rooms.length,
    });
  }

  #whois(member: Member, name: string): void {
    if (name === "") return this.#error(member, "usage: /whois NAME");
    const target = this.#user(member, name);
    if (target === undefined) return;
    const since = this.#since.get(target);
    this.#say(member, {
      type: "whois",
      name: target.name,
      room: target.room,
      ...(since === undefined ? {} : { since }),
      how: this.#certified.has(target)
        ? "certificate"
        : this.#loggedIn.has(target)
        ? "login"
        : "none",
    });
  }

  /**
   * `member` logged in as `name`: it takes the name (whoever had it without
   * logging in gets a `userN`; another login of the same user keeps its
   * name only until this one), and with `requireLogin` enters the lobby.
   */
  #logIn(member: Member, name: string): void {
    if (!NAME_PATTERN.test(name)) return;
    const holder = this.#names.get(name.toLowerCase());
    if (holder !== undefined && holder !== member) {
      this.#say(holder, { type: "elsewhere", name: holder.name });
      this.#loggedIn.delete(holder);
      this.#rename(holder, this.#freeUserName());
    }
    if (member.name !== name) this.#rename(member, name);
    else this.#files.named(member);
    this.#certified.delete(member);
    this.#loggedIn.add(member);
    this.#say(member, { type: "login", name });
    if (member.room === "") this.#enterRoom(member, LOBBY);
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
    if (this.#loggedIn.has(member)) {
      return this.#error(member, `you are logged in as ${member.name}`);
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
      this.#tell(this.#room(member.room), { type: "nick", from, to: name });
    }
    this.#options.renamed?.(member, from);
    this.#files.named(member);
  }

  #join(member: Member, room: string): void {
    if (!NAME_PATTERN.test(room)) {
      return this.#error(
        member,
        `usage: /join ROOM (${NAME_RULE})`,
      );
    }
    if (room === member.room) {
      return this.#say(member, { type: "already", room });
    }
    this.#leaveRoom(member);
    this.#enterRoom(member, room);
  }

  #enterRoom(member: Member, name: string): void {
    const room = this.#room(name);
    member.room = name;
    const { history } = this.#options;
    const newest = history === 0 ? [] : room.history.slice(-history);
    for (const said of newest) this.#say(member, said);
    room.add(member);
    if (this.#json.has(member)) room.json.add(member);
    this.#tell(room, { type: "join", name: member.name, room: name });
  }

  #leaveRoom(member: Member): void {
    const room = this.#rooms.get(member.room);
    if (room === undefined || !room.delete(member)) return;
    room.json.delete(member);
    this.#tell(room, { type: "leave", name: member.name, room: member.room });
    if (room.members.size === 0 && member.room !== LOBBY) {
      // An empty room is kept for its history, a bounded number of them.
      if (room.history.length === 0) this.#rooms.delete(member.room);
      else this.#forgetEmptyRooms();
    }
  }

  /** Forgets the oldest empty rooms past MAX_EMPTY_ROOMS. */
  #forgetEmptyRooms(): void {
    let empty = 0;
    for (const room of this.#rooms.values()) if (room.size === 0) empty++;
    for (const [name, room] of this.#rooms) {
      if (empty <= MAX_EMPTY_ROOMS) return;
      if (room.size > 0 || name === LOBBY) continue;
      this.#rooms.delete(name);
      empty--;
    }
  }

  /** `/history N`: the last N lines of the member's room, to it alone. */
  #history(member: Member, arg: string): void {
    const keep = this.#keep;
    const n = /^\d{1,9}$/.test(arg) ? Number(arg) : NaN;
    if (!(n >= 1 && n <= keep)) {
      return this.#error(member, `usage: /history N (1 to ${keep})`);
    }
    const lines = this.#room(member.room).history.slice(-n);
    this.#say(member, {
      type: "history",
      room: member.room,
      lines: lines.length,
    });
    for (const said of lines) this.#say(member, said);
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

  #error(member: Member, text: string): void {
    this.#say(member, { type: "error", text });
  }

  /** How `member` reads chat. */
  #protocol(member: Member): Protocol {
    return this.#json.has(member) ? "json" : "text";
  }

  /** Tells `member` alone, in its protocol unless `protocol` says. */
  #say(
    member: Member,
    event: ChatEvent,
    protocol: Protocol = this.#protocol(member),
  ): void {
    this.#fanout.post(member, lineOf(event, protocol));
  }

  /**
   * Tells every member of `room`, each in its protocol: the room at once
   * when all read one, else member by member.
   */
  #tell(room: Room, event: ChatEvent): void {
    this.#tellGroup(room, room.json, event);
  }

  /** Tells every member of `group`, of whom those in `json` read JSON. */
  #tellGroup(
    group: MemberGroup,
    json: { readonly size: number; has(member: Member): boolean },
    event: ChatEvent,
  ): void {
    if (json.size === 0 || json.size === group.size) {
      const protocol = json.size === 0 ? "text" : "json";
      this.#fanout.postAll(group, lineOf(event, protocol));
      return;
    }
    const text = lineOf(event, "text");
    const object = lineOf(event, "json");
    for (const m of group.members) {
      this.#fanout.post(m, json.has(m) ? object : text);
    }
  }

  /** The relay's own error (a cluster away), as `member` reads it. */
  errorLine(member: Member, text: string): Uint8Array {
    return lineOf({ type: "error", text }, this.#protocol(member));
  }

  /** An operator's announcement, as `member` reads it. */
  serverLine(member: Member, text: string): Uint8Array {
    return lineOf({ type: "server", text }, this.#protocol(member));
  }

  /** An operator's announcement to every member, each as it reads chat. */
  announce(text: string): void {
    this.#tellGroup(this.#fanout.everyone, this.#json, {
      type: "server",
      text,
    });
  }

  /** `/protocol text|json`: how `member` reads chat from now on. */
  #setProtocol(member: Member, arg: string): void {
    const protocol = arg.toLowerCase() as Protocol;
    if (!PROTOCOLS.includes(protocol)) {
      return this.#error(member, "usage: /protocol text|json");
    }
    const room = this.#rooms.get(member.room);
    if (protocol === "json") {
      this.#json.add(member);
      if (room?.has(member)) room.json.add(member);
    } else {
      this.#json.delete(member);
      room?.json.delete(member);
    }
    this.#say(member, { type: "protocol", protocol });
  }
}
