// Private: what chat tells its members, as events (who said what, who came
// and went, the answers to commands), and how an event reads as a line of
// text, for terminals and `nc`. ChatRules says events; only this file
// knows their wording. Free of I/O. Not exported from mod.ts.

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
  | { type: "message"; from: string; text: string }
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
  | { type: "error"; text: string };

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
  }
}
