// Private: chat's door, on each member's own relay: what is judged once,
// where the client is connected, before a line joins the one order every
// relay applies (RelayRules.admit): flood control, logins (the password
// checked here against the users file, and the line that goes on names
// the user without it, so no password reaches Redis, a log or history),
// registered names kept from `/nick`, guessing bounded, and with
// `requireLogin`, nothing but logging in until logged in. Not exported
// from mod.ts.

import { lineContent } from "../_lines.ts";
import { replaceControls } from "../_text.ts";
import type { ChatUsers } from "./chat_users.ts";
import type { Admission, Member } from "./relay.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What a login that went through becomes, for every relay: the name. */
export const LOGIN_MARK = "\0login ";
/** Failed logins a connection may make before it is refused. */
export const FAILURES_PER_CONNECTION = 3;
/** Failed logins an address may make a minute before it is refused. */
export const FAILURES_PER_ADDRESS = 10;
const ADDRESS_WINDOW_MS = 60_000;
/** Addresses with failures remembered before the stale ones are dropped. */
const ADDRESSES_KEPT = 10_000;

/** How a login went, as the counters and logs say it. */
export type LoginResult = "ok" | "failed" | "refused";

/** Options of a {@linkcode ChatDoor}. */
export interface DoorOptions {
  /** Lines a member may send a second, in a burst of as many. */
  rate: number;
  /** The registered users; none when undefined. */
  users?: ChatUsers;
  /** Members say nothing but `/login`, `/help` and `/quit` until logged in. */
  requireLogin: boolean;
  /** Milliseconds a failed login waits before its answer. */
  failureDelayMs: number;
  /** Whether `member` is logged in (by a login, or its certificate). */
  loggedIn(member: Member): boolean;
  /** Whether `member` reads and writes JSON (docs/chat-protocol.md). */
  json(member: Member): boolean;
  /** `ERR text` in text, or as a JSON error object. */
  error(text: string, json: boolean): Uint8Array;
  /** Flood control refused one of `member`'s lines. */
  limited?(member: Member): void;
  /** A login was tried. */
  login?(member: Member, result: LoginResult): void;
  /** The time in milliseconds. */
  now(): number;
}

/** Chat's door: see the top of this file. */
export class ChatDoor {
  #options: DoorOptions;
  #buckets = new WeakMap<Member, { tokens: number; at: number }>();
  #failures = new WeakMap<Member, number>();
  /** Failed logins by address: how many, since when. */
  #byAddress = new Map<string, { count: number; since: number }>();
  /** Logins admitted here, not applied yet (or applied). */
  #admitted = new WeakSet<Member>();
  /**
   * `/protocol` as admitted here: the lines after it read as it says, even
   * before every relay has applied it.
   */
  #json = new WeakMap<Member, boolean>();

  constructor(options: DoorOptions) {
    this.#options = options;
  }

  admit(member: Member, line: Uint8Array): Admission | Promise<Admission> {
    let text = lineContent(line);
    if (text.length === 0) return { ok: true };
    const json = this.#json.get(member) ?? this.#options.json(member);
    const refuse = (message: string): Admission => ({
      ok: false,
      reply: this.#options.error(message, json),
    });
    let converted: Uint8Array | undefined;
    if (json && text[0] === 0x7b /* "{" */) {
      const plain = fromJson(decoder.decode(text));
      if (plain === undefined) {
        return refuse(
          'not a chat object: {"type":"message","text":…} or {"type":"command","command":"/…"}',
        );
      }
      converted = encoder.encode(`${plain}\n`);
      text = lineContent(converted);
      if (text.length === 0) return { ok: true, line: converted };
    }
    if (text[0] === 0) return refuse("a line may not start with NUL");
    if (!this.#token(member)) {
      this.#options.limited?.(member);
      return refuse(
        `too many lines: at most ${this.#options.rate} a second; line not sent`,
      );
    }
    const isCommand = text[0] === 0x2f && text[1] !== 0x2f;
    const [command = "", name, password, ...extra] = isCommand
      ? decoder.decode(text).trim().split(/\s+/)
      : [];
    const verb = command.toLowerCase();
    const users = this.#options.users;
    // `/nick NAME PASSWORD` logs in where names are registered; elsewhere a
    // name with a space in it gets /nick's usage.
    const nickLogin = verb === "/nick" && password !== undefined &&
      users !== undefined;
    if (verb === "/login" || nickLogin) {
      if (name === undefined || password === undefined || extra.length > 0) {
        return refuse(`usage: ${verb} NAME PASSWORD`);
      }
      return this.#login(member, name, password, refuse);
    }
    const inside = this.#admitted.has(member) || this.#options.loggedIn(member);
    if (this.#options.requireLogin && !inside) {
      if (verb !== "/help" && verb !== "/quit") {
        return refuse("log in first: /login NAME PASSWORD");
      }
    }
    const protocol = verb === "/protocol" ? name?.toLowerCase() : undefined;
    if (protocol === "json" || protocol === "text") {
      this.#json.set(member, protocol === "json");
    }
    if (verb === "/nick" && name !== undefined && users !== undefined) {
      const registered = users.registered(name);
      if (registered !== undefined) {
        return refuse(
          `${registered} is registered: /login ${registered} PASSWORD`,
        );
      }
    }
    return converted === undefined
      ? { ok: true }
      : { ok: true, line: converted };
  }

