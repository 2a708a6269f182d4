// Private: files between chat's members, as chat's rules see them: offers
// (`/offer`, which our interactive client's `/send NAME PATH` sends with the
// file's size and SHA-256), their answers (`/accept ID [OFFSET]`,
// `/reject ID`, `/done ID ok|failed`), which clients can take files
// (`/caps files`, which our interactive client says after the welcome),
// and the tickets that let the two clients onto the file desk
// (lib/files/desk.ts), which moves the bytes. Applied in the relay's one
// order like every other command, so that every instance of a cluster
// knows the same offers. Free of I/O. Not exported from mod.ts.

import { safeText } from "../_text.ts";
import type { TicketMaker } from "../files/desk.ts";
import { isOfferId } from "../files/ticket.ts";
import type { ChatEvent } from "./chat_render.ts";
import type { Member } from "./relay.ts";

const encoder = new TextEncoder();

/** Offers one member may have open at once. */
export const OFFERS_PER_MEMBER = 10;
/** Offers open at once, in all. */
export const MAX_OFFERS = 1000;
/** The longest file name offered, in characters. */
const MAX_FILE_NAME = 255;
const NO_FILES_CLIENT =
  "your client cannot take files: our interactive client can (deno task client -i)";

/** How chat's rules serve files. */
export interface FilesOptions {
  /** The largest file that may be offered, in bytes; 0 when files are off. */
  maxBytes: number;
  /** Makes the tickets; undefined when this server moves no files. */
  tickets?: TicketMaker;
  /** Why files are off, when they are. */
  off?: string;
  /** Closes what moves the bytes (the desk), once the relay is done. */
  close?(): Promise<void>;
}

/** What chat's rules lend the file part: how to talk and find names. */
export interface FilesHost {
  /** Tells `member` alone, as it reads chat. */
  say(member: Member, event: ChatEvent, json?: boolean): void;
  /** The member called `name` (any case), if any. */
  byName(name: string): Member | undefined;
  /** The member called `name`, or `ERR no such user` to `member`. */
  user(member: Member, name: string): Member | undefined;
}

interface Offer {
  id: string;
  from: Member;
  /** The receiver's name as the sender gave it (matched in any case). */
  to: string;
  name: string;
  size: number;
  sha256: string;
  attempt: number;
}

/** What {@linkcode ChatFiles} keep, as plain data (see ChatRules.save). */
export interface FilesState {
  next: number;
  capable: string[];
  /** Id, sender's key, receiver's name, file name, size, SHA-256, attempt. */
  offers: [string, string, string, string, number, string, number][];
}

/** Offers, answers and tickets: see the top of this file. */
export class ChatFiles {
  #options: FilesOptions;
  #host: FilesHost;
  #offers = new Map<string, Offer>();
  #capable = new Set<Member>();
  #next = 1;

  constructor(options: FilesOptions, host: FilesHost) {
    this.#options = options;
    this.#host = host;
  }

  /** Whether `member`'s client said it takes files. */
  capable(member: Member): boolean {
    return this.#capable.has(member);
  }

  /**
   * Runs a file command (`/caps`, `/offer`, `/accept`, `/reject`, `/done`);
   * `false` when `verb` is none of them.
   */
  command(
    member: Member,
    verb: string,
    args: string[],
    input: string,
  ): boolean {
    switch (verb) {
      case "/caps":
        this.#caps(member, args);
        return true;
      case "/offer":
        this.#offer(member, input);
        return true;
      case "/accept":
        this.#accept(member, args);
        return true;
      case "/reject":
        this.#reject(member, args);
        return true;
      case "/done":
        this.#done(member, args, input);
        return true;
      default:
        return false;
    }
  }

