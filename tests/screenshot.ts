// Makes docs/images/websocket-chat.png, the page of --websocket in a chat
// with a browser, another browser and a TCP client, with the browser the
// tests drive (tests/_browser.ts): `deno task screenshot`.

import { serveEcho } from "../mod.ts";
import { LineClient } from "./_helpers.ts";
import { launchBrowser, logLines, openPage, submit } from "./_browser.ts";

const out = Deno.args[0] ?? "docs/images/websocket-chat.png";
await using server = serveEcho({
  port: 0,
  mode: "chat",
  websocket: { port: 0 },
  gracePeriod: 0,
});
await server.ready;
const url = `http://127.0.0.1:${server.websocketAddr!.port}/`;
await using chromium = await launchBrowser();
const alice = await openPage(chromium.browser, url);
const bob = await openPage(chromium.browser, url);
await submit(alice, "#name", "alice");
await submit(bob, "#name", "bob");
await using carol = await LineClient.connect(server.addr.port);
await carol.send("/nick carol\n");
await logLines(alice, /is now carol$/, 1);
await submit(alice, "#line", "hi all, from a browser");
await logLines(alice, /^<alice> /, 1);
await carol.send("hello from nc, on TCP\n");
await logLines(alice, /^<carol> /, 1);
await submit(bob, "#line", "and from another tab");
await logLines(alice, /^<bob> /, 1);
await alice.bringToFront();
await alice.type("#line", "typing…");
await alice.screenshot({ path: out });
console.log(`Wrote ${out}`);
