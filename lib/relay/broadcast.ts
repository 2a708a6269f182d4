// Private: broadcast mode's rules: every line, unchanged, to every member,
// the sender included. Not exported from mod.ts.

import type { Fanout, RelayRules } from "./relay.ts";

/** Makes the rules of `broadcast` mode for a relay. */
export function broadcastRules(fanout: Fanout): RelayRules {
  const nothing = () => {};
  return {
    noticeBytes: 0,
    lineBytes: (line) => line.length,
    join: nothing,
    welcome: nothing,
    leave: nothing,
    farewell: nothing,
    line(_member, line) {
      fanout.postAll(fanout.everyone, line);
    },
  };
}
