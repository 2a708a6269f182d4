// Debian's Chromium, headless, driven by puppeteer-core, for the tests of
// the --websocket page (and the screenshot in docs/websocket.md). Chromium
// runs with a fresh profile and without its background connections (this
// machine's network is closed to it).

import puppeteer, { type Browser, type Page } from "npm:puppeteer-core@24";

/** The page's globals that functions run in it use (no DOM types here). */
declare const document: {
  getElementById(id: string): { dataset: Record<string, string> } | null;
  querySelectorAll(selector: string): Iterable<{ textContent: string | null }>;
};

/**
 * How the page is watched: every 50 ms (not on animation frames, which a
 * page in the background does not get), for 15 s at most.
 */
export const WAIT = { polling: 50, timeout: 15_000 };

/** Where Debian puts Chromium (.ci/run installs it when missing). */
export const CHROMIUM = "/usr/bin/chromium";

/** A headless Chromium, closed (with its profile) on dispose. */
export async function launchBrowser(): Promise<
  { browser: Browser } & AsyncDisposable
> {
  const profile = await Deno.makeTempDir({ prefix: "tcp-echo-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    userDataDir: profile,
    // A call that hangs fails in 30 s, not puppeteer's 180.
    protocolTimeout: 30_000,
    args: [
      "--no-sandbox",
      "--headless=new",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    browser,
    async [Symbol.asyncDispose]() {
      // Disconnected first, then closed (its process group killed, and
      // waited for): puppeteer waits on a timer for the frames of a page
      // whose session ends while the browser is still connected.
      await browser.disconnect();
      await browser.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}

/** A page of `browser` at `url`, once its WebSocket is open. */
export async function openPage(browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 640 });
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(url);
  await connected(page);
  if (errors.length > 0) throw new Error(errors.join("\n"));
  return page;
}

/** Resolves once the page says its WebSocket is open. */
export async function connected(page: Page): Promise<void> {
  await page.waitForFunction(
    () => document.getElementById("state")?.dataset.state === "open",
    WAIT,
  );
}

/** The texts of the page's log entries. */
export function logOf(page: Page): Promise<string[]> {
  return page.$$eval("#log li", (items) => items.map((i) => i.textContent!));
}

/** Resolves the page's log once `count` entries match `pattern`. */
export async function logLines(
  page: Page,
  pattern: RegExp,
  count: number,
): Promise<string[]> {
  await page.waitForFunction(
    (source: string, flags: string, n: number) => {
      const re = new RegExp(source, flags);
      return [...document.querySelectorAll("#log li")]
        .filter((i) => re.test(i.textContent ?? "")).length >= n;
    },
    WAIT,
    pattern.source,
    pattern.flags,
    count,
  );
  return (await logOf(page)).filter((line) => pattern.test(line));
}

/** Types `text` into the field `selector` and submits its form (Enter). */
export async function submit(
  page: Page,
  selector: string,
  text: string,
): Promise<void> {
  // Only the page in front gets the keyboard.
  await page.bringToFront();
  await page.click(selector, { count: 3 });
  await page.type(selector, text);
  await page.keyboard.press("Enter");
}
