// Relays without connections, for tests of the relay and its buses: a
// member whose lines are kept, and a chat relay on a given bus.

import { type ChatOptions, ChatRules } from "../lib/relay/chat.ts";
import { type Bus, type Member, Relay } from "../lib/relay/relay.ts";

const decoder = new TextDecoder();

/** A member whose lines are kept, as a connection's queue would send them. */
export function member(
  peer: string,
  certName?: string,
): Member & { lines: string[] } {
  const lines: string[] = [];
  return {
    peer,
    certName,
    lines,
    name: "",
    room: "",
    quitting: false,
    out: {
      post(line) {
        lines.push(decoder.decode(line).trimEnd());
        return true;
      },
      seal() {},
    },
    dropQueueFull() {},
  };
}

/**
 * A chat relay (5 lines of history) on `bus`, that names members by their
 * certificates with `certNames`, with `more` of chat's options.
 */
export function chatRelay(
  bus: Bus,
  certNames = false,
  more: Partial<ChatOptions> = {},
): Relay {
  return new Relay({
    rules: (fanout) =>
      new ChatRules(fanout, { history: 5, certNames, ...more }),
    linesPerRound: 100,
    bytesPerRound: 1 << 20,
    bus,
  });
}
