// The --websocket page in a real browser: Debian's Chromium, headless,
// driven by puppeteer-core. Two pages and a TCP client in one chat room see
// each other's lines in one order; an echo of text and of every byte value
// comes back exact; the page reconnects after the server restarts; hostile
// text stays text; every field has its label.

import assert from "node:assert/strict";
import { serveEcho } from "../mod.ts";
import { LineClient } from "./_helpers.ts";
import {
  connected,
  launchBrowser,
  logLines,
  logOf,
  openPage,
  submit,
  WAIT,
} from "./_browser.ts";

/** The page's globals that functions run in it use (no DOM types here). */
declare const document: {
  getElementById(id: string): { dataset: Record<string, string> } | null;
};

/** A server in `mode` with a WebSocket listener, and its page's URL. */
async function serveWithPage(
  mode: "echo" | "chat",
  websocketPort = 0,
) {
  const server = serveEcho({
    port: 0,
    mode,
    websocket: { port: websocketPort },
    // A shutdown ends the pages' WebSockets at once (politely).
    gracePeriod: 0,
  });
  await server.ready;
  return { server, page: `http://127.0.0.1:${server.websocketAddr!.port}/` };
}

Deno.test("two pages and a TCP client in one chat room see each other's lines, in one order", async () => {
  const { server, page: url } = await serveWithPage("chat");
  await using _server = server;
  await using chromium = await launchBrowser();
  const alice = await openPage(chromium.browser, url);
  const bob = await openPage(chromium.browser, url);
  assert.equal(await alice.$eval("#mode", (e) => e.textContent), "chat mode");
  assert.equal(await alice.$eval("#chat", (e) => e.hidden), false);
  await submit(alice, "#name", "alice");
  await logLines(alice, /is now alice$/, 1);
  await submit(bob, "#name", "bob");
  await logLines(bob, /is now bob$/, 1);
  await using carol = await LineClient.connect(server.addr.port);
  await carol.send("/nick carol\n");
  await carol.line(/is now carol$/);
  await submit(alice, "#line", "hello from alice's browser");
  await submit(bob, "#line", "and from bob's");
  await carol.send("carol here, on TCP\n");
  const said = /^<(alice|bob|carol)> /;
  const order =
    (await carol.until((lines) =>
      lines.filter((l) => said.test(l)).length === 3
    )).filter((l) => said.test(l));
  assert.deepEqual(await logLines(alice, said, 3), order);
  assert.deepEqual(await logLines(bob, said, 3), order);
  assert.deepEqual([...order].sort(), [
    "<alice> hello from alice's browser",
    "<bob> and from bob's",
    "<carol> carol here, on TCP",
  ]);
  // What a page sent is in its log too, marked as sent.
  assert.ok((await logOf(alice)).includes("hello from alice's browser"));
  // A room of one's own.
  await submit(bob, "#room", "kitchen");
  await logLines(bob, /^\* bob joined kitchen$/, 1);
});

Deno.test("echo from the browser: text and every byte value come back exact, and typed", async () => {
  const { server, page: url } = await serveWithPage("echo");
  await using _server = server;
  await using chromium = await launchBrowser();
  const page = await openPage(chromium.browser, url);
  assert.equal(await page.$eval("#chat", (e) => e.hidden), true);
  const echoed = await page.evaluate(async () => {
    const socket = new WebSocket(new URL("/ws", location.href).href
      .replace(/^http/, "ws"));
    socket.binaryType = "arraybuffer";
    const replies: (string | number[])[] = [];
    const done = new Promise<void>((resolve) =>
      socket.onmessage = (event) => {
        replies.push(
          typeof event.data === "string"
            ? event.data
            : [...new Uint8Array(event.data)],
        );
        if (replies.length === 2) resolve();
      }
    );
    await new Promise((resolve) => socket.onopen = resolve);
    socket.send("héllo ✓ 𝄞");
    socket.send(Uint8Array.from({ length: 256 }, (_, i) => i));
    await done;
    socket.close();
    return replies;
  });
  assert.deepEqual(echoed, [
    "héllo ✓ 𝄞",
    Array.from({ length: 256 }, (_, i) => i),
  ]);
  // Through the page's own form, as text and as binary.
  await submit(page, "#line", "typed");
  await logLines(page, /^typed$/, 2);
  await page.click("#binary");
  await submit(page, "#line", "AB");
  assert.deepEqual(await logLines(page, /^binary, /, 1), [
    "binary, 2 bytes: 41 42",
  ]);
});

Deno.test("the page reconnects by itself once the server is back", async () => {
  const first = await serveWithPage("echo");
  const port = first.server.websocketAddr!.port;
  await using chromium = await launchBrowser();
  const page = await openPage(chromium.browser, first.page);
  await first.server.shutdown();
  await page.waitForFunction(
    () => document.getElementById("state")?.dataset.state === "closed",
    WAIT,
  );
  const second = await serveWithPage("echo", port);
  await using _server = second.server;
  await connected(page);
  await submit(page, "#line", "after the restart");
  await logLines(page, /^after the restart$/, 2);
});

Deno.test("hostile text stays text, and every field has a label", async () => {
  const { server, page: url } = await serveWithPage("chat");
  await using _server = server;
  await using chromium = await launchBrowser();
  const page = await openPage(chromium.browser, url);
  await using mallory = await LineClient.connect(server.addr.port);
  const hostile = `<img src=x onerror="document.title='owned'"><b>bold</b>`;
  await mallory.send(`${hostile}\n`);
  const [shown] = await logLines(page, /^<user2> /, 1);
  assert.equal(shown, `<user2> ${hostile}`);
  assert.equal(
    await page.$$eval("#log img, #log b", (found) => found.length),
    0,
  );
  assert.notEqual(await page.title(), "owned");
  const unlabelled = await page.$$eval(
    "input",
    (inputs) =>
      inputs.filter((i) => i.labels === null || i.labels.length === 0).map((
        i,
      ) => i.id),
  );
  assert.deepEqual(unlabelled, []);
  assert.equal(
    await page.$eval("#log", (e) => e.getAttribute("aria-live")),
    "polite",
  );
  assert.equal(
    await page.$eval("#state", (e) => e.getAttribute("role")),
    "status",
  );
});
