// Private: the control API's routes (issue 23), as toxiproxy's REST API
// changes its toxics: the faults of a running server read and changed over
// HTTP, with JSON bodies in the same spec as serveEcho's `faults` and
// --faults FILE. A route returns undefined for a path that is not its own,
// so that the command line can serve it and the metrics on one listener.
// Who may change faults: with a token, whoever sends it as a bearer token;
// without, clients on the loopback alone. Not exported from mod.ts.

import { getLogger } from "../_logtape.ts";
import { LOG_CATEGORY } from "../_helpers.ts";
import { checkFault, faultFields, specOf } from "../faults/spec.ts";
import { addressList } from "../rules/cidr.ts";
import type { EchoServer, FaultSpec } from "../types.ts";

const logger = getLogger([LOG_CATEGORY, "control"]);

/** A request to one of our routes: answered, or undefined when not ours. */
export type Route = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.Addr>,
) => Promise<Response> | undefined;

/** The largest body the API reads: a spec of many faults fits. */
const MAX_BODY = 64 * 1024;

const LOOPBACK = addressList(["127.0.0.0/8", "::1/128"]);

/**
 * The routes under `/faults` of `server`: `GET /faults`, `PUT /faults`
 * (replace), `POST /faults` and `POST /faults/NAME` (add), `GET`,
 * `DELETE /faults/NAME`, `DELETE /faults` (clear). With `token`, every
 * request must carry it (`Authorization: Bearer TOKEN`); without, only
 * clients on the loopback are answered.
 */
export function controlRoute(
  server: EchoServer<Deno.Addr>,
  token?: string,
): Route {
  /** Changes in the order they came: each reads what the last one left. */
  let changing: Promise<unknown> = Promise.resolve();
  const change = (run: () => Promise<Response>): Promise<Response> => {
    const done = changing.then(run);
    changing = done.catch(() => {});
    return done;
  };
  return (request, info) => {
    const { pathname } = new URL(request.url);
    const match = /^\/faults(?:\/([^/]*))?\/?$/.exec(pathname);
    if (match === null) return undefined;
    const denied = refusal(request, info.remoteAddr, token);
    if (denied !== undefined) return Promise.resolve(denied);
    const name = match[1] === undefined
      ? undefined
      : decodeURIComponent(match[1]);
    const from = clientOf(info.remoteAddr);
    return answer(async () => {
      if (name === undefined) {
        switch (request.method) {
          case "GET":
          case "HEAD":
            return json(200, server.faults);
          case "PUT": {
            const spec = await body(request);
            return change(async () => {
              await server.setFaults(spec as FaultSpec[]);
              logger.info("Control: faults replaced by {from}", { from });
              return json(200, server.faults);
            });
          }
          case "POST":
            return add(await body(request, true), undefined);
          case "DELETE":
            return change(async () => {
              await server.setFaults([]);
              logger.info("Control: faults cleared by {from}", { from });
              return new Response(null, { status: 204 });
            });
          default:
            return notAllowed("GET, HEAD, PUT, POST, DELETE");
        }
      }
      switch (request.method) {
        case "GET":
        case "HEAD": {
          const fault = server.faults.find((f) => f.name === name);
          return fault === undefined ? noSuch(name) : json(200, fault);
        }
        case "POST":
          return add(await body(request, true), name);
        case "DELETE":
          return change(async () => {
            const faults = server.faults;
            if (!faults.some((f) => f.name === name)) return noSuch(name);
            await server.setFaults(faults.filter((f) => f.name !== name));
            logger.info("Control: fault {name} removed by {from}", {
              name,
              from,
            });
            return new Response(null, { status: 204 });
          });
        default:
          return notAllowed("GET, HEAD, POST, DELETE");
      }
    });

    /** Adds `entry`, named `name` (the path's) or by itself. */
    function add(entry: unknown, name: string | undefined): Promise<Response> {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        throw new BadRequest("the body must be one fault (a JSON object)");
      }
      const fields = { ...entry } as Record<string, unknown>;
      if (name !== undefined) {
        if (fields.name !== undefined && fields.name !== name) {
          throw new BadRequest(
            `the body names ${JSON.stringify(fields.name)}, the path ${
              JSON.stringify(name)
            }`,
          );
        }
        fields.name = name;
      }
      const fault = checkFault(fields);
      return change(async () => {
        const faults = server.faults;
        if (faults.some((f) => f.name === fault.name)) {
          return problem(
            409,
            `a fault named ${fault.name} exists: DELETE /faults/${fault.name} first, or PUT /faults`,
          );
        }
        await server.setFaults([...faults, specOf(fault)]);
        logger.info("Control: fault {name} added by {from}", {
          name: fault.name,
          from,
        });
        return json(201, server.faults.find((f) => f.name === fault.name));
      });
    }
  };
}

/** Why `request` is refused (401, 403), or undefined when it may go on. */
function refusal(
  request: Request,
  peer: Deno.Addr,
  token: string | undefined,
): Response | undefined {
  if (token !== undefined) {
    const given = /^Bearer (.+)$/i.exec(
      request.headers.get("authorization") ?? "",
    )?.[1];
    if (given !== undefined && sameText(given, token)) return undefined;
    return problem(
      401,
      "a bearer token is required (Authorization: Bearer …)",
      {
        "www-authenticate": 'Bearer realm="tcp-echo control"',
      },
    );
  }
  const client = clientOf(peer);
  if (client !== undefined && LOOPBACK.match(client) !== undefined) {
    return undefined;
  }
  return problem(
    403,
    "the control API answers other hosts only with a token " +
      "(--control-token-file, or serveControl's token)",
  );
}

/** Compares two texts in a time that does not say where they differ. */
function sameText(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  }
  return diff === 0;
}

/** An IP client's address (an IPv4-mapped one as IPv4), or undefined. */
function clientOf(addr: Deno.Addr): string | undefined {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return undefined;
  return addr.hostname.replace(/^::ffff:(?=\d+\.)/i, "");
}

/** A request the API cannot take, with its reason (400). */
class BadRequest extends Error {}

/**
 * The body: JSON (a list or a fault), or, with `oneFault`, a fault in the
 * command line's form (`latency:ms=100`).
 */
async function body(request: Request, oneFault = false): Promise<unknown> {
  const length = Number(request.headers.get("content-length") ?? 0);
  if (length > MAX_BODY) throw new BadRequest("the body is too large");
  const text = (await request.text()).trim();
  if (text.length > MAX_BODY) throw new BadRequest("the body is too large");
  if (text === "") throw new BadRequest("the body is empty: send a fault");
  if (oneFault && !/^[[{]/.test(text)) return faultFields(text);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new BadRequest(`the body is not JSON: ${(error as Error).message}`);
  }
}

/** `run`'s response, or the problem it threw, worded for the client. */
async function answer(run: () => Promise<Response>): Promise<Response> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof BadRequest || error instanceof TypeError) {
      return problem(400, (error as Error).message);
    }
    if (error instanceof RangeError) return problem(422, error.message);
    logger.error("Control: {error}", { error: (error as Error).message });
    return problem(500, (error as Error).message);
  }
}

function json(status: number, value: unknown): Response {
  return new Response(JSON.stringify(value, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

function problem(
  status: number,
  error: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ error }) + "\n", {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function noSuch(name: string): Response {
  return problem(404, `no fault named ${name}`);
}

function notAllowed(allow: string): Response {
  return new Response(JSON.stringify({ error: "method not allowed" }) + "\n", {
    status: 405,
    headers: { allow, "content-type": "application/json" },
  });
}
