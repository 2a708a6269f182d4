// Private: how the WebSocket listener closes a connection without losing
// what it sent last (a response, a close frame) to a reset: it ends its
// stream, then reads and drops what the client still sends until the
// client's end, for a while, before it closes. Not exported from mod.ts.

/** How long a close waits, in all, for the client's end of stream. */
const LINGER_MS = 1000;
/** What a close reads and drops, at most. */
const LINGER_BYTES = 1 << 20;

/**
 * Closes `conn` once `after` has settled (what is still being sent), its
 * stream ended and the client's end read, or LINGER_MS or LINGER_BYTES
 * over. `reading` is a read of `conn` already in flight, awaited first.
 */
export async function lingeringClose(
  conn: Deno.Conn,
  options: { after?: Promise<unknown>; reading?: Promise<number | null> } = {},
): Promise<void> {
  const { promise: timeUp, resolve } = Promise.withResolvers<"time">();
  const timer = setTimeout(() => resolve("time"), LINGER_MS);
  const buffer = new Uint8Array(16 * 1024);
  try {
    const after = options.after?.catch(() => {});
    if (await Promise.race([after, timeUp]) === "time") return;
    await conn.closeWrite();
    let reading = options.reading;
    for (let dropped = 0; dropped < LINGER_BYTES;) {
      reading ??= conn.read(buffer);
      reading.catch(() => {}); // Closed below when the time is up.
      const n = await Promise.race([reading, timeUp]);
      reading = undefined;
      if (n === null || n === "time") return;
      dropped += n;
    }
  } catch {
    // Reset, or closed already: nothing more to wait for.
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
}
