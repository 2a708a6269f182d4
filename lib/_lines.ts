// Private: splits a byte stream into newline-terminated lines, with a bound on
// how long a line may be. Not exported from mod.ts.

const LF = 0x0a;
const CR = 0x0d;

/**
 * Cuts a byte stream into lines, whatever the chunking: each line keeps its
 * own ending (`\n` or `\r\n`), bytes are never decoded, and a line longer
 * than `maxLineBytes` (not counting its ending) stops the splitter.
 *
 * At most `maxLineBytes + 1` bytes of an unfinished line are held.
 */
export class LineSplitter {
  readonly maxLineBytes: number;
  #parts: Uint8Array[] = [];
  #partsLength = 0;
  #tooLong = false;

  constructor(maxLineBytes: number) {
    this.maxLineBytes = maxLineBytes;
  }

  /** Whether a line went over `maxLineBytes`; nothing is split after that. */
  get tooLong(): boolean {
    return this.#tooLong;
  }

  /** Bytes of an unfinished line held so far. */
  get pending(): number {
    return this.#partsLength;
  }

  /**
   * Returns the lines that `chunk` completes, in order, each with its ending.
   * A line may be a view into `chunk`: use it before `chunk` is reused, or
   * copy it. Stops early, with {@linkcode LineSplitter.tooLong} set, at the
   * first line over the limit.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const lines: Uint8Array[] = [];
    if (this.#tooLong) return lines;
    let start = 0;
    while (start < chunk.length) {
      const end = chunk.indexOf(LF, start);
      if (end === -1) {
        this.#hold(chunk.subarray(start));
        break;
      }
      let line = chunk.subarray(start, end + 1);
      if (this.#partsLength > 0) {
        this.#parts.push(line);
        line = join(this.#parts, this.#partsLength + line.length);
        this.#parts = [];
        this.#partsLength = 0;
      }
      if (contentLength(line) > this.maxLineBytes) {
        this.#tooLong = true;
        break;
      }
      lines.push(line);
      start = end + 1;
    }
    return lines;
  }

  /**
   * Ends the stream: returns the last line if it had no newline (a fresh
   * copy), or `undefined`. Sets {@linkcode LineSplitter.tooLong} if that
   * line is over the limit.
   */
  end(): Uint8Array | undefined {
    if (this.#tooLong || this.#partsLength === 0) return undefined;
    const line = join(this.#parts, this.#partsLength);
    this.#parts = [];
    this.#partsLength = 0;
    if (line.length > this.maxLineBytes) {
      this.#tooLong = true;
      return undefined;
    }
    return line;
  }

  #hold(rest: Uint8Array): void {
    // One byte more than the limit may be a `\r` waiting for its `\n`.
    if (this.#partsLength + rest.length > this.maxLineBytes + 1) {
      this.#tooLong = true;
      this.#parts = [];
      this.#partsLength = 0;
      return;
    }
    this.#parts.push(rest.slice());
    this.#partsLength += rest.length;
  }
}

/** Length of `line` without its ending (`\n` or `\r\n`), if it has one. */
export function contentLength(line: Uint8Array): number {
  const n = line.length;
  if (n === 0 || line[n - 1] !== LF) return n;
  return n >= 2 && line[n - 2] === CR ? n - 2 : n - 1;
}

/** `line` without its ending: a view, not a copy. */
export function lineContent(line: Uint8Array): Uint8Array {
  return line.subarray(0, contentLength(line));
}

/** Joins byte chunks whose total length is `length` into one new array. */
export function join(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
