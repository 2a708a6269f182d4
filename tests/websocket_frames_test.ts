// The WebSocket listener's protocol parts, free of I/O: RFC 6455 frames
// read from bytes cut anywhere (messages in fragments, pings between them),
// the server's frames, close payloads, HTTP request heads, and the opening
// handshake.

import assert from "node:assert/strict";
import fc from "./_fast_check.ts";
import {
  closePayload,
  encodeFrames,
  type FrameEvent,
  FrameReader,
} from "../lib/websocket/frames.ts";
import {
  acceptKey,
  acceptUpgrade,
  encodeResponse,
  HeadReader,
  type HeadStep,
  type HttpRequest,
} from "../lib/websocket/http.ts";
import {
  AnswerReader,
  openingRequest,
} from "../lib/websocket/client_handshake.ts";
import { concat } from "./_helpers.ts";

const encoder = new TextEncoder();

/** A client's frame: masked with `mask`, final unless `fin` is false. */
function clientFrame(
  opcode: number,
  payload: Uint8Array,
  mask: Uint8Array,
  fin = true,
): Uint8Array {
  const length = payload.length;
  const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + length);
  out[0] = (fin ? 0x80 : 0) | opcode;
  const view = new DataView(out.buffer);
  if (length < 126) out[1] = 0x80 | length;
  else if (length < 65536) {
    out[1] = 0x80 | 126;
    view.setUint16(2, length);
  } else {
    out[1] = 0x80 | 127;
    view.setBigUint64(2, BigInt(length));
  }
  out.set(mask, head);
  for (let i = 0; i < length; i++) out[head + 4 + i] = payload[i] ^ mask[i % 4];
  return out;
}

/** `bytes` cut at `cuts` (fractions of its length), in order. */
function cut(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = cuts.map((f) => Math.floor(f * bytes.length)).sort((a, b) =>
    a - b
  );
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const to of [...at, bytes.length]) {
    pieces.push(bytes.subarray(from, to));
    from = to;
  }
  return pieces;
}

/** Every event `pieces` make, pushed one at a time. */
function read(reader: FrameReader, pieces: Uint8Array[]): FrameEvent[] {
  const events: FrameEvent[] = [];
  for (const piece of pieces) {
    reader.push(piece);
    for (let e = reader.next(); e !== undefined; e = reader.next()) {
      events.push(e);
    }
  }
  return events;
}

const message = fc.oneof(
  fc.record({
    text: fc.constant(true),
    value: fc.string({ unit: "grapheme", maxLength: 300 }),
  }),
  fc.record({
    text: fc.constant(false),
    value: fc.uint8Array({ maxLength: 70_000 }),
  }),
);

