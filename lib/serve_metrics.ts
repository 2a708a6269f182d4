import { assertPort, textResponse } from "./_helpers.ts";
import { echoRegistry } from "./metrics/echo_registry.ts";
import type { EchoServer } from "./types.ts";

/** Where {@linkcode serveMetrics} listens. */
export interface ServeMetricsOptions {
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port to listen on; 0 picks a free one (see the returned server's
   * `addr`).
   *
   * @default {9464}
   */
  port?: number;
  /** Aborting it stops the metrics server (not the echo server). */
  signal?: AbortSignal;
}

/**
 * Serves `server`'s metrics in Prometheus's text format at `/metrics`, and
 * its health (`/healthz`: 200; `/readyz`: 200, or 503 once
 * {@linkcode EchoServer.draining}), over HTTP with `Deno.serve`: the
 * metrics count connections, refusals by reason, bytes and datagrams by
 * transport, TLS and PROXY header failures, clients dropped
 * for full queues, `tcp_echo_build_info{version,engine,mode}`, and the
 * process's CPU, memory and event-loop lag. Across all workers: one scrape
 * sees the whole server. The values are the counters the server keeps
 * anyway, read when scraped; nothing is added to the path of a byte.
 *
 * @example Scrape it
 * ```ts
 * import { serveEcho } from "@tcp-echo/tcp-echo";
 * import { serveMetrics } from "@tcp-echo/tcp-echo/metrics";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * await using metrics = serveMetrics(server, { port: 0 });
 * const response = await fetch(`http://127.0.0.1:${metrics.addr.port}/metrics`);
 * assert.match(await response.text(), /^tcp_echo_connections_active 0$/m);
 * ```
 *
 * @param server The echo server to report on.
 * @param options Where to listen.
 * @returns The HTTP server: `addr`, `finished`, `shutdown()`.
 * @throws {RangeError} `port` is not a port number (the error's `option`
 * field says `port`).
 * @throws {Deno.errors.AddrInUse} The port is taken.
 */
export function serveMetrics(
  server: EchoServer<Deno.Addr>,
  options: ServeMetricsOptions = {},
): Deno.HttpServer<Deno.NetAddr> {
  const { hostname = "127.0.0.1", port = 9464, signal } = options;
  assertMetricsOptions(options);
  const route = metricsRoute(server);
  return Deno.serve(
    { hostname, port, signal, onListen: () => {} },
    (request) =>
      route(request) ??
        new Response("Not found: try /metrics\n", { status: 404 }),
  );
}

/**
 * `/metrics` of `server`, answered; undefined for any other path: for
 * server.ts, which may serve it beside the control API on one listener.
 * Not exported from metrics.ts.
 */
export function metricsRoute(
  server: EchoServer<Deno.Addr>,
): (request: Request) => Promise<Response> | undefined {
  const metrics = echoRegistry(server);
  return (request) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/healthz") {
      return Promise.resolve(textResponse(200, "ok\n"));
    }
    if (pathname === "/readyz") {
      return Promise.resolve(
        server.draining
          ? textResponse(503, "draining\n")
          : textResponse(200, "ready\n"),
      );
    }
    if (pathname !== "/metrics") return undefined;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return Promise.resolve(
        new Response("Method not allowed\n", {
          status: 405,
          headers: { allow: "GET, HEAD" },
        }),
      );
    }
    return metrics.scrape().then((text) =>
      new Response(text, { headers: { "content-type": metrics.contentType } })
    );
  };
}

/**
 * Throws what {@linkcode serveMetrics} would throw for `options` before it
 * listens (a `RangeError` whose `option` and `reason` fields say what is
 * wrong): for server.ts, which checks its flags before it starts anything.
 * Not exported from metrics.ts.
 */
export function assertMetricsOptions(options: ServeMetricsOptions): void {
  assertPort(options.port ?? 0);
}
