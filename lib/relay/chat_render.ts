// Private: what chat tells its members, as events (who said what, who came
// and went, the answers to commands), and how an event reads as a line of
// text, for terminals and `nc`. ChatRules says events; only this file
// knows their wording. Free of I/O. Not exported from mod.ts.

import type { Ticket } from "../files/ticket.ts";

/** Something chat tells one member, or a room. */
export type ChatEvent =
  | {
    type: "welcome";
    name: string;
    /** How a certificate named the member, or why it did not. */
    note?: string;
    /** Whether it must log in before anything else. */
    login: boolean;
  }
  | Said
  | { type: "action"; from: string; text: string }
  | { type: "join"; name: string; room: string }
  | { type: "leave"; name: string; room: string }
  | { type: "nick"; from: string; to: string }
  | {
    type: "private";
    from: string;
    to: string;
    text: string;
    /** The sender's copy (`[to NAME]`), or the receiver's (`[from NAME]`). */
    sent: boolean;
  }
  | { type: "who"; room: string; names: string[] }
  | { type: "rooms"; rooms: [string, number][]; total: number }
  | {
    type: "whois";
    name: string;
    /** Empty: in no room (not logged in yet). */
    room: string;
    since?: number;
    how: "certificate" | "login" | "none";
  }
  | { type: "help"; commands: string }
  | { type: "history"; room: string; lines: number }
  | { type: "login"; name: string }
  | { type: "elsewhere"; name: string }
  | { type: "claimed"; name: string }
  | { type: "already"; room: string }
  | { type: "bye" }
  | { type: "error"; text: string }
  | { type: "server"; text: string }
  | { type: "protocol"; protocol: Protocol }
  | FileEvent;

/** What chat tells of files (lib/relay/chat_files.ts). */
export type FileEvent =
  | {
    type: "caps";
    /** Whether the client may send and receive files here. */
    files: boolean;
    maxBytes: number;
  }
  | {
    type: "file-offer";
    id: string;
    from: string;
    name: string;
    size: number;
    sha256: string;
    /** Whether the receiver's client can take it. */
    receivable: boolean;
  }
  | {
    type: "file-offered";
    id: string;
    to: string;
    name: string;
    size: number;
    sha256: string;
  }
  /** With its ticket: where to send the bytes, and what lets them in. */
  | {
    type: "file-put";
    id: string;
    to: string;
    name: string;
    size: number;
    attempt: number;
    offset: number;
  } & Ticket
  /** With its ticket: where to get the bytes, and what lets them out. */
  | {
    type: "file-get";
    id: string;
    from: string;
    name: string;
    size: number;
    sha256: string;
    attempt: number;
    offset: number;
  } & Ticket
  | {
    type: "file-end";
    id: string;
    name: string;
    from: string;
    to: string;
    size: number;
    result: "received" | "failed" | "rejected" | "withdrawn" | "cancelled";
    reason: string | null;
  };

/** How a member reads what chat tells it: lines of text, or JSON. */
export type Protocol = "text" | "json";
export const PROTOCOLS = ["text", "json"] as const;

/** A line someone said in a room: what its history keeps. */
export interface Said {
  type: "message";
  room: string;
  from: string;
  text: string;
  /** When (ISO 8601), as the relay that applied it saw it. */
  ts: string;
}

const HOW = {
  certificate: "named by its certificate",
  login: "logged in",
  none: "not logged in",
};

