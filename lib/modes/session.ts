// Private: what a line mode is, free of I/O: a session takes the bytes a
// client sent and its end of stream, and returns what to send and whether
// to end the connection. Drivers move the bytes: lib/server/run_session.ts
// over Deno's sockets, lib/native/loop.ts over libc. This is the shape of
// h11 and quinn-proto (a state machine fed bytes and events, giving back
// bytes and actions), so that a mode is written once for every driver and
// tested without a socket. Not exported from mod.ts.

import { LineSplitter } from "../_lines.ts";
import type { Ending } from "../core/endings.ts";

/** What a session asks of its driver after one event. */
export interface Step {
  /**
   * Bytes to send, after everything sent before. May be a view of the chunk
   * the session was given: the driver sends it, or copies what it cannot
   * send yet, before it reuses that buffer.
   */
  send?: Uint8Array;
  /**
   * End the connection politely for this reason once `send` is sent: the
   * server half-closes, discards what the client still sends, and closes
   * when the client does (or after the linger).
   */
  close?: Ending;
}

/** One connection in a line mode, as the mode sees it. */
export interface Session {
  /**
   * The client sent `chunk` (a view of the driver's buffer, valid only
   * during the call). Never called again after a step with `close`.
   */
  receive(chunk: Uint8Array): Step;
  /** The client half-closed; the step returned always closes. */
  end(): Step;
}

/**
 * A session that answers lines: the client's bytes are cut into lines
 * (each with its ending; a line over the limit stops the splitter), and
 * {@linkcode LinesSession.answer} says what to send for the lines of each
 * read and whether to end. Line and info mode are two of these.
 */
export abstract class LinesSession implements Session {
  protected readonly splitter: LineSplitter;

  constructor(maxLineBytes: number) {
    this.splitter = new LineSplitter(maxLineBytes);
  }

  receive(chunk: Uint8Array): Step {
    return this.answer(this.splitter.push(chunk), undefined);
  }

  end(): Step {
    const last = this.splitter.end();
    return this.answer(last === undefined ? [] : [last], "closed by client");
  }

  /**
   * What to do about `lines` (views, valid during the call), the last read's
   * (`ending` is why the connection ends after them, at the end of stream);
   * `this.splitter.tooLong` says a line went over the limit.
   */
  protected abstract answer(
    lines: Uint8Array[],
    ending: Ending | undefined,
  ): Step;
}

/** The addresses and names a session may answer with (info mode's). */
export interface SessionFacts {
  /** The machine's hostname. */
  host: string;
  /** The server's `id`, or `HOSTNAME:PORT` (or path) when none was given. */
  id: string;
  transport: "tcp" | "tls" | "unix" | "udp" | "websocket";
  /** The client, as the PROXY header says where there is one. */
  client: Deno.Addr;
  /** This end of the connection. */
  server: Deno.Addr;
  /** On TLS, what its handshake settled. */
  tls?: HandshakeFacts;
}

/** What a TLS handshake settled, as the modes see it. */
export interface HandshakeFacts {
  /**
   * The server name the client asked for (SNI): `undefined` when it asked
   * for none, `null` when the driver cannot tell (Deno's TLS listener).
   */
  serverName: string | undefined | null;
  /** The protocol agreed by ALPN, if any. */
  alpn: string | undefined;
  /** The subject of the client's certificate, if it sent one. */
  clientCert: string | undefined;
}

/** The reply to a line over the limit, in every line mode. */
export function lineTooLong(maxLineBytes: number): string {
  return `ERR line too long (max ${maxLineBytes} bytes)\n`;
}
