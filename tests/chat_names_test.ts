// Chat names from client certificates (lib/relay/chat.ts, `chatNames:
// "cert"`): the rules alone, on a relay with members that keep their
// lines. The native engine's part (the common name read from a verified
// certificate) is in tls_test.ts, and Redis carrying it in redis_test.ts.

import assert from "node:assert/strict";
import { certNamesConfig } from "../lib/relay/chat.ts";
import { localBus } from "../lib/relay/relay.ts";
import { chatRelay, member } from "./_relay.ts";

const line = (text: string) => [new TextEncoder().encode(`${text}\n`)];

Deno.test("a certificate's name is the member's, cannot change, and wins over a /nick", async () => {
  const relay = chatRelay(localBus(), true);
  const guest = member("127.0.0.1:1");
  relay.join(guest);
  await relay.submit(guest, line("/nick alice"));
  const alice = member("127.0.0.1:2", "alice");
  relay.join(alice);
  await relay.idle();
  assert.equal(alice.name, "alice");
  assert.equal(
    alice.lines[0],
    "* welcome, you are alice (from your certificate); /help lists the commands",
  );
  // The holder by /nick is told, and renamed before alice is announced.
  assert.equal(guest.name, "user3");
  assert.deepEqual(guest.lines.slice(-3), [
    "* alice belongs to a client with its certificate",
    "* alice is now user3",
    "* alice joined lobby",
  ]);

  await relay.submit(alice, line("/nick mallory"));
  await relay.submit(guest, line("/nick alice"));
  await relay.submit(alice, line("/who"));
  assert.equal(alice.lines.at(-2), "ERR your name comes from your certificate");
  assert.equal(alice.lines.at(-1), "* in lobby (2): user3, alice");
  assert.equal(guest.lines.at(-1), "ERR name taken: alice");

  // A second client with the same certificate, and one whose CN is no name.
  const again = member("127.0.0.1:3", "Alice");
  const odd = member("127.0.0.1:4", "Alice <root>");
  relay.join(again);
  relay.join(odd);
  await relay.idle();
  assert.match(
    again.lines[0],
    /^\* welcome, you are user4 \(alice is here already, with a certificate\);/,
  );
  assert.match(
    odd.lines[0],
    /^\* welcome, you are user5 \(your certificate's name "Alice <root>" is not a chat name\);/,
  );
  // The unverified ones may /nick; the name is free once alice is gone.
  relay.leave(alice);
  await relay.submit(again, line("/nick alice"));
  assert.equal(again.name, "alice");
  assert.equal(again.lines.at(-1), "* user4 is now alice");
});

Deno.test("without certNames a certificate's name is ignored", async () => {
  const relay = chatRelay(localBus());
  const alice = member("127.0.0.1:2", "alice");
  relay.join(alice);
  await relay.idle();
  assert.equal(alice.name, "user1");
  await relay.submit(alice, line("/nick bob"));
  assert.equal(alice.name, "bob");
});

Deno.test("chatNames is checked: a choice, chat mode, and clientCa", () => {
  assert.equal(certNamesConfig({}, "echo"), false);
  assert.equal(certNamesConfig({ chatNames: "auto" }, "chat"), false);
  assert.equal(
    certNamesConfig({ chatNames: "cert", clientCa: "PEM" }, "chat"),
    true,
  );
  assert.throws(() => certNamesConfig({ chatNames: "cn" }, "chat"), {
    name: "RangeError",
    message: "Cannot use chatNames: must be one of auto, cert, got cn",
  });
  assert.throws(
    () => certNamesConfig({ chatNames: "cert", clientCa: "PEM" }, "line"),
    { message: "Cannot use chatNames: names clients in chat mode only" },
  );
  assert.throws(() => certNamesConfig({ chatNames: "cert" }, "chat"), {
    name: "TypeError",
    message:
      "Cannot use chatNames: names clients by verified certificates only: give clientCa (--tls-client-ca)",
  });
});
