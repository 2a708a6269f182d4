// Private: the page a --websocket listener serves at `/` (plain HTML, CSS
// and a module script in ./page/, no build step), read once from beside
// this module: from the disk, or over HTTP when the module came from a
// registry. Not exported from mod.ts.

/** The page's files by path: the file's name and its content type. */
const FILES: Record<string, [string, string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/page.js": ["page.js", "text/javascript; charset=utf-8"],
  "/page.css": ["page.css", "text/css; charset=utf-8"],
};

/** Nothing from elsewhere: its own files, and its own WebSocket. */
const HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; " +
    "form-action 'none'",
  "x-content-type-options": "nosniff",
  "cache-control": "no-cache",
};

const loaded = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();

/** Whether `path` is one of the page's files. */
export function isPagePath(path: string): boolean {
  return path in FILES;
}

/** The response for the page's file at `path` (see isPagePath). */
export async function pageResponse(path: string): Promise<Response> {
  const [name, type] = FILES[path];
  let body = loaded.get(name);
  if (body === undefined) {
    body = read(new URL(`./page/${name}`, import.meta.url));
    loaded.set(name, body);
    body.catch(() => loaded.delete(name)); // Tried again next time.
  }
  try {
    return new Response(await body, {
      headers: { "content-type": type, ...HEADERS },
    });
  } catch (error) {
    return new Response(`The page cannot be read: ${error}\n`, {
      status: 500,
    });
  }
}

async function read(url: URL): Promise<Uint8Array<ArrayBuffer>> {
  if (url.protocol === "file:") return await Deno.readFile(url);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}
