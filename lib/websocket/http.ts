// Private: the little HTTP/1.1 a WebSocket listener speaks, free of I/O:
// request heads read from bytes cut anywhere (lines end with CRLF, or LF
// alone as RFC 9112 allows), checked, and bounded in size; responses as
// bytes; and the opening handshake of RFC 6455 (4.2). Requests have no
// body here: the listener serves GET and HEAD. Not exported from mod.ts.

import { createHash } from "node:crypto";

/** The largest request head taken (431 past it), as Node's default. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** A request's head. */
export interface HttpRequest {
  method: string;
  /** The request target as sent (`/ws?room=a`). */
  target: string;
  /** Its path (`/ws`). */
  path: string;
  /** `1.0` or `1.1`. */
  version: string;
  headers: Headers;
}

/** A request that cannot be served: the status and why, in a line. */
export interface BadRequest {
  status: number;
  reason: string;
}

/** What the bytes read so far make. */
export type HeadStep =
  | { state: "more" }
  | { state: "bad"; bad: BadRequest }
  | { state: "done"; request: HttpRequest; rest: Uint8Array };

const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Reads one request head from the bytes of a connection. */
export class HeadReader {
  #bytes: Uint8Array;
  /** Where the search for the empty line goes on from. */
  #scanned = 0;

  /** `rest`: bytes that came after the last request. */
  constructor(rest: Uint8Array = new Uint8Array(0)) {
    this.#bytes = rest;
  }

  /** Whether any byte of this head has come. */
  get started(): boolean {
    return this.#bytes.length > 0;
  }

