// Private: a WebSocket client's opening handshake (RFC 6455, 4.1), free of
// I/O: the GET that asks for the upgrade, and the server's answer read
// from bytes cut anywhere and checked (101, Upgrade, Connection, and the
// Sec-WebSocket-Accept its key calls for). Not exported from mod.ts.

import { acceptKey, headEnd, MAX_HEAD_BYTES, tokens } from "./http.ts";

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** The request that opens a WebSocket to `url`, and the key it sends. */
export function openingRequest(url: URL): { bytes: Uint8Array; key: string } {
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const key = btoa(String.fromCharCode(...nonce));
  const lines = [
    `GET ${url.pathname}${url.search} HTTP/1.1`,
    `host: ${url.host}`,
    "upgrade: websocket",
    "connection: Upgrade",
    `sec-websocket-key: ${key}`,
    "sec-websocket-version: 13",
  ];
  return { bytes: encoder.encode(`${lines.join("\r\n")}\r\n\r\n`), key };
}

/** What the server's bytes so far make of its answer. */
export type AnswerStep =
  | { state: "more" }
  /** Not an upgrade: why, in a line (the status, or what is wrong). */
  | { state: "refused"; reason: string }
  /** Upgraded: `rest` is what came after the head, the first frames. */
  | { state: "open"; rest: Uint8Array };

/** Reads the server's answer to {@linkcode openingRequest}. */
export class AnswerReader {
  #key: string;
  #bytes = new Uint8Array(0);

  /** `key`: the request's Sec-WebSocket-Key. */
  constructor(key: string) {
    this.#key = key;
  }

  /** Takes bytes received (copied) and says what they make so far. */
  push(bytes: Uint8Array): AnswerStep {
    const joined = new Uint8Array(this.#bytes.length + bytes.length);
    joined.set(this.#bytes);
    joined.set(bytes, this.#bytes.length);
    this.#bytes = joined;
    const end = headEnd(joined);
    if (end === -1 || end > MAX_HEAD_BYTES) {
      return joined.length > MAX_HEAD_BYTES
        ? { state: "refused", reason: `an answer over ${MAX_HEAD_BYTES} bytes` }
        : { state: "more" };
    }
    const reason = this.#check(
      latin1.decode(joined.subarray(0, end)).trimEnd(),
    );
    return reason === undefined
      ? { state: "open", rest: joined.slice(end) }
      : { state: "refused", reason };
  }

  /** What is wrong with the answer's head, if anything. */
  #check(head: string): string | undefined {
    const [status, ...lines] = head.split(/\r?\n/);
    const parts = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(status);
    if (parts === null) {
      return `not an HTTP answer: ${JSON.stringify(status.slice(0, 40))}`;
    }
    if (parts[1] !== "101") {
      return `the server answered ${parts[1]}${
        parts[2] ? ` ${parts[2]}` : ""
      }, not 101 Switching Protocols`;
    }
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon > 0) {
        headers.set(
          line.slice(0, colon).trim().toLowerCase(),
          line.slice(colon + 1).trim(),
        );
      }
    }
    if (!tokens(headers.get("upgrade") ?? null).includes("websocket")) {
      return "the 101 does not upgrade to websocket";
    }
    if (!tokens(headers.get("connection") ?? null).includes("upgrade")) {
      return "the 101's Connection does not include Upgrade";
    }
    if (headers.get("sec-websocket-accept") !== acceptKey(this.#key)) {
      return "the 101's Sec-WebSocket-Accept does not answer this key";
    }
    if (headers.has("sec-websocket-extensions")) {
      return "the server agreed to an extension this client did not offer";
    }
    return undefined;
  }
}