/** `event` as a line of text, without its newline. */
export function textOf(event: ChatEvent): string {
  switch (event.type) {
    case "welcome":
      return `* welcome, you are ${event.name}${
        event.note === undefined ? "" : ` (${event.note})`
      }; ${
        event.login ? "log in: /login NAME PASSWORD; " : ""
      }/help lists the commands`;
    case "message":
      return `<${event.from}> ${event.text}`;
    case "action":
      return `* ${event.from} ${event.text}`;
    case "join":
      return `* ${event.name} joined ${event.room}`;
    case "leave":
      return `* ${event.name} left ${event.room}`;
    case "nick":
      return `* ${event.from} is now ${event.to}`;
    case "private":
      return event.sent
        ? `[to ${event.to}] ${event.text}`
        : `[from ${event.from}] ${event.text}`;
    case "who":
      return `* in ${event.room} (${event.names.length}): ${
        event.names.join(", ")
      }`;
    case "rooms": {
      const listed = event.rooms.map(([name, size]) => `${name} ${size}`);
      const more = event.total - event.rooms.length;
      return `* rooms (${event.total}): ${listed.join(", ")}${
        more > 0 ? `, and ${more} more` : ""
      }`;
    }
    case "whois":
      return `* ${event.name}: ${
        event.room === "" ? "in no room" : `in ${event.room}`
      }${
        event.since === undefined
          ? ""
          : ` since ${new Date(event.since).toISOString()}`
      }, ${HOW[event.how]}`;
    case "help":
      return `* commands: ${event.commands}; //text sends /text`;
    case "history":
      return event.lines === 0
        ? `* no history in ${event.room}`
        : `* the last ${event.lines} ${
          event.lines === 1 ? "line" : "lines"
        } of ${event.room}:`;
    case "login":
      return `* logged in as ${event.name}`;
    case "elsewhere":
      return `* ${event.name} logged in elsewhere`;
    case "claimed":
      return `* ${event.name} belongs to a client with its certificate`;
    case "already":
      return `* already in ${event.room}`;
    case "bye":
      return "* bye";
    case "error":
      return `ERR ${event.text}`;
    case "server":
      return `[server] ${event.text}`;
    case "protocol":
      return `* protocol ${event.protocol}`;
    default:
      return textOfFile(event);
  }
}

/** A file event as a line of text, without its newline. */
function textOfFile(event: FileEvent): string {
  switch (event.type) {
    case "caps":
      return event.files
        ? `* your client may send and receive files here, up to ${event.maxBytes} bytes: /send NAME PATH, /accept ID, /reject ID`
        : "* this server takes no files";
    case "file-offer":
      return event.receivable
        ? `* ${event.from} offers ${event.name} (${event.size} bytes, SHA-256 ${event.sha256}): /accept ${event.id} or /reject ${event.id}`
        : `* ${event.from} offers ${event.name} (${event.size} bytes), but your client cannot take files: our interactive client can (deno task client -i)`;
    case "file-offered":
      return `* offered ${event.name} (${event.size} bytes) to ${event.to} as ${event.id}; /reject ${event.id} withdraws it`;
    case "file-put":
      return `* ${event.to} accepted ${event.id}: sending ${event.name} from byte ${event.offset}`;
    case "file-get":
      return `* getting ${event.name} (${event.id}) from ${event.from}, from byte ${event.offset}`;
    case "file-end":
      switch (event.result) {
        case "received":
          return `* ${event.to} received ${event.name} (${event.id}): ${event.size} bytes, SHA-256 verified`;
        case "failed":
          return `* ${event.name} (${event.id}) from ${event.from} to ${event.to} failed: ${event.reason}`;
        case "rejected":
          return `* ${event.to} rejected ${event.name} (${event.id})`;
        case "withdrawn":
          return `* ${event.from} withdrew ${event.name} (${event.id})`;
        case "cancelled":
          return `* ${event.name} (${event.id}) from ${event.from} is off: ${event.reason}`;
      }
  }
}

/**
 * `event` as one JSON object (docs/chat-protocol.md): its fields, and
 * `ts`, when it happened (a line said keeps its own).
 */
export function jsonOf(event: ChatEvent): string {
  const ts = "ts" in event ? event.ts : new Date().toISOString();
  switch (event.type) {
    case "rooms":
      return JSON.stringify({
        type: "rooms",
        rooms: event.rooms.map(([name, members]) => ({ name, members })),
        total: event.total,
        ts,
      });
    case "whois": {
      const { since, ...rest } = event;
      return JSON.stringify({
        ...rest,
        since: since === undefined ? null : new Date(since).toISOString(),
        ts,
      });
    }
    case "welcome":
      return JSON.stringify({
        type: event.type,
        name: event.name,
        note: event.note ?? null,
        login: event.login,
        ts,
      });
    default:
      return JSON.stringify({ ...event, ts });
  }
}