  /** Flood control: a token bucket of `rate` lines a second. */
  #token(member: Member): boolean {
    const { rate } = this.#options;
    if (rate === Infinity) return true;
    const now = this.#options.now();
    let bucket = this.#buckets.get(member);
    if (bucket === undefined) {
      bucket = { tokens: rate, at: now };
      this.#buckets.set(member, bucket);
    }
    bucket.tokens = Math.min(
      rate,
      bucket.tokens + (now - bucket.at) * rate / 1000,
    );
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens--;
    return true;
  }

  async #login(
    member: Member,
    name: string,
    password: string,
    refuse: (message: string) => Admission,
  ): Promise<Admission> {
    const { users } = this.#options;
    if (users === undefined || users.size === 0) {
      return refuse("nobody is registered here: /nick NAME takes a name");
    }
    const address = addressOf(member.peer);
    const now = this.#options.now();
    let tried = this.#byAddress.get(address);
    if (tried !== undefined && now - tried.since > ADDRESS_WINDOW_MS) {
      this.#byAddress.delete(address);
      tried = undefined;
    }
    if (
      (this.#failures.get(member) ?? 0) >= FAILURES_PER_CONNECTION ||
      (tried?.count ?? 0) >= FAILURES_PER_ADDRESS
    ) {
      this.#options.login?.(member, "refused");
      return refuse("too many failed logins: try again later");
    }
    const found = await users.check(name, password);
    if (found === undefined) {
      this.#failures.set(member, (this.#failures.get(member) ?? 0) + 1);
      if (tried === undefined) {
        if (this.#byAddress.size >= ADDRESSES_KEPT) this.#forget(now);
        this.#byAddress.set(address, { count: 1, since: now });
      } else tried.count++;
      this.#options.login?.(member, "failed");
      await new Promise((resolve) =>
        setTimeout(resolve, this.#options.failureDelayMs)
      );
      return refuse(
        `login failed for ${replaceControls(name.slice(0, 32))}`,
      );
    }
    this.#options.login?.(member, "ok");
    this.#admitted.add(member);
    return { ok: true, line: encoder.encode(`${LOGIN_MARK}${found}\n`) };
  }

  /** Drops the addresses whose minute is over (the oldest come first). */
  #forget(now: number): void {
    for (const [address, tried] of this.#byAddress) {
      if (now - tried.since <= ADDRESS_WINDOW_MS) return;
      this.#byAddress.delete(address);
    }
  }
}

/**
 * A JSON client's object as the line a text client would type: a message
 * (`//` before one that starts with `/`) or a command; undefined if it is
 * neither.
 */
function fromJson(text: string): string | undefined {
  let object: { type?: unknown; text?: unknown; command?: unknown };
  try {
    object = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (object?.type === "message" && typeof object.text === "string") {
    const line = object.text.replace(/[\r\n]+/g, " ");
    return line.startsWith("/") ? `/${line}` : line;
  }
  if (
    object?.type === "command" && typeof object.command === "string" &&
    object.command.startsWith("/") && !/[\r\n]/.test(object.command)
  ) {
    return object.command;
  }
  return undefined;
}

/** The address of a peer `HOST:PORT` (`[::1]:PORT`), without its port. */
function addressOf(peer: string): string {
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(peer);
  if (bracketed !== null) return bracketed[1];
  const colon = peer.lastIndexOf(":");
  return colon === -1 ? peer : peer.slice(0, colon);
}
