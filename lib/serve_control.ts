import { assertPort, optionError } from "./_helpers.ts";
import { controlRoute } from "./control/api.ts";
import type { EchoServer } from "./types.ts";

/** Where {@linkcode serveControl} listens, and whom it answers. */
export interface ServeControlOptions {
  /**
   * The address to listen on. Without a `token`, only clients on the
   * loopback are answered, whatever the address.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port to listen on (toxiproxy's API port by default); 0 picks a
   * free one (see the returned server's `addr`).
   *
   * @default {8474}
   */
  port?: number;
  /**
   * A secret every request must carry as `Authorization: Bearer TOKEN`;
   * with it, clients from anywhere the address reaches are answered.
   */
  token?: string;
  /** Aborting it stops the control API (not the echo server). */
  signal?: AbortSignal;
}

/**
 * Serves a small HTTP API that reads and changes `server`'s faults while it
 * runs, as toxiproxy's REST API does its toxics, with JSON in the spec of
 * {@linkcode ServeEchoOptions.faults}:
 *
 * | request | does |
 * | --- | --- |
 * | `GET /faults` | the faults now (defaults filled in) |
 * | `PUT /faults` | replaces them with the body's list |
 * | `POST /faults/NAME` | adds the body's fault under `NAME` (201; 409 if taken) |
 * | `POST /faults` | adds the body's fault, named by its `name` or kind |
 * | `GET /faults/NAME` | one fault (404 if none) |
 * | `DELETE /faults/NAME` | removes one (204; 404 if none) |
 * | `DELETE /faults` | removes them all (204) |
 *
 * A `POST` body may also be one fault in the command line's form
 * (`latency:ms=100,jitter=10`). A spec that is not valid is a 400 whose
 * `error` names the field, and one the engine cannot act out a 422; the
 * faults before stay. Changes apply in the order they came, to new
 * connections at once, and to open ones when the server was started with
 * `liveFaults`.
 *
 * @example Add a latency, then lift it
 * ```ts
 * import { serveControl, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0, liveFaults: true });
 * await using control = serveControl(server, { port: 0 });
 * const api = `http://127.0.0.1:${control.addr.port}/faults`;
 * const added = await fetch(`${api}/slow`, {
 *   method: "POST",
 *   body: JSON.stringify({ kind: "latency", ms: 100 }),
 * });
 * assert.equal(added.status, 201);
 * await added.body?.cancel();
 * assert.deepEqual(server.faults.map((f) => f.name), ["slow"]);
 * const lifted = await fetch(`${api}/slow`, { method: "DELETE" });
 * assert.equal(lifted.status, 204);
 * assert.deepEqual(server.faults, []);
 * ```
 *
 * @param server The echo server whose faults it changes.
 * @param options Where to listen, and the token.
 * @returns The HTTP server: `addr`, `finished`, `shutdown()`.
 * @throws {RangeError} `port` is not a port number, or `token` is empty
 * (the error's `option` field names it).
 * @throws {Deno.errors.AddrInUse} The port is taken.
 */
export function serveControl(
  server: EchoServer<Deno.Addr>,
  options: ServeControlOptions = {},
): Deno.HttpServer<Deno.NetAddr> {
  const { hostname = "127.0.0.1", port = 8474, token, signal } = options;
  assertControlOptions(options);
  const route = controlRoute(server, token);
  return Deno.serve(
    { hostname, port, signal, onListen: () => {} },
    (request, info) =>
      route(request, info) ??
        new Response("Not found: try /faults\n", { status: 404 }),
  );
}

/**
 * Throws what {@linkcode serveControl} would throw for `options` before
 * it listens: for server.ts, which checks its flags before it starts
 * anything. Not exported from mod.ts.
 */
export function assertControlOptions(options: ServeControlOptions): void {
  assertPort(options.port ?? 0);
  if (options.token !== undefined && !/^[\x21-\x7e]+$/.test(options.token)) {
    throw optionError(
      "token",
      "must be printable ASCII without spaces, and not empty",
    );
  }
}