  /** `member` has a name now: it hears of the offers waiting for it. */
  named(member: Member): void {
    for (const offer of this.#offers.values()) {
      if (offer.from === member || !this.#isFor(offer, member)) continue;
      this.#tellOffer(offer, member);
    }
  }

  /** `member` left: its offers are off, and it no longer takes files. */
  left(member: Member): void {
    this.#capable.delete(member);
    for (const offer of [...this.#offers.values()]) {
      if (offer.from !== member) continue;
      this.#end(offer, "cancelled", `${member.name} left`);
    }
  }

  save(keyOf: (member: Member) => string): FilesState {
    return {
      next: this.#next,
      capable: [...this.#capable].map(keyOf),
      offers: [...this.#offers.values()].map((o) => [
        o.id,
        keyOf(o.from),
        o.to,
        o.name,
        o.size,
        o.sha256,
        o.attempt,
      ]),
    };
  }

  load(state: FilesState, memberOf: (key: string) => Member): void {
    this.#next = state.next;
    for (const key of state.capable) this.#capable.add(memberOf(key));
    for (const [id, from, to, name, size, sha256, attempt] of state.offers) {
      this.#offers.set(id, {
        id,
        from: memberOf(from),
        to,
        name,
        size,
        sha256,
        attempt,
      });
    }
  }

