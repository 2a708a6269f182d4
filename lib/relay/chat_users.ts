// Private: chat's registered users: the users file (a name and a password
// hash a line, in the PHC string format of scrypt from node:crypto), read
// and written as text, and passwords checked against it in constant time.
// The file is text the caller reads (serveEcho's `chatUsers`, as `cert` is
// PEM text); only the server's --add-user and SIGHUP touch the disk. Not
// exported from mod.ts.

import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { optionError } from "../_helpers.ts";

/** scrypt's cost for new hashes: N = 2^15, r = 8, p = 1 (about 50 ms). */
const LOG_N = 15;
const BLOCK = 8;
const PARALLEL = 1;
const KEY_BYTES = 32;
const SALT_BYTES = 16;
/** The most a users file may ask of scrypt: N = 2^20, r = 16, p = 4. */
const MAX_LOG_N = 20;
const MAX_BLOCK = 16;
const MAX_PARALLEL = 4;

/** `$scrypt$ln=15,r=8,p=1$SALT$HASH` (base64 without padding). */
const PHC =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,88})\$([A-Za-z0-9+/]{16,88})$/;

/** A registered user: the name as written, and its password's hash. */
interface Registered {
  name: string;
  hash: string;
}

/**
 * The users of a users file, by name in lower case.
 *
 * @throws {TypeError} A line is not `NAME:HASH` with a valid name and an
 * scrypt hash (the error says which line).
 */
export function parseUsers(
  text: string,
  validName: (name: string) => boolean,
): Map<string, Registered> {
  const users = new Map<string, Registered>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    const problem = colon === -1
      ? "is not NAME:HASH"
      : !validName(name)
      ? `names ${JSON.stringify(name.slice(0, 40))}, not a chat name`
      : !PHC.test(hash) || paramsOf(hash) === undefined
      ? "has no scrypt hash of ours ($scrypt$ln=…,r=…,p=…$salt$hash)"
      : users.has(name.toLowerCase())
      ? `names ${name} again`
      : undefined;
    if (problem !== undefined) {
      throw optionError("chatUsers", `line ${i + 1} ${problem}`, TypeError);
    }
    users.set(name.toLowerCase(), { name, hash });
  });
  return users;
}

/** The text of a users file: a comment, then `NAME:HASH` a line. */
export function formatUsers(users: Iterable<Registered>): string {
  const lines = [
    "# tcp-echo chat users: NAME:scrypt hash (deno task server --add-user NAME)",
  ];
  for (const { name, hash } of users) lines.push(`${name}:${hash}`);
  return `${lines.join("\n")}\n`;
}

function paramsOf(hash: string) {
  const [, ln, r, p, salt, key] = PHC.exec(hash)!;
  const params = { logN: Number(ln), r: Number(r), p: Number(p), salt, key };
  if (params.logN < 1 || params.logN > MAX_LOG_N) return undefined;
  if (params.r < 1 || params.r > MAX_BLOCK) return undefined;
  if (params.p < 1 || params.p > MAX_PARALLEL) return undefined;
  return params;
}

function derive(
  password: string,
  salt: Uint8Array,
  logN: number,
  r: number,
  p: number,
  length: number,
): Promise<Uint8Array> {
  const N = 2 ** logN;
  return new Promise((resolve, reject) =>
    scrypt(
      password.normalize("NFC"),
      salt,
      length,
      { N, r, p, maxmem: 256 * N * r + 1024 * 1024 },
      (error, key) => error === null ? resolve(key) : reject(error),
    )
  );
}

const b64 = (bytes: Uint8Array) =>
  btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");
const unb64 = (text: string) =>
  Uint8Array.from(
    atob(text + "=".repeat((4 - text.length % 4) % 4)),
    (c) => c.charCodeAt(0),
  );

/** A new hash of `password`, with a random salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = new Uint8Array(randomBytes(SALT_BYTES));
  const key = await derive(password, salt, LOG_N, BLOCK, PARALLEL, KEY_BYTES);
  return `$scrypt$ln=${LOG_N},r=${BLOCK},p=${PARALLEL}$${b64(salt)}$${
    b64(key)
  }`;
}

/** Whether `password` is the one `hash` was made from (constant time). */
export async function verifyPassword(
  password: string,
  hash: string,
): Promise<boolean> {
  const params = PHC.test(hash) ? paramsOf(hash) : undefined;
  if (params === undefined) return false;
  const expected = unb64(params.key);
  const key = await derive(
    password,
    unb64(params.salt),
    params.logN,
    params.r,
    params.p,
    expected.length,
  );
  return timingSafeEqual(key, expected);
}

/** A dummy hash, checked when the name is not registered (same time). */
let dummy: Promise<string> | undefined;

/**
 * The registered users of a server, replaced as a whole when the file is
 * read again (SIGHUP). Its data is private: copied to a worker, it is
 * empty, and only the main thread's relay asks it.
 */
export class ChatUsers {
  #users: Map<string, Registered>;
  #validName: (name: string) => boolean;

  /** @throws {TypeError} `text` is not a users file (see parseUsers). */
  constructor(text: string, validName: (name: string) => boolean) {
    this.#validName = validName;
    this.#users = parseUsers(text, validName);
  }

  /** Takes the users of `text`; on an error, the old ones stay. */
  replace(text: string): void {
    this.#users = parseUsers(text, this.#validName);
  }

  get size(): number {
    return this.#users.size;
  }

  /** The name as registered, or undefined if `name` is not registered. */
  registered(name: string): string | undefined {
    return this.#users.get(name.toLowerCase())?.name;
  }

  /**
   * The registered name when `password` is `name`'s, else undefined. An
   * unknown name takes as long as a wrong password.
   */
  async check(name: string, password: string): Promise<string | undefined> {
    const user = this.#users.get(name.toLowerCase());
    if (user === undefined) {
      dummy ??= hashPassword("not a password");
      await verifyPassword(password, await dummy);
      return undefined;
    }
    return await verifyPassword(password, user.hash) ? user.name : undefined;
  }
}
