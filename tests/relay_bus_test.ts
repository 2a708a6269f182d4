// The relay's bus seam (lib/relay/relay.ts): two relays that apply one
// shared, ordered log of events behave as one chat, with the chat rules
// unchanged. This is how relays on several machines will share a Redis
// stream: each applies every event; a member of another relay is a stand-in
// whose lines are delivered by its own relay.

import assert from "node:assert/strict";
import type { Bus, Member, RelayEvent } from "../lib/relay/relay.ts";
import { chatRelay, member } from "./_relay.ts";

const encoder = new TextEncoder();

/**
 * One ordered log shared by several relays. Each relay gets its own bus;
 * an event about another relay's member reaches it with a stand-in for that
 * member (same peer, a queue that keeps nothing), as over a network.
 */
function sharedLog(count: number): Bus[] {
  const buses: Bus[] = [];
  const standIns: Map<Member, Member>[] = [];
  const owner = new Map<Member, number>();
  const view = (to: number, m: Member): Member => {
    if (owner.get(m) === to) return m;
    let standIn = standIns[to].get(m);
    if (standIn === undefined) {
      // Its relay delivers its lines; what reaches the stand-in is not sent.
      standIn = member(m.peer);
      standIns[to].set(m, standIn);
    }
    return standIn;
  };
  const log: { from: number; event: RelayEvent }[] = [];
  let delivering = false;
  const drain = () => {
    if (delivering) return;
    delivering = true;
    while (log.length > 0) {
      const { from, event } = log.shift()!;
      buses.forEach((bus, to) => {
        if (event.t === "announce") return bus.deliver!(event);
        const translated = { ...event, member: view(to, event.member) };
        // Only the sender's relay reports the line delivered.
        if (to !== from && translated.t === "line") {
          translated.delivered = undefined;
        }
        bus.deliver!(translated as RelayEvent);
      });
    }
    delivering = false;
  };
  for (let i = 0; i < count; i++) {
    standIns.push(new Map());
    buses.push({
      deliver: undefined,
      publish(event) {
        if (event.t === "join") owner.set(event.member, i);
        log.push({ from: i, event });
        drain();
        return true;
      },
    });
  }
  return buses;
}

Deno.test("two relays on one ordered log are one chat: unique names, /who, lines and notices everywhere", async () => {
  const [busA, busB] = sharedLog(2);
  const a = chatRelay(busA);
  const b = chatRelay(busB);
  const alice = member("a:1");
  const bob = member("b:1");
  a.join(alice);
  b.join(bob);
  await Promise.all([a.idle(), b.idle()]);
  // Names come from the one order: the first join is user1 on both.
  assert.equal(alice.name, "user1");
  assert.equal(bob.name, "user2");

  await a.submit(alice, [encoder.encode("/nick alice\n")]);
  // The same name from the other relay is taken, cluster-wide.
  await b.submit(bob, [encoder.encode("/nick alice\n")]);
  await b.submit(bob, [encoder.encode("/nick bob\n")]);
  await b.submit(bob, [encoder.encode("/who\n")]);
  await a.submit(alice, [encoder.encode("hello from a\n")]);
  await Promise.all([a.idle(), b.idle()]);

  assert.ok(bob.lines.includes("ERR name taken: alice"), bob.lines.join("\n"));
  assert.ok(
    bob.lines.includes("* in lobby (2): alice, bob"),
    bob.lines.join("\n"),
  );
  assert.ok(bob.lines.includes("<alice> hello from a"));
  assert.ok(alice.lines.includes("* user2 is now bob"));
  // Each line once, on each side.
  assert.equal(
    alice.lines.filter((l) => l === "<alice> hello from a").length,
    1,
  );
  assert.equal(bob.lines.filter((l) => l === "<alice> hello from a").length, 1);

  // A newcomer on either relay gets the room's history.
  const carol = member("b:2");
  b.join(carol);
  await Promise.all([a.idle(), b.idle()]);
  assert.ok(
    carol.lines.includes("<alice> hello from a"),
    carol.lines.join("\n"),
  );
  assert.ok(alice.lines.includes(`* ${carol.name} joined lobby`));

  // Leaving is seen everywhere.
  a.leave(alice);
  await Promise.all([a.idle(), b.idle()]);
  assert.ok(bob.lines.includes("* alice left lobby"));
  assert.equal(a.size, 2);
  assert.equal(b.size, 2);
});