/**
 * A line of the JSON protocol as text mode says it, for a person reading a
 * JSON session (our interactive client on a terminal); undefined when the
 * line is not one of chat's objects.
 */
export function textOfJson(line: string): string | undefined {
  try {
    const object = JSON.parse(line);
    if (typeof object?.type !== "string" || !(object.type in TYPES)) {
      return undefined;
    }
    const event = { ...object };
    if (event.type === "rooms") {
      event.rooms = object.rooms.map((r: { name: string; members: number }) => [
        r.name,
        r.members,
      ]);
    }
    if (event.type === "whois") {
      event.since = object.since === null
        ? undefined
        : Date.parse(object.since);
    }
    if (event.type === "welcome" && object.note === null) delete event.note;
    return textOf(event as ChatEvent);
  } catch {
    return undefined;
  }
}

/** Every type of event, for textOfJson. */
const TYPES: Record<ChatEvent["type"], true> = {
  welcome: true,
  message: true,
  action: true,
  join: true,
  leave: true,
  nick: true,
  private: true,
  who: true,
  rooms: true,
  whois: true,
  help: true,
  history: true,
  login: true,
  elsewhere: true,
  claimed: true,
  already: true,
  bye: true,
  error: true,
  server: true,
  protocol: true,
  caps: true,
  "file-offer": true,
  "file-offered": true,
  "file-put": true,
  "file-get": true,
  "file-end": true,
};

/**
 * What {@linkcode JsonLines} hands on: a whole line that starts with `{`
 * (`json`), another whole line (`line`), or part of a line let through
 * before its end came (`part`).
 */
export type LineKind = "json" | "line" | "part";

/**
 * Bytes that come in pieces, read as lines of text: a line that starts with
 * `{` is held until it is whole, so that it is read whole; everything else
 * goes on as it comes. `map` says what each piece becomes (without its
 * newline). Our interactive client's way of reading a chat.
 */
export class JsonLines {
  #map: (text: string, kind: LineKind) => string;
  #decoder = new TextDecoder();
  /** A line that starts with `{`, not complete yet. */
  #pending = "";
  /** The last piece ended inside a line that was let through. */
  #inLine = false;

  constructor(map: (text: string, kind: LineKind) => string) {
    this.#map = map;
  }

  /** What `chunk` (and what was held before it) becomes, now. */
  push(chunk: Uint8Array): string {
    let text = this.#pending + this.#decoder.decode(chunk, { stream: true });
    this.#pending = "";
    let out = "";
    while (text.length > 0) {
      const end = text.indexOf("\n");
      const whole = end !== -1;
      const line = whole ? text.slice(0, end) : text;
      text = whole ? text.slice(end + 1) : "";
      const object = !this.#inLine && line.startsWith("{");
      if (!whole && object) {
        this.#pending = line;
        break;
      }
      out += this.#map(
        line,
        object ? "json" : whole && !this.#inLine ? "line" : "part",
      );
      if (whole) out += "\n";
      this.#inLine = !whole;
    }
    return out;
  }

  /** What is still held, as it is: the input has ended. */
  end(): string {
    return this.#pending + this.#decoder.decode();
  }
}

/**
 * Turns the JSON protocol's lines into text mode's, and lets every other
 * byte through as it comes: what our interactive client shows a person.
 */
export function chatJsonAsText(): TransformStream<Uint8Array, Uint8Array> {
  const lines = new JsonLines((line, kind) =>
    kind === "json" ? textOfJson(line) ?? line : line
  );
  return new TransformStream({
    transform(chunk, controller) {
      const out = lines.push(chunk);
      if (out.length > 0) controller.enqueue(encoder.encode(out));
    },
    flush(controller) {
      const rest = lines.end();
      if (rest.length > 0) controller.enqueue(encoder.encode(rest));
    },
  });
}

const encoder = new TextEncoder();

/** `event` as the line a member reading `protocol` gets. */
export function lineOf(event: ChatEvent, protocol: Protocol): Uint8Array {
  const text = protocol === "json" ? jsonOf(event) : textOf(event);
  return encoder.encode(`${text}\n`);
}
