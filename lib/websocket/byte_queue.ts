// Private: bytes kept in arrival order and taken from the front, for the
// WebSocket parts free of I/O (the frame reader, the framings). Not
// exported from mod.ts.

import { join } from "../_lines.ts";

/** Bytes kept in arrival order, taken from the front. */
export class ByteQueue {
  #chunks: Uint8Array[] = [];
  length = 0;

  /** Keeps a copy of `bytes` (the caller may reuse its buffer). */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#chunks.push(bytes.slice());
    this.length += bytes.length;
  }

  /** Drops everything. */
  clear(): void {
    this.#chunks = [];
    this.length = 0;
  }

  /**
   * At least the first `n` bytes in one array, without taking them (the
   * chunks they span are joined); undefined while fewer are held.
   */
  peek(n: number): Uint8Array | undefined {
    if (this.length < n) return undefined;
    if (this.#chunks[0].length >= n) return this.#chunks[0];
    let count = 0;
    let bytes = 0;
    while (bytes < n) bytes += this.#chunks[count++].length;
    const joined = join(this.#chunks.slice(0, count), bytes);
    this.#chunks.splice(0, count, joined);
    return joined;
  }

  /**
   * The first `n` bytes (at most `length`), taken: a view of what was
   * pushed when one chunk holds them, else copied into one array.
   */
  take(n: number): Uint8Array {
    this.length -= n;
    const first = this.#chunks[0];
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const chunk = this.#chunks[0];
      const part = Math.min(chunk.length, n - at);
      out.set(chunk.subarray(0, part), at);
      at += part;
      if (part === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(part);
    }
    return out;
  }

  /** Where `byte` first is, or -1. */
  indexOf(byte: number): number {
    let offset = 0;
    for (const chunk of this.#chunks) {
      const i = chunk.indexOf(byte);
      if (i !== -1) return offset + i;
      offset += chunk.length;
    }
    return -1;
  }
}