  #error(member: Member, text: string): void {
    this.#host.say(member, { type: "error", text });
  }

  #caps(member: Member, args: string[]): void {
    if (args.length !== 1 || args[0].toLowerCase() !== "files") {
      return this.#error(member, "usage: /caps files");
    }
    const files = this.#options.tickets !== undefined &&
      this.#options.maxBytes > 0;
    if (files) this.#capable.add(member);
    this.#host.say(member, {
      type: "caps",
      files,
      maxBytes: files ? this.#options.maxBytes : 0,
    }, true);
    if (files) this.named(member);
  }

  #offer(member: Member, input: string): void {
    const { maxBytes, tickets, off } = this.#options;
    if (tickets === undefined || maxBytes === 0) {
      return this.#error(
        member,
        `this server takes no files${off === undefined ? "" : ` (${off})`}`,
      );
    }
    if (!this.#capable.has(member)) {
      return this.#error(member, NO_FILES_CLIENT.replace("take", "send"));
    }
    const parts = /^\S+\s+(\S+)\s+(\d{1,16})\s+([0-9a-fA-F]{64})\s+(.+)$/s
      .exec(input.trim());
    if (parts === null) {
      return this.#error(member, "usage: /offer NAME SIZE SHA256 FILENAME");
    }
    const [, to, digits, hash, fileName] = parts;
    const name = safeText(encoder.encode(fileName.trim())).slice(
      0,
      MAX_FILE_NAME,
    );
    const size = Number(digits);
    const target = this.#host.user(member, to);
    if (target === undefined) return;
    if (target === member) {
      return this.#error(member, "you cannot send a file to yourself");
    }
    if (size > maxBytes) {
      return this.#error(
        member,
        `${name} is ${size} bytes, over this server's limit of ${maxBytes} (--max-file-bytes)`,
      );
    }
    let mine = 0;
    for (const o of this.#offers.values()) if (o.from === member) mine++;
    if (mine >= OFFERS_PER_MEMBER || this.#offers.size >= MAX_OFFERS) {
      return this.#error(
        member,
        `too many open offers (at most ${OFFERS_PER_MEMBER} each): /reject one of yours first`,
      );
    }
    const offer: Offer = {
      id: `f${this.#next++}`,
      from: member,
      to: target.name,
      name,
      size,
      sha256: hash.toLowerCase(),
      attempt: 0,
    };
    if (!this.#capable.has(target)) {
      // The receiver hears of it, and why it cannot take it.
      this.#tellOffer(offer, target);
      return this.#error(
        member,
        `${target.name}'s client cannot take files; nothing offered`,
      );
    }
    this.#offers.set(offer.id, offer);
    this.#host.say(member, {
      type: "file-offered",
      id: offer.id,
      to: target.name,
      name,
      size,
      sha256: offer.sha256,
    }, true);
    this.#tellOffer(offer, target);
  }

  #tellOffer(offer: Offer, member: Member): void {
    this.#host.say(member, {
      type: "file-offer",
      id: offer.id,
      from: offer.from.name,
      name: offer.name,
      size: offer.size,
      sha256: offer.sha256,
      receivable: this.#capable.has(member),
    }, this.#capable.has(member));
  }

  #isFor(offer: Offer, member: Member): boolean {
    return member.name.toLowerCase() === offer.to.toLowerCase();
  }

  /** The offer `id` that `member` may answer, or why not (said). */
  #find(member: Member, id: string | undefined, usage: string) {
    if (id === undefined || !isOfferId(id)) {
      this.#error(member, `usage: ${usage}`);
      return undefined;
    }
    const offer = this.#offers.get(id);
    if (
      offer === undefined ||
      (!this.#isFor(offer, member) && offer.from !== member)
    ) {
      this.#error(member, `no such offer: ${id}`);
      return undefined;
    }
    return offer;
  }

  #accept(member: Member, args: string[]): void {
    const usage = "/accept ID [OFFSET]";
    const offer = this.#find(member, args[0], usage);
    if (offer === undefined) return;
    if (offer.from === member) {
      return this.#error(member, `${offer.id} is your own offer`);
    }
    if (!this.#capable.has(member)) return this.#error(member, NO_FILES_CLIENT);
    const text = args[1] ?? "0";
    const offset = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
    if (args.length > 2 || !(offset <= offer.size)) {
      return this.#error(
        member,
        `usage: ${usage} (OFFSET: 0 to ${offer.size}, the bytes you have)`,
      );
    }
    offer.attempt++;
    const tickets = this.#options.tickets!;
    const transfer = {
      id: offer.id,
      attempt: offer.attempt,
      offset,
      size: offer.size,
    };
    const get = tickets.ticket({ ...transfer, side: "get" });
    const put = tickets.ticket({ ...transfer, side: "put" });
    this.#host.say(offer.from, {
      type: "file-put",
      id: offer.id,
      to: member.name,
      name: offer.name,
      size: offer.size,
      attempt: offer.attempt,
      offset,
      ...put,
    }, true);
    this.#host.say(member, {
      type: "file-get",
      id: offer.id,
      from: offer.from.name,
      name: offer.name,
      size: offer.size,
      sha256: offer.sha256,
      attempt: offer.attempt,
      offset,
      ...get,
    }, true);
  }

  #reject(member: Member, args: string[]): void {
    const offer = this.#find(member, args[0], "/reject ID");
    if (offer === undefined) return;
    if (args.length > 1) return this.#error(member, "usage: /reject ID");
    if (offer.from === member) this.#end(offer, "withdrawn", null);
    else this.#end(offer, "rejected", null);
  }

  #done(member: Member, args: string[], input: string): void {
    const usage = "/done ID ok|failed REASON";
    const offer = this.#find(member, args[0], usage);
    if (offer === undefined) return;
    if (!this.#isFor(offer, member)) {
      return this.#error(member, `usage: ${usage}`);
    }
    const verdict = args[1]?.toLowerCase();
    if (verdict === "ok" && args.length === 2) {
      return this.#end(offer, "received", null);
    }
    const reason = /^\S+\s+\S+\s+\S+\s+(.+)$/s.exec(input.trim())?.[1];
    if (verdict !== "failed" || reason === undefined) {
      return this.#error(member, `usage: ${usage}`);
    }
    this.#end(
      offer,
      "failed",
      safeText(encoder.encode(reason)).slice(0, 200),
    );
  }

  /** Ends `offer`, and tells its two sides (the receiver if it is here). */
  #end(
    offer: Offer,
    result: "received" | "failed" | "rejected" | "withdrawn" | "cancelled",
    reason: string | null,
  ): void {
    this.#offers.delete(offer.id);
    const event: ChatEvent = {
      type: "file-end",
      id: offer.id,
      name: offer.name,
      from: offer.from.name,
      to: offer.to,
      size: offer.size,
      result,
      reason,
    };
    if (result !== "cancelled") {
      this.#host.say(offer.from, event, this.#capable.has(offer.from));
    }
    const receiver = this.#host.byName(offer.to);
    if (receiver !== undefined && receiver !== offer.from) {
      this.#host.say(receiver, event, this.#capable.has(receiver));
    }
  }
}
