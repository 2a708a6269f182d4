// Private: serveEcho's `info` mode, for load-balancer and mesh tests: each
// line is a command and gets one line back, saying who answered and whom it
// saw, in the words of Kubernetes' agnhost netexec (`hostname`, `clientip`,
// `echo`). The same answers serve TCP, TLS, Unix streams and UDP datagrams.
// Not exported from mod.ts.

import { lineContent } from "../_lines.ts";
import { bareAddress } from "../_helpers.ts";
import { replaceControls } from "../_text.ts";
import type { ServerConfig } from "../core/config.ts";
import {
  closeGently,
  type Connection,
  discardRest,
} from "../server/connection.ts";
import { lineTooLong } from "./line.ts";
import { readLines } from "./read_lines.ts";

/** What the answers are about: one client of one server. */
export interface InfoFacts {
  /** The machine's hostname. */
  host: string;
  /** The server's `id`. */
  id: string;
  transport: "tcp" | "tls" | "unix" | "udp";
  client: Deno.Addr;
  server: Deno.Addr;
}

/** The commands, for `help`. */
export const INFO_COMMANDS =
  "hostname, id, clientip, clientport, serverip, serverport, transport, echo TEXT, time, help, exit, quit";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * The answer to one command line (without its line ending), or `undefined`
 * for `exit` and `quit`, which close the connection.
 */
export function infoAnswer(line: string, facts: InfoFacts): string | undefined {
  const [command, ...rest] = line.split(" ");
  const { client, server } = facts;
  switch (command.toLowerCase()) {
    case "hostname":
      return facts.host;
    case "id":
      return facts.id;
    case "clientip":
      return address(client);
    case "clientport":
      return port(client);
    case "serverip":
      return address(server);
    case "serverport":
      return port(server);
    case "transport":
      return facts.transport;
    case "echo":
      return replaceControls(rest.join(" "));
    case "time":
      return new Date().toISOString();
    case "help":
      return `commands: ${INFO_COMMANDS}`;
    case "exit":
    case "quit":
      if (rest.length === 0) return undefined;
      // Falls through: "exit now" is not a command.
    default:
      return `ERR unknown command: ${
        replaceControls(line.length > 64 ? `${line.slice(0, 64)}…` : line)
      }`;
  }
}

function address(addr: Deno.Addr): string {
  if (addr.transport === "unix" || addr.transport === "unixpacket") {
    return "ERR no IP address on a Unix socket";
  }
  return "hostname" in addr ? bareAddress(addr.hostname) : "";
}

function port(addr: Deno.Addr): string {
  if (addr.transport === "unix" || addr.transport === "unixpacket") {
    return "ERR no port on a Unix socket";
  }
  return "port" in addr ? String(addr.port) : "";
}

/** `HOSTNAME:PORT` (or the socket's path), when no `id` was given. */
export function defaultId(host: string, local: Deno.Addr): string {
  return `${host}:${
    "port" in local ? local.port : "path" in local ? local.path : ""
  }`;
}

/** The facts of a stream connection in `config`'s server. */
export function streamFacts(c: Connection, config: ServerConfig): InfoFacts {
  return {
    host: config.host,
    id: config.id || defaultId(config.host, c.conn.localAddr),
    transport: config.listen.transport,
    client: c.conn.remoteAddr,
    server: c.conn.localAddr,
  };
}

/**
 * Info mode on a stream: answers each line until the client half-closes,
 * says `exit` or `quit`, or sends a line over the limit. Returns why it
 * ended.
 */
export async function infoLines(
  c: Connection,
  config: ServerConfig,
): Promise<string> {
  const { maxLineBytes } = config;
  const facts = streamFacts(c, config);
  for await (const { lines, end, tooLong } of readLines(c, maxLineBytes)) {
    let replies = "";
    let quit = false;
    for (const line of lines) {
      const answer = infoAnswer(decoder.decode(lineContent(line)), facts);
      if (answer === undefined) {
        quit = true;
        break;
      }
      replies += `${answer}\n`;
    }
    if (replies !== "") await c.out.send(encoder.encode(replies));
    if (quit) return await closeGently(c, "exit command");
    if (tooLong) {
      await c.out.send(lineTooLong(maxLineBytes));
      return await closeGently(c, "line too long");
    }
    if (end) return await closeGently(c, "closed by client");
  }
  return await discardRest(c);
}
