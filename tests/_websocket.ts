// A WebSocket client over a raw TCP connection, for what a browser's
// WebSocket will not do: headers of our choice (X-Forwarded-For), frames
// that break the protocol (unmasked), and a client that stops reading.

import { readAll, writeAll } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A frame as read: its opcode and payload. */
export interface Frame {
  opcode: number;
  payload: Uint8Array;
}

/** A frame to send: masked unless `masked` is false, as clients must. */
export function frame(
  opcode: number,
  payload: Uint8Array | string,
  masked = true,
): Uint8Array {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const length = body.length;
  const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const out = new Uint8Array(head + (masked ? 4 : 0) + length);
  out[0] = 0x80 | opcode;
  const maskBit = masked ? 0x80 : 0;
  if (length < 126) out[1] = maskBit | length;
  else if (length < 65536) {
    out[1] = maskBit | 126;
    new DataView(out.buffer).setUint16(2, length);
  } else {
    out[1] = maskBit | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(length));
  }
  if (!masked) {
    out.set(body, head);
    return out;
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  out.set(mask, head);
  for (let i = 0; i < length; i++) {
    out[head + 4 + i] = body[i] ^ mask[i % 4];
  }
  return out;
}

/** A raw WebSocket client: the upgrade, then frames. */
export class RawWebSocket implements Disposable {
  readonly conn: Deno.Conn;
  /** The server's answer to the upgrade: its status line and headers. */
  readonly response: string;
  #buffer: Uint8Array = new Uint8Array(0);

  private constructor(conn: Deno.Conn, response: string, rest: Uint8Array) {
    this.conn = conn;
    this.response = response;
    this.#buffer = rest;
  }

  /**
   * Upgrades `GET path` on `port` with `headers` besides the handshake's;
   * resolves once the server has answered (101 or not).
   */
  static async open(
    port: number,
    path = "/ws",
    headers: Record<string, string> = {},
  ): Promise<RawWebSocket> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    ];
    await writeAll(conn, encoder.encode(`${lines.join("\r\n")}\r\n\r\n`));
    let received: Uint8Array = new Uint8Array(0);
    while (true) {
      const end = indexOf(received, encoder.encode("\r\n\r\n"));
      if (end !== -1) {
        return new RawWebSocket(
          conn,
          decoder.decode(received.subarray(0, end)),
          received.subarray(end + 4),
        );
      }
      const chunk = new Uint8Array(4096);
      const n = await conn.read(chunk);
      if (n === null) throw new Error("Closed before the upgrade's answer");
      received = concat(received, chunk.subarray(0, n));
    }
  }

  send(bytes: Uint8Array): Promise<void> {
    return writeAll(this.conn, bytes);
  }

  /** The next frame from the server, or null at the end of stream. */
  async next(): Promise<Frame | null> {
    while (true) {
      const parsed = parse(this.#buffer);
      if (parsed !== undefined) {
        this.#buffer = this.#buffer.subarray(parsed.size);
        return parsed.frame;
      }
      const chunk = new Uint8Array(65536);
      const n = await this.conn.read(chunk);
      if (n === null) return null;
      this.#buffer = concat(this.#buffer, chunk.subarray(0, n));
    }
  }

  /** The close frame's code and reason, reading past other frames. */
  async closeFrame(): Promise<{ code: number; reason: string } | null> {
    for (let f = await this.next(); f !== null; f = await this.next()) {
      if (f.opcode !== 8) continue;
      const view = new DataView(f.payload.buffer, f.payload.byteOffset);
      return {
        code: f.payload.length >= 2 ? view.getUint16(0) : 1005,
        reason: decoder.decode(f.payload.subarray(2)),
      };
    }
    return null;
  }

  /** Everything until the server closes. */
  rest(): Promise<Uint8Array> {
    return readAll(this.conn);
  }

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }
}

function parse(
  bytes: Uint8Array,
): { frame: Frame; size: number } | undefined {
  if (bytes.length < 2) return undefined;
  let length = bytes[1] & 0x7f;
  let at = 2;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (length === 126) {
    if (bytes.length < 4) return undefined;
    length = view.getUint16(2);
    at = 4;
  } else if (length === 127) {
    if (bytes.length < 10) return undefined;
    length = Number(view.getBigUint64(2));
    at = 10;
  }
  if (bytes.length < at + length) return undefined;
  return {
    frame: { opcode: bytes[0] & 0x0f, payload: bytes.slice(at, at + length) },
    size: at + length,
  };
}

function indexOf(bytes: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (bytes[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