Deno.test("frames: messages in fragments, with pings between, cut anywhere, come out whole and in order", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          message,
          fragments: fc.integer({ min: 1, max: 4 }),
          ping: fc.boolean(),
        }),
        { maxLength: 8 },
      ),
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
      (messages, mask, cuts) => {
        const frames: Uint8Array[] = [];
        const expected: unknown[] = [];
        for (const { message, fragments, ping: withPing } of messages) {
          const bytes = message.text
            ? encoder.encode(message.value as string)
            : message.value as Uint8Array;
          const step = Math.ceil(bytes.length / fragments) || 1;
          const ping = () => {
            frames.push(clientFrame(9, Uint8Array.of(1, 2, 3), mask));
            expected.push({ kind: "ping", payload: Uint8Array.of(1, 2, 3) });
          };
          if (withPing && fragments === 1) ping();
          for (let i = 0, at = 0; i < fragments; i++, at += step) {
            const last = i === fragments - 1;
            const opcode = i > 0 ? 0 : message.text ? 1 : 2;
            const part = bytes.subarray(at, last ? undefined : at + step);
            frames.push(clientFrame(opcode, part, mask, last));
            // A control frame may come between a message's fragments.
            if (withPing && i === 0 && !last) ping();
          }
          expected.push({ kind: "message", text: message.text, bytes });
        }
        frames.push(clientFrame(8, closePayload(4000, "bye"), mask));
        expected.push({ kind: "close", code: 4000, reason: "bye" });
        const events = read(
          new FrameReader(1 << 20),
          cut(concat(frames), cuts),
        );
        assert.deepEqual(
          events.map((e) =>
            e.kind === "message" ? { ...e, bytes: [...e.bytes] } : e
          ),
          expected.map((e) =>
            (e as FrameEvent).kind === "message"
              ? {
                ...e as object,
                bytes: [...(e as { bytes: Uint8Array }).bytes],
              }
              : e
          ),
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("frames: what breaks the protocol gives one fail with its code, and nothing after it", () => {
  const mask = Uint8Array.of(9, 8, 7, 6);
  const fail = (bytes: Uint8Array, max = 1000) =>
    read(new FrameReader(max), [
      bytes,
      clientFrame(1, encoder.encode("after"), mask),
    ]);
  const unmasked = clientFrame(1, encoder.encode("x"), mask);
  unmasked[1] &= 0x7f;
  const cases: [Uint8Array, number, string, number?][] = [
    [unmasked, 1002, "an unmasked frame: a client must mask what it sends"],
    [clientFrame(0xb, new Uint8Array(0), mask), 1002, "reserved opcode 11"],
    [
      clientFrame(9, new Uint8Array(126), mask),
      1002,
      "a control frame of 126 bytes (125 at most)",
    ],
    [clientFrame(8, Uint8Array.of(3), mask), 1002, "a close frame of 1 byte"],
    [
      clientFrame(8, Uint8Array.of(0x03, 0xee), mask),
      1002,
      "close code 1006 is not one a peer may send",
    ],
    [
      clientFrame(8, Uint8Array.of(0x03, 0xe8, 0xc3), mask),
      1007,
      "a close reason that is not UTF-8",
    ],
    [
      clientFrame(1, Uint8Array.of(0xed, 0xa0, 0x80), mask),
      1007,
      "a text message that is not UTF-8",
    ],
    [
      clientFrame(2, new Uint8Array(1001), mask),
      1009,
      "message too big: 1001 bytes, the limit is 1000",
    ],
    [
      clientFrame(2, new Uint8Array(100), mask),
      1009,
      "message too big: 100 bytes, the limit is 99",
      99,
    ],
  ];
  for (const [bytes, code, reason, max] of cases) {
    assert.deepEqual(fail(bytes, max), [{ kind: "fail", code, reason }]);
  }
  // A message over the limit is refused from its header, its payload not
  // come yet.
  const header = clientFrame(2, new Uint8Array(5000), mask).subarray(0, 8);
  assert.deepEqual(read(new FrameReader(1000), [header]), [{
    kind: "fail",
    code: 1009,
    reason: "message too big: 5000 bytes, the limit is 1000",
  }]);
  // An empty close frame has no code (1005 to the application).
  assert.deepEqual(
    read(new FrameReader(10), [clientFrame(8, new Uint8Array(0), mask)]),
    [
      { kind: "close", code: undefined, reason: "" },
    ],
  );
});

Deno.test("frames: the server's are final and unmasked, with the shortest length; a close reason is cut to fit, between characters", () => {
  const lengths = [0, 125, 126, 65535, 65536];
  for (const length of lengths) {
    const payload = new Uint8Array(length).fill(7);
    const frame = encodeFrames([{ opcode: 2, payload }]);
    const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
    assert.equal(frame.length, head + length);
    assert.equal(frame[0], 0x82);
    assert.equal(frame[1] & 0x80, 0);
    assert.equal(
      frame[1] & 0x7f,
      length < 126 ? length : length < 65536 ? 126 : 127,
    );
  }
  const two = encodeFrames([
    { opcode: 1, payload: encoder.encode("a") },
    { opcode: 10, payload: new Uint8Array(0) },
  ]);
  assert.deepEqual([...two], [0x81, 1, 0x61, 0x8a, 0]);
  const long = closePayload(1000, "é".repeat(100));
  assert.equal(long.length, 2 + 122); // 61 whole characters of 2 bytes.
  assert.equal(
    new TextDecoder("utf-8", { fatal: true }).decode(long.subarray(2)),
    "é".repeat(61),
  );
  assert.deepEqual([...closePayload(undefined)], []);
});

Deno.test("HTTP heads: a request cut anywhere reads the same, with CRLF or LF lines; what follows it is kept", () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }),
      (lf, cuts) => {
        const eol = lf ? "\n" : "\r\n";
        const text = [
          "GET /ws?room=a HTTP/1.1",
          "Host: example",
          "X-Forwarded-For: 203.0.113.9,  10.0.0.1",
          "",
          "",
        ].join(eol) + "next";
        const reader = new HeadReader();
        let step: HeadStep = { state: "more" };
        const after: Uint8Array[] = [];
        for (const piece of cut(encoder.encode(text), cuts)) {
          if (step.state === "more") step = reader.push(piece);
          else after.push(piece);
        }
        assert.equal(step.state, "done");
        if (step.state !== "done") return;
        assert.equal(step.request.method, "GET");
        assert.equal(step.request.path, "/ws");
        assert.equal(step.request.target, "/ws?room=a");
        assert.equal(step.request.version, "1.1");
        assert.equal(
          step.request.headers.get("x-forwarded-for"),
          "203.0.113.9,  10.0.0.1",
        );
        assert.equal(
          new TextDecoder().decode(concat([step.rest, ...after])),
          "next",
        );
      },
    ),
  );
  const bad = (text: string) => {
    const step = new HeadReader().push(encoder.encode(text));
    return step.state === "bad"
      ? `${step.bad.status} ${step.bad.reason}`
      : step.state;
  };
  assert.equal(bad("GET / HTTP/1.1\r\nHost: x\r\n"), "more");
  assert.equal(
    bad("GET / HTTP/1.1\r\n folded\r\n\r\n"),
    "400 a header line folded (obsolete in HTTP/1.1)",
  );
  assert.equal(
    bad("GET / HTTP/1.1\r\nno colon\r\n\r\n"),
    '400 not a header line: "no colon"',
  );
  assert.equal(bad("GET * HTTP/1.1\r\n\r\n"), '400 not a request target: "*"');
  assert.equal(
    bad("GET / HTTP/3\r\n\r\n"),
    "505 HTTP/3 is not served: HTTP/1.1 is",
  );
  assert.equal(bad("x".repeat(17000)), "431 a request head over 16384 bytes");
});

