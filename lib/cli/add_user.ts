// Private: the server CLI's `--add-user NAME --chat-users FILE`: a
// password read from the terminal without echo (twice), or from stdin's
// first line, hashed with scrypt, and written into the users file (made
// if missing, the user's line replaced if present) through a new file
// renamed over the old, readable by its owner only. Not exported from
// mod.ts.

import { isChatName } from "../relay/chat.ts";
import { formatUsers, hashPassword, parseUsers } from "../relay/chat_users.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Registers `name` in the users file at `path`, and says what it did.
 *
 * @throws {Error} The name or password is not valid, the file is not a
 * users file, or it cannot be written: the message says which.
 */
export async function addUser(path: string, name: string): Promise<string> {
  if (!isChatName(name)) {
    throw new Error(`${JSON.stringify(name)} is not a chat name`);
  }
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const users = parseUsers(text, isChatName);
  const password = Deno.stdin.isTerminal()
    ? await askTwice(name)
    : await firstLine(Deno.stdin.readable);
  if (password === "") throw new Error("the password is empty");
  const had = users.get(name.toLowerCase());
  users.set(name.toLowerCase(), { name, hash: await hashPassword(password) });
  const next = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(next, formatUsers(users.values()), { mode: 0o600 });
  await Deno.rename(next, path);
  return had === undefined
    ? `Added ${name} to ${path} (${users.size} registered)`
    : `Changed the password of ${had.name} in ${path}`;
}

/** The first line of `input`, without its ending. */
async function firstLine(input: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of input) {
    text += decoder.decode(chunk, { stream: true });
    if (text.includes("\n")) break;
  }
  return text.split("\n")[0].replace(/\r$/, "");
}

async function askTwice(name: string): Promise<string> {
  const first = await ask(`Password for ${name}: `);
  const again = await ask("Again: ");
  if (first !== again) throw new Error("the two passwords differ");
  return first;
}

/** Asks on the terminal, with echo off (raw mode), until Enter. */
async function ask(prompt: string): Promise<string> {
  await Deno.stderr.write(encoder.encode(prompt));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buffer = new Uint8Array(64);
  try {
    while (true) {
      const n = await Deno.stdin.read(buffer);
      if (n === null) break;
      for (const byte of buffer.subarray(0, n)) {
        if (byte === 0x03) throw new Error("interrupted");
        if (byte === 0x0d || byte === 0x0a) {
          return decoder.decode(Uint8Array.from(bytes));
        }
        if (byte === 0x7f || byte === 0x08) bytes.pop();
        else bytes.push(byte);
      }
    }
    return decoder.decode(Uint8Array.from(bytes));
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(encoder.encode("\n"));
  }
}
