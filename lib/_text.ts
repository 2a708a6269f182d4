// Private: text that is safe to show on someone else's terminal. Used by the
// chat (what one user sends another) and by the interactive client (what a
// server sends to a terminal). Not exported from mod.ts.

/** U+FFFD, which stands for what is not shown. */
export const REPLACEMENT = "\uFFFD";

const decoder = new TextDecoder();

/**
 * C0 controls but TAB, DEL and C1 controls: carriage return, escape
 * sequences, backspace, NUL and the like, which move a terminal's cursor,
 * clear its screen or change its state.
 */
// deno-lint-ignore no-control-regex -- matching controls is the point
const CONTROLS = /[\x00-\x08\x0a-\x1f\x7f\x80-\x9f]/g;

/**
 * Replaces every control character but TAB in `text` with U+FFFD, so that
 * it shows as one visible mark and does nothing to a terminal.
 */
export function replaceControls(text: string): string {
  return text.replace(CONTROLS, REPLACEMENT);
}

/**
 * Decodes `bytes` as UTF-8 for a terminal: invalid sequences and control
 * characters but TAB each become U+FFFD.
 */
export function safeText(bytes: Uint8Array): string {
  return replaceControls(decoder.decode(bytes));
}

/**
 * A stream that makes bytes safe to print on a terminal: UTF-8 is decoded
 * (invalid sequences become U+FFFD), line endings `\n` and `\r\n` and TAB
 * pass, and every other control character (a bare `\r`, escape sequences)
 * becomes U+FFFD. For a pipe or a file, copy bytes as they are instead.
 */
export function terminalSafeStream(): TransformStream<Uint8Array, Uint8Array> {
  const streamDecoder = new TextDecoder();
  const encoder = new TextEncoder();
  /** A `\r` at the end of the last chunk: a line ending if `\n` follows. */
  let cr = false;
  const clean = (text: string): string => {
    if (cr) text = `\r${text}`;
    cr = text.endsWith("\r");
    if (cr) text = text.slice(0, -1);
    return text.split("\r\n").map((part) =>
      part.split("\n").map(replaceControls).join("\n")
    ).join("\r\n");
  };
  return new TransformStream({
    transform(chunk, controller) {
      const text = clean(streamDecoder.decode(chunk, { stream: true }));
      if (text.length > 0) controller.enqueue(encoder.encode(text));
    },
    flush(controller) {
      let text = clean(streamDecoder.decode());
      if (cr) text += REPLACEMENT;
      if (text.length > 0) controller.enqueue(encoder.encode(text));
    },
  });
}
