// Private helpers shared by the library's public functions. Not exported from
// mod.ts.

/** Root of every log category this package uses. */
export const LOG_CATEGORY = "tcp-echo";

/**
 * The largest UDP payload over IPv4 (65,535 less the IP and UDP headers);
 * the server's receive buffer is larger, so no datagram is ever cut short.
 */
export const MAX_DATAGRAM = 65_507;

/** Largest delay `setTimeout` accepts without overflowing to zero. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Formats a network address as `host:port`, with brackets around IPv6 hosts
 * (`[::1]:9000`); a Unix socket's address as its path. An IPv4 client of a
 * dual-stack listener (`::`) arrives as `::ffff:127.0.0.1`, and is shown as
 * the IPv4 address it is.
 */
export function formatAddr(
  addr: Deno.Addr | { hostname: string; port: number },
): string {
  if ("path" in addr) return addr.path ?? "(unnamed unix socket)";
  if ("cid" in addr) return `vsock:${addr.cid}:${addr.port}`;
  const host = bareAddress(addr.hostname);
  return host.includes(":") ? `[${host}]:${addr.port}` : `${host}:${addr.port}`;
}

/**
 * An IP address as people write it: an IPv4 address mapped into IPv6 (how
 * a dual-stack listener sees an IPv4 client) as the IPv4 address it is.
 */
export function bareAddress(hostname: string): string {
  return hostname.replace(MAPPED_IPV4, "");
}

/** The prefix of an IPv4 address mapped into IPv6 (RFC 4291 2.5.5.2). */
const MAPPED_IPV4 = /^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i;

/**
 * `word` as it goes with `count`: `1 connection`, `2 connections`. For log
 * message templates, where the count is a property of its own.
 */
/**
 * The next delay before `accept()` is tried again while it fails for want
 * of a resource (descriptors, buffers, memory), after `previous` ms: from 5
 * ms, doubling, up to 1 s.
 */
export function acceptBackoff(previous: number): number {
  return Math.min(Math.max(previous * 2, 5), 1000);
}

export function plural(count: number, word: string): string {
  return count === 1 ? word : `${word}s`;
}

/** An error about one option's value, as the library's functions throw it. */
export type OptionError = Error & {
  /** The option, as it is spelled in the options object (`maxLineBytes`). */
  readonly option: string;
  /** What is wrong with it, without the option's name. */
  readonly reason: string;
};

/**
 * Makes an error about one option: its message is `Cannot use OPTION:
 * REASON`, and it carries `option` and `reason` as fields, so that a CLI can
 * name its own flag without reading the message.
 */
export function optionError(
  option: string,
  reason: string,
  Type: new (message: string) => Error = RangeError,
): OptionError {
  return Object.assign(new Type(`Cannot use ${option}: ${reason}`), {
    option,
    reason,
  });
}

/**
 * Throws a `RangeError` unless `value` is an integer port from `min` (0, or
 * 1 where a port to connect to is meant) to 65535.
 */
export function assertPort(value: number, min = 0): void {
  assertInteger("port", value, min, 65535);
}

/**
 * Throws a `RangeError` unless `value` is a whole number of milliseconds from
 * 0 to 2^31 - 1, or `Infinity` when `allowInfinity` is set.
 */
export function assertMilliseconds(
  name: string,
  value: number,
  allowInfinity = false,
): void {
  if (allowInfinity && value === Infinity) return;
  if (!Number.isInteger(value) || value < 0 || value > MAX_TIMER_MS) {
    throw optionError(
      name,
      `must be a whole number of milliseconds from 0 to ${MAX_TIMER_MS}${
        allowInfinity ? " or Infinity" : ""
      }, got ${value}`,
    );
  }
}

/** Throws a `RangeError` unless `value` is a positive integer or `Infinity`. */
export function assertLimit(name: string, value: number): void {
  if (value === Infinity) return;
  if (!Number.isInteger(value) || value < 1) {
    throw optionError(
      name,
      `must be a positive integer or Infinity, got ${value}`,
    );
  }
}

