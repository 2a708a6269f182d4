/**
 * Prometheus metrics for an echo server, apart from the server itself so
 * that `serveEcho` stays free of HTTP and of prom-client:
 * {@linkcode serveMetrics} serves a running server's counters at
 * `/metrics`.
 *
 * ```ts
 * import { serveEcho } from "@tcp-echo/tcp-echo";
 * import { serveMetrics } from "@tcp-echo/tcp-echo/metrics";
 *
 * await using server = serveEcho({ port: 0 });
 * await using metrics = serveMetrics(server, { port: 0 });
 * console.log(`curl http://127.0.0.1:${metrics.addr.port}/metrics`);
 * ```
 *
 * @module
 */

export { serveMetrics, type ServeMetricsOptions } from "./lib/serve_metrics.ts";
export type {
  CloseReason,
  ClusterStatus,
  EchoMode,
  EchoServer,
  EchoServerStats,
} from "./lib/types.ts";