Deno.test("the opening handshake: RFC 6455's example key, and refusals with their statuses", () => {
  const request = (headers: Record<string, string>, version = "1.1") => ({
    method: "GET",
    target: "/ws",
    path: "/ws",
    version,
    headers: new Headers(headers),
  });
  const good = {
    upgrade: "websocket",
    connection: "keep-alive, Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  };
  const accepted = acceptUpgrade(request(good));
  assert.ok("headers" in accepted && !("status" in accepted));
  assert.equal(
    accepted.headers.get("sec-websocket-accept"),
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
  const refused = (headers: Record<string, string>, version?: string) => {
    const answer = acceptUpgrade(request({ ...good, ...headers }, version));
    return "status" in answer ? `${answer.status} ${answer.reason}` : "101";
  };
  assert.equal(
    refused({ upgrade: "h2c" }),
    "426 /ws speaks WebSocket: send an Upgrade request",
  );
  assert.equal(refused({}, "1.0"), "400 an upgrade is a GET in HTTP/1.1");
  assert.equal(
    refused({ connection: "close" }),
    "400 Connection does not include Upgrade",
  );
  assert.equal(
    refused({ "sec-websocket-version": "8" }),
    "426 Sec-WebSocket-Version 8 is not served: 13 is",
  );
  assert.equal(
    refused({ "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZR==" }),
    "400 Sec-WebSocket-Key is not 16 bytes in base64",
  );
  const response = new TextDecoder().decode(
    encodeResponse(
      404,
      new Headers({ "content-type": "text/plain" }),
      encoder.encode("no\n"),
      { head: true, close: true },
    ),
  );
  assert.match(
    response,
    /^HTTP\/1\.1 404 Not Found\r\ncontent-type: text\/plain\r\ncontent-length: 3\r\ndate: [^\r]+\r\nconnection: close\r\n\r\n$/,
  );
});

Deno.test("frames: a client's are masked, each with its own key, and read back whole by a server's reader cut anywhere; a client's reader refuses a masked frame", () => {
  fc.assert(
    fc.property(
      fc.array(message, { minLength: 1, maxLength: 6 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
      (messages, cuts) => {
        const frames = messages.map(({ text, value }) => ({
          opcode: text ? 1 : 2,
          payload: text
            ? encoder.encode(value as string)
            : (value as Uint8Array).slice(),
        }));
        const copies = frames.map((f) => f.payload.slice());
        const bytes = encodeFrames(frames, true);
        // Masking works on the frame's copy, never on the payload given.
        assert.deepEqual(frames.map((f) => f.payload), copies);
        const events = read(new FrameReader(1 << 20), cut(bytes, cuts));
        assert.deepEqual(
          events,
          messages.map(({ text }, i) => ({
            kind: "message",
            text,
            bytes: copies[i],
          })),
        );
      },
    ),
  );
  const masked = encodeFrames(
    [{ opcode: 1, payload: encoder.encode("hi") }],
    true,
  );
  assert.equal(masked[1], 0x80 | 2);
  assert.equal(masked.length, 2 + 4 + 2);
  // A server's reader (for a client) and a client's (for a server).
  assert.deepEqual(read(new FrameReader(100, "server"), [masked]), [{
    kind: "fail",
    code: 1002,
    reason: "a masked frame: a server must not mask what it sends",
  }]);
  const plain = encodeFrames([
    { opcode: 1, payload: encoder.encode("hi") },
    { opcode: 8, payload: closePayload(1009, "too big") },
  ]);
  assert.deepEqual(read(new FrameReader(100, "server"), cut(plain, [0.3])), [
    { kind: "message", text: true, bytes: encoder.encode("hi") },
    { kind: "close", code: 1009, reason: "too big" },
  ]);
});

Deno.test("the client's opening handshake: its request, and the server's answer cut anywhere, checked", () => {
  const url = new URL("ws://[::1]:8080/ws?room=a");
  const { bytes, key } = openingRequest(url);
  const text = new TextDecoder().decode(bytes);
  assert.match(text, /^GET \/ws\?room=a HTTP\/1\.1\r\nhost: \[::1\]:8080\r\n/);
  assert.match(text, /\r\nupgrade: websocket\r\nconnection: Upgrade\r\n/);
  assert.match(text, /\r\nsec-websocket-version: 13\r\n\r\n$/);
  assert.match(key, /^[A-Za-z0-9+/]{22}==$/);
  assert.ok(text.includes(`\r\nsec-websocket-key: ${key}\r\n`));
  assert.notEqual(openingRequest(url).key, key);

  // Our own server's answer to that request, then a first frame.
  const head = new HeadReader().push(bytes);
  assert.equal(head.state, "done");
  const upgrade = acceptUpgrade((head as { request: HttpRequest }).request);
  assert.ok(!("status" in upgrade));
  const answer = encodeResponse(101, upgrade.headers, new Uint8Array(0));
  const first = encodeFrames([{ opcode: 1, payload: encoder.encode("hi") }]);
  const all = concat([answer, first]);
  for (let at = 0; at <= all.length; at++) {
    const reader = new AnswerReader(key);
    const one = reader.push(all.subarray(0, at));
    if (at < answer.length) {
      assert.deepEqual(one, { state: "more" }, `cut at ${at}`);
      assert.deepEqual(reader.push(all.subarray(at)), {
        state: "open",
        rest: first,
      });
    } else {
      // What came after the head is kept: the first frames.
      assert.deepEqual(one, {
        state: "open",
        rest: all.subarray(answer.length, at),
      });
    }
  }

  const refusal = (head: string) => {
    const step = new AnswerReader(key).push(encoder.encode(head));
    return step.state === "refused" ? step.reason : step.state;
  };
  const good = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${acceptKey(key)}`,
  ];
  assert.equal(refusal(`${good.join("\r\n")}\r\n\r\n`), "open");
  assert.equal(refusal(`${good.join("\n")}\n\n`), "open");
  assert.equal(refusal(good.join("\r\n")), "more");
  assert.equal(
    refusal("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
    "the server answered 404 Not Found, not 101 Switching Protocols",
  );
  assert.equal(
    refusal("SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    'not an HTTP answer: "SSH-2.0-OpenSSH_9.2"',
  );
  const without = (n: number, extra: string[] = []) =>
    refusal(
      `${[...good.filter((_, i) => i !== n), ...extra].join("\r\n")}\r\n\r\n`,
    );
  assert.equal(without(1), "the 101 does not upgrade to websocket");
  assert.equal(without(2), "the 101's Connection does not include Upgrade");
  assert.equal(
    without(3, ["Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]),
    "the 101's Sec-WebSocket-Accept does not answer this key",
  );
  assert.equal(
    without(-1, ["Sec-WebSocket-Extensions: permessage-deflate"]),
    "the server agreed to an extension this client did not offer",
  );
  assert.equal(
    refusal(`HTTP/1.1 101 OK\r\n${"x: y\r\n".repeat(4000)}`),
    "an answer over 16384 bytes",
  );
});