/**
 * Throws a `RangeError` unless `value` is an integer from `min` to `max`;
 * `note` follows the range in the message.
 */
export function assertInteger(
  name: string,
  value: number,
  min: number,
  max: number,
  note = "",
): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw optionError(
      name,
      `must be an integer from ${min} to ${max}${note}, got ${value}`,
    );
  }
}

/**
 * Throws a `RangeError` unless `value` is positive: a safe integer when
 * `integer` is set, else any number up to `Infinity`.
 */
export function assertPositive(
  name: string,
  value: number,
  integer: boolean,
): void {
  const ok = integer ? Number.isSafeInteger(value) : value === Infinity ||
    Number.isFinite(value);
  if (!ok || value <= 0) {
    throw optionError(
      name,
      `must be a positive ${integer ? "integer" : "number"}, got ${value}`,
    );
  }
}

/**
 * Throws a `RangeError` unless `value` is undefined or one of `choices`
 * (`must be "v1" or "v2", got v3`).
 */
export function assertChoice<T extends string>(
  name: string,
  value: unknown,
  choices: readonly T[],
): asserts value is T | undefined {
  if (value === undefined || choices.includes(value as T)) return;
  throw optionError(
    name,
    `must be ${choices.map((c) => `"${c}"`).join(" or ")}, got ${value}`,
  );
}

/** A plain-text HTTP response (health checks, short refusals). */
export function textResponse(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

/** Writes every byte of `bytes`, however many calls `conn.write` needs. */
export async function writeAll(
  conn: Pick<Deno.Conn, "write">,
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

/**
 * `conn.readable` for a connection made in JavaScript (a WebSocket's): a
 * stream of what `conn.read()` gives, ended by its end of stream.
 */
export function readableOf(
  conn: Pick<Deno.Conn, "read">,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  const buffer = new Uint8Array(64 * 1024);
  return new ReadableStream({
    pull: async (controller) => {
      const n = await conn.read(buffer);
      if (n === null) controller.close();
      else controller.enqueue(buffer.slice(0, n));
    },
  });
}

/**
 * `conn.writable` for a connection made in JavaScript: each chunk written
 * with `conn.write()`, and closing it is `conn.closeWrite()`.
 */
export function writableOf(
  conn: Pick<Deno.Conn, "write" | "closeWrite">,
): WritableStream<Uint8Array<ArrayBufferLike>> {
  return new WritableStream({
    write: async (chunk) => void await conn.write(chunk),
    close: () => conn.closeWrite(),
  });
}

/** Describes why a connection failed, in a few words fit for a log line. */
export function describeError(error: unknown): string {
  if (error instanceof Deno.errors.ConnectionReset) return "reset by peer";
  if (error instanceof Deno.errors.BrokenPipe) return "broken pipe";
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/**
 * Calls `onIdle` once nothing has called {@linkcode IdleTimer.touch} for
 * `ms` milliseconds. Activity only stamps a time; the one timer wakes up at
 * most once per `ms` while there is activity, and never when `ms` is 0.
 */
export class IdleTimer {
  #ms: number;
  #onIdle: () => void;
  #last = Date.now();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ms: number, onIdle: () => void) {
    this.#ms = ms;
    this.#onIdle = onIdle;
    if (ms > 0) this.#timer = setTimeout(this.#check, ms);
  }

  /** Records activity now. */
  touch(): void {
    this.#last = Date.now();
  }

  /** Records activity now and starts waiting again after `onIdle` fired. */
  restart(): void {
    this.#last = Date.now();
    if (this.#timer === undefined && this.#ms > 0) {
      this.#timer = setTimeout(this.#check, this.#ms);
    }
  }

  /** Stops the timer for good. */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ms = 0;
  }

  #check = (): void => {
    const quiet = Date.now() - this.#last;
    if (quiet >= this.#ms) {
      this.#timer = undefined;
      this.#onIdle();
    } else {
      this.#timer = setTimeout(this.#check, this.#ms - quiet);
    }
  };
}