  /** Takes bytes received (copied) and says what they make so far. */
  push(bytes: Uint8Array): HeadStep {
    const joined = new Uint8Array(this.#bytes.length + bytes.length);
    joined.set(this.#bytes);
    joined.set(bytes, this.#bytes.length);
    this.#bytes = joined;
    return this.step();
  }

  /** What the bytes held make. */
  step(): HeadStep {
    const bytes = this.#bytes;
    const end = headEnd(bytes, this.#scanned);
    if (end !== -1 && end <= MAX_HEAD_BYTES) {
      return parseHead(bytes.subarray(0, end), bytes.subarray(end));
    }
    this.#scanned = Math.max(0, bytes.length - 2);
    if (bytes.length > MAX_HEAD_BYTES) {
      return {
        state: "bad",
        bad: {
          status: 431,
          reason: `a request head over ${MAX_HEAD_BYTES} bytes`,
        },
      };
    }
    return { state: "more" };
  }
}

/**
 * Where an HTTP head in `bytes` ends, looking from `from`: the index just
 * past its empty line (lines end with LF, CR LF or LF alone), or -1 until
 * it has come.
 */
export function headEnd(bytes: Uint8Array, from = 0): number {
  for (let i = Math.max(from, 1); i < bytes.length; i++) {
    if (bytes[i] !== 0x0a) continue;
    if (
      bytes[i - 1] === 0x0a ||
      (bytes[i - 1] === 0x0d && i >= 2 && bytes[i - 2] === 0x0a)
    ) {
      return i + 1;
    }
  }
  return -1;
}

function bad(status: number, reason: string): HeadStep {
  return { state: "bad", bad: { status, reason } };
}

function parseHead(head: Uint8Array, rest: Uint8Array): HeadStep {
  const lines = latin1.decode(head).split("\n").map((line) =>
    line.endsWith("\r") ? line.slice(0, -1) : line
  );
  // Empty lines before a request line are skipped (RFC 9112, 2.2).
  while (lines.length > 0 && lines[0] === "") lines.shift();
  const parts = (lines.shift() ?? "").split(" ");
  if (parts.length !== 3) return bad(400, "not an HTTP request line");
  const [method, target, protocol] = parts;
  if (!TOKEN.test(method)) return bad(400, "not an HTTP method");
  const version = /^HTTP\/(1\.[01])$/.exec(protocol)?.[1];
  if (version === undefined) {
    return /^HTTP\/\d/.test(protocol)
      ? bad(505, `${protocol} is not served: HTTP/1.1 is`)
      : bad(400, "not an HTTP request line");
  }
  let path: string;
  try {
    if (!target.startsWith("/") && !/^https?:\/\//i.test(target)) throw 0;
    path = new URL(target, "http://localhost").pathname;
  } catch {
    return bad(400, `not a request target: ${JSON.stringify(target)}`);
  }
  const headers = new Headers();
  for (const line of lines) {
    if (line === "") continue;
    if (line[0] === " " || line[0] === "\t") {
      return bad(400, "a header line folded (obsolete in HTTP/1.1)");
    }
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon === -1 || !TOKEN.test(name)) {
      return bad(
        400,
        `not a header line: ${JSON.stringify(line.slice(0, 40))}`,
      );
    }
    try {
      headers.append(name, line.slice(colon + 1).trim());
    } catch {
      return bad(400, `not a valid value for the header ${name}`);
    }
  }
  return {
    state: "done",
    request: { method, target, path, version, headers },
    rest: rest.slice(),
  };
}

/** Whether the request asks for the connection to close after it. */
export function wantsClose(request: HttpRequest): boolean {
  const connection = tokens(request.headers.get("connection"));
  if (request.version === "1.0") return !connection.includes("keep-alive");
  return connection.includes("close");
}

/** A comma-separated header's tokens, lower case. */
export function tokens(value: string | null): string[] {
  if (value === null) return [];
  return value.split(",").map((t) => t.trim().toLowerCase());
}

const STATUS_TEXT: Record<number, string> = {
  101: "Switching Protocols",
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/**
 * A response's bytes: its status line, `headers`, and `body` unless the
 * request was a HEAD (its length is still said). `close` says the
 * connection closes after it.
 */
export function encodeResponse(
  status: number,
  headers: Headers,
  body: Uint8Array,
  options: { head?: boolean; close?: boolean } = {},
): Uint8Array {
  const lines = [`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Unknown"}`];
  for (const [name, value] of headers) lines.push(`${name}: ${value}`);
  if (status !== 101) {
    lines.push(`content-length: ${body.length}`);
    lines.push(`date: ${new Date().toUTCString()}`);
    if (options.close) lines.push("connection: close");
  }
  const head = encoder.encode(`${lines.join("\r\n")}\r\n\r\n`);
  if (options.head || body.length === 0) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/** RFC 6455's GUID, hashed with the client's key. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** A WebSocket upgrade accepted: the headers of its 101 response. */
export interface Upgrade {
  headers: Headers;
}

/**
 * Checks `request` as a WebSocket opening handshake (RFC 6455, 4.2.1).
 * Returns the 101's headers, or why not: 426 without an upgrade to
 * WebSocket or with another version than 13 (saying 13), 400 otherwise.
 */
export function acceptUpgrade(
  request: HttpRequest,
): Upgrade | BadRequest & { headers?: Headers } {
  const { headers } = request;
  if (!tokens(headers.get("upgrade")).includes("websocket")) {
    return {
      status: 426,
      reason: "/ws speaks WebSocket: send an Upgrade request",
      headers: new Headers({ upgrade: "websocket" }),
    };
  }
  if (request.method !== "GET" || request.version !== "1.1") {
    return { status: 400, reason: "an upgrade is a GET in HTTP/1.1" };
  }
  if (!tokens(headers.get("connection")).includes("upgrade")) {
    return { status: 400, reason: "Connection does not include Upgrade" };
  }
  const version = headers.get("sec-websocket-version");
  if (version !== "13") {
    return {
      status: 426,
      reason: version === null
        ? "no Sec-WebSocket-Version: this server speaks 13"
        : `Sec-WebSocket-Version ${version} is not served: 13 is`,
      headers: new Headers({ "sec-websocket-version": "13" }),
    };
  }
  const key = headers.get("sec-websocket-key");
  if (key === null || !isNonce(key)) {
    return {
      status: 400,
      reason: key === null
        ? "no Sec-WebSocket-Key"
        : "Sec-WebSocket-Key is not 16 bytes in base64",
    };
  }
  return {
    headers: new Headers({
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-accept": acceptKey(key),
    }),
  };
}

/** The Sec-WebSocket-Accept that answers `key` (RFC 6455, 4.2.2). */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/** Whether `key` is 16 bytes in base64 (24 characters, `==` at the end). */
function isNonce(key: string): boolean {
  return /^[A-Za-z0-9+/]{21}[AQgw]==$/.test(key);
}
