// Private: serveEcho's `info` mode, for load-balancer and mesh tests: each
// line is a command and gets one line back, saying who answered and whom it
// saw, in the words of Kubernetes' agnhost netexec (`hostname`, `clientip`,
// `echo`). The same answers serve TCP, TLS, Unix streams and UDP datagrams,
// free of I/O (see ./session.ts). Not exported from mod.ts.

import { lineContent } from "../_lines.ts";
import { bareAddress } from "../_helpers.ts";
import { replaceControls } from "../_text.ts";
import {
  type HandshakeFacts,
  LinesSession,
  lineTooLong,
  type SessionFacts,
  type Step,
} from "./session.ts";
import { optionError } from "../_helpers.ts";
import type { Ending } from "../core/endings.ts";

/** The commands, for `help`. */
export const INFO_COMMANDS =
  "hostname, id, clientip, clientport, serverip, serverport, transport, sni, alpn, clientcert, echo TEXT, time, help, exit, quit";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * The answer to one command line (without its line ending), or `undefined`
 * for `exit` and `quit`, which close the connection.
 */
export function infoAnswer(
  line: string,
  facts: SessionFacts,
): string | undefined {
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
    case "sni":
      return tlsAnswer(
        facts,
        (tls) =>
          tls.serverName === null
            ? "ERR the default engine cannot tell (the native engine can)"
            : replaceControls(tls.serverName ?? "none"),
      );
    case "alpn":
      return tlsAnswer(facts, (tls) => replaceControls(tls.alpn ?? "none"));
    case "clientcert":
      return tlsAnswer(
        facts,
        (tls) => replaceControls(tls.clientCert ?? "none"),
      );
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

/** `answer` of the connection's TLS facts, or why there are none. */
function tlsAnswer(
  facts: SessionFacts,
  answer: (tls: HandshakeFacts) => string,
): string {
  if (facts.tls === undefined) return `ERR not TLS (${facts.transport})`;
  return answer(facts.tls);
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

/**
 * What a session of a client of `server` (this end of its connection) may
 * answer with, in a server with `config`'s host and id.
 */
export function sessionFacts(
  config: { host: string; id: string },
  transport: SessionFacts["transport"],
  client: Deno.Addr,
  server: Deno.Addr,
  tls?: HandshakeFacts,
): SessionFacts {
  const { host } = config;
  return {
    host,
    id: config.id || defaultId(host, server),
    transport,
    client,
    server,
    ...(tls === undefined ? {} : { tls }),
  };
}

/** `HOSTNAME:PORT` (or the socket's path), when no `id` was given. */
export function defaultId(host: string, local: Deno.Addr): string {
  return `${host}:${
    "port" in local ? local.port : "path" in local ? local.path : ""
  }`;
}

/**
 * Info mode: answers each line until the client half-closes, says `exit` or
 * `quit`, or sends a line over the limit.
 */
export class InfoSession extends LinesSession {
  #facts: SessionFacts;

  constructor(facts: SessionFacts, maxLineBytes: number) {
    super(maxLineBytes);
    this.#facts = facts;
  }

  protected answer(
    lines: Uint8Array[],
    ending: Ending | undefined,
  ): Step {
    let replies = "";
    let close = ending;
    for (const line of lines) {
      const answer = infoAnswer(decoder.decode(lineContent(line)), this.#facts);
      if (answer === undefined) {
        close = "exit command";
        break;
      }
      replies += `${answer}\n`;
    }
    if (close === undefined && this.splitter.tooLong) {
      replies += lineTooLong(this.splitter.maxLineBytes);
      close = "line too long";
    }
    return {
      send: replies === "" ? undefined : encoder.encode(replies),
      close,
    };
  }
}

/**
 * The machine's hostname, for info mode (or for `/info`, which `option`
 * then names).
 */
export function infoHost(option = "mode"): string {
  try {
    return Deno.hostname();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    throw optionError(
      option,
      `${
        option === "mode" ? "info mode" : "/info"
      } answers hostname: run Deno with --allow-sys=hostname`,
      Deno.errors.NotCapable,
    );
  }
}

/**
 * What `GET /info` answers (JSON): info mode's facts, with the request's
 * method, path and headers, as the echo backends of ingress tests answer.
 */
export function infoDocument(
  facts: SessionFacts,
  request: { method: string; path: string; headers: Headers },
  mode: string,
): Record<string, unknown> {
  return {
    hostname: facts.host,
    mode,
    id: facts.id,
    client: { ip: address(facts.client), port: Number(port(facts.client)) },
    server: { ip: address(facts.server), port: Number(port(facts.server)) },
    transport: facts.transport,
    time: new Date().toISOString(),
    request: {
      method: request.method,
      path: request.path,
      headers: Object.fromEntries(request.headers),
    },
  };
}
