// Private: a Prometheus registry (prom-client) that reads an echo server's
// counters when it is scraped: the shared counters every listener and
// worker already keeps (lib/core/counters.ts), summed once a scrape, so
// that metrics add nothing to the path of a byte. Not exported from mod.ts.

import type * as Prom from "npm:prom-client@^15.1.3";
import denoJson from "../../deno.json" with { type: "json" };
import type { ClusterStatus, EchoServer, EchoServerStats } from "../types.ts";
import { DURATION_BUCKETS, HANDSHAKE_BUCKETS } from "../core/counters.ts";
import { importLazily } from "../_lazy.ts";

const client = await importLazily<typeof Prom>("npm:prom-client@^15.1.3");

/** prom-client's default metrics that read /proc/self. */
const PROC_SELF_METRICS = [
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
  "process_max_fds",
];

/** One of our metrics: its value, or its values by label, from the stats. */
interface Reading {
  name: string;
  help: string;
  type: "counter" | "gauge";
  label?: string;
  read: (stats: EchoServerStats) => number | Record<string, number>;
}

/** Every metric read from the counters, in Prometheus's naming. */
function readings(server: EchoServer<Deno.Addr>): Reading[] {
  // The stream transport of this server (none for UDP alone); UDP's
  // counters are apart.
  const byTransport = (streams: number, datagrams: number) =>
    server.transport === "udp"
      ? { udp: datagrams }
      : { [server.transport]: streams, udp: datagrams };
  const relaying = server.mode === "broadcast" || server.mode === "chat";
  return [
    {
      name: "tcp_echo_connections_active",
      help: "Connections open now.",
      type: "gauge",
      read: (s) => s.active,
    },
    {
      name: "tcp_echo_connections_accepted_total",
      help: "Connections accepted, over maxConnections included.",
      type: "counter",
      read: (s) => s.accepted,
    },
    {
      name: "tcp_echo_connections_refused_total",
      help: "Connections closed before a byte was echoed, by reason.",
      type: "counter",
      label: "reason",
      read: (s) => ({
        max_connections: s.rejected,
        denied: s.refused.denied,
        not_allowed: s.refused.notAllowed,
        per_address: s.refused.perAddress,
        connect_rate: s.refused.connectRate,
      }),
    },
    {
      name: "tcp_echo_connections_closed_total",
      help: "Connections closed after they were accepted, by reason.",
      type: "counter",
      label: "reason",
      // The stats' camelCase reasons as Prometheus' snake_case labels.
      read: (s) =>
        Object.fromEntries(
          Object.entries(s.closed).map(([reason, n]) => [snakeCase(reason), n]),
        ),
    },
    // Only in the modes that relay lines.
    ...(relaying
      ? [
        {
          name: "tcp_echo_relay_lines_total",
          help: "Lines delivered to this server's members in broadcast and " +
            "chat mode (each once, however many members got it), by mode.",
          type: "counter",
          label: "mode",
          read: (s) => ({ [server.mode]: s.linesRelayed }),
        } satisfies Reading,
      ]
      : []),
    {
      name: "tcp_echo_clients_dropped_total",
      help: "Connections closed because their send queue was full.",
      type: "counter",
      read: (s) => s.dropped,
    },
    {
      name: "tcp_echo_accept_errors_total",
      help: "accept() calls that failed for one connection (a client that " +
        "reset while queued, say).",
      type: "counter",
      read: (s) => s.acceptErrors,
    },
    {
      name: "tcp_echo_tls_handshakes_total",
      help: "TLS handshakes completed.",
      type: "counter",
      read: (s) => s.handshakes,
    },
    {
      name: "tcp_echo_tls_handshake_failures_total",
      help: "TLS handshakes that failed or did not finish in time, by " +
        "reason: protocol, certificate (missing, refused, or ours refused), " +
        "timeout, not_tls.",
      type: "counter",
      label: "reason",
      read: (s) => ({
        protocol: s.handshakeFailuresBy.protocol,
        certificate: s.handshakeFailuresBy.certificate,
        timeout: s.handshakeFailuresBy.timeout,
        not_tls: s.handshakeFailuresBy.notTls,
      }),
    },
    {
      name: "tcp_echo_faulted_connections_total",
      help: "Connections that faults hit (one or more).",
      type: "counter",
      read: (s) => s.faulted,
    },
    {
      name: "tcp_echo_fault_actions_total",
      help: "What faults did: connections a limit ended, hung, reset or " +
        "closed at once (down); UDP replies dropped, duplicated, corrupted " +
        "or reordered.",
      type: "counter",
      label: "action",
      read: (s) => ({ ...s.faultActions }),
    },
    {
      name: "tcp_echo_fault_delayed_bytes_total",
      help: "Bytes that latency, bandwidth and slicer faults held back, " +
        "each way.",
      type: "counter",
      read: (s) => s.faultDelayedBytes,
    },
    {
      name: "tcp_echo_upstream_failures_total",
      help: "Connects to proxy mode's upstream that failed (each closed its " +
        "client's connection).",
      type: "counter",
      read: (s) => s.upstreamFailures,
    },
    {
      name: "tcp_echo_websocket_bad_upgrades_total",
      help: "Requests refused on the WebSocket listener: bad upgrades " +
        "(key, version), bad HTTP, heads not complete in time (408).",
      type: "counter",
      read: (s) => s.websocketBadUpgrades,
    },
    {
      name: "tcp_echo_chat_lines_limited_total",
      help: "Chat lines refused by flood control (--chat-rate), each " +
        "answered ERR to its sender.",
      type: "counter",
      read: (s) => s.chatLinesLimited,
    },
    {
      name: "tcp_echo_chat_logins_total",
      help: "Chat logins: ok, failed (a wrong name or password), refused " +
        "(too many failures, not checked).",
      type: "counter",
      label: "result",
      read: (s) => ({ ...s.chatLogins }),
    },
    {
      name: "tcp_echo_chat_files_total",
      help: "Chat file transfers: done (every byte delivered to the " +
        "receiver), failed (a side went away or never came).",
      type: "counter",
      label: "result",
      read: (s) => ({ ...s.chatFiles }),
    },
    {
      name: "tcp_echo_chat_file_bytes_total",
      help: "Bytes chat file transfers delivered to their receivers.",
      type: "counter",
      read: (s) => s.chatFileBytes,
    },
    {
      name: "tcp_echo_proxy_header_failures_total",
      help: "PROXY protocol headers missing, not valid, late, or from a " +
        "peer that is not a trusted proxy.",
      type: "counter",
      read: (s) => s.proxyHeaderFailures,
    },
    {
      name: "tcp_echo_received_bytes_total",
      help: "Bytes received from clients, by transport.",
      type: "counter",
      label: "transport",
      read: (s) => byTransport(s.bytesIn, s.datagramBytesIn),
    },
    {
      name: "tcp_echo_sent_bytes_total",
      help: "Bytes sent to clients, by transport.",
      type: "counter",
      label: "transport",
      read: (s) => byTransport(s.bytesOut, s.datagramBytesOut),
    },
    {
      name: "tcp_echo_received_datagrams_total",
      help: "UDP datagrams received.",
      type: "counter",
      read: (s) => s.datagramsIn,
    },
    {
      name: "tcp_echo_sent_datagrams_total",
      help: "UDP datagrams sent back.",
      type: "counter",
      read: (s) => s.datagramsOut,
    },
    {
      name: "tcp_echo_datagrams_refused_total",
      help: "UDP datagrams dropped unanswered, by reason.",
      type: "counter",
      label: "reason",
      read: (s) => ({
        denied: s.datagramsRefused,
        rate_limited: s.datagramsRateLimited,
      }),
    },
  ];
}

/** `server`'s metrics, scraped whole. */
export interface EchoMetrics {
  /** The text format's content type. */
  readonly contentType: string;
  /** The metrics now, in Prometheus's text format. */
  scrape(): Promise<string>;
}

/**
 * A registry with `server`'s metrics, its build information, and the
 * process's own (prom-client's default metrics: CPU, memory, event-loop
 * lag). A scrape reads the server's counters once, and its Redis link once.
 */
export function echoRegistry(server: EchoServer<Deno.Addr>): EchoMetrics {
  const registry = new client.Registry();
  // What this scrape reads, for every metric of ours.
  let stats = server.stats;
  let cluster: ClusterStatus | undefined;
  for (const reading of readings(server)) {
    const { name, help, label, read } = reading;
    const configuration = {
      name,
      help,
      labelNames: label === undefined ? [] : [label],
      registers: [registry],
    };
    const set = (
      metric: Prom.Counter | Prom.Gauge,
      apply: (labels: Record<string, string>, value: number) => void,
    ) => {
      const value = read(stats);
      metric.reset();
      if (typeof value === "number") return apply({}, value);
      for (const [key, n] of Object.entries(value)) {
        apply({ [label!]: key }, n);
      }
    };
    if (reading.type === "counter") {
      new client.Counter({
        ...configuration,
        collect() {
          set(this, (labels, value) => this.inc(labels, value));
        },
      });
    } else {
      new client.Gauge({
        ...configuration,
        collect() {
          set(this, (labels, value) => this.set(labels, value));
        },
      });
    }
  }
  registry.registerMetric(histogram(
    "tcp_echo_connection_duration_seconds",
    "How long connections lasted, from accept to close.",
    DURATION_BUCKETS,
    () => stats.durations,
  ));
  if (server.tls) {
    registry.registerMetric(histogram(
      "tcp_echo_tls_handshake_duration_seconds",
      "How long completed TLS handshakes took, from accept.",
      HANDSHAKE_BUCKETS,
      () => stats.handshakeDurations,
    ));
  }
  for (const metric of clusterGauges(() => cluster)) {
    registry.registerMetric(metric);
  }
  new client.Gauge({
    name: "tcp_echo_build_info",
    help: "Always 1: the version, engine and mode of this server.",
    labelNames: ["version", "engine", "mode"],
    registers: [registry],
  }).set(
    { version: denoJson.version, engine: server.engine, mode: server.mode },
    1,
  );
  client.collectDefaultMetrics({ register: registry });
  // prom-client reads these from /proc/self, which Deno opens only with
  // --allow-all: under the server's narrow permissions they would say 0.
  // The resident set comes from Deno.memoryUsage() instead (no permission
  // needed); the others are left out rather than wrong.
  for (const name of PROC_SELF_METRICS) registry.removeSingleMetric(name);
  new client.Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: [registry],
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
  return {
    contentType: registry.contentType,
    async scrape() {
      stats = server.stats;
      cluster = await server.clusterStatus();
      return await registry.metrics();
    },
  };
}

/**
 * A Prometheus histogram read from the server's bucket counts when scraped
 * (prom-client's Histogram can only observe values one by one, so this is
 * a metric of our own that the registry formats the same way).
 */
function histogram(
  name: string,
  help: string,
  buckets: readonly number[],
  read: () => { counts: readonly number[]; sumSeconds: number },
): Prom.Metric {
  const metric = {
    name,
    help,
    get: () => {
      const { counts, sumSeconds } = read();
      let count = 0;
      const values = [...buckets, Infinity].map((le, i) => {
        count += counts[i];
        return {
          metricName: `${name}_bucket`,
          labels: { le: le === Infinity ? "+Inf" : String(le) },
          value: count,
        };
      });
      return {
        name,
        help,
        type: "histogram",
        aggregator: "sum",
        values: [
          ...values,
          { metricName: `${name}_sum`, labels: {}, value: sumSeconds },
          { metricName: `${name}_count`, labels: {}, value: count },
        ],
      };
    },
    reset: () => {},
  };
  return metric as unknown as Prom.Metric;
}

/**
 * The Redis link's gauges, with a sample only for a server in a cluster:
 * up, lines held while Redis is away, and how far this instance is behind
 * the stream, from the scrape's one look at Redis.
 */
function clusterGauges(
  status: () => ClusterStatus | undefined,
): Prom.Metric[] {
  const gauge = (
    name: string,
    help: string,
    value: (s: ClusterStatus) => number | undefined,
  ) => ({
    name,
    help,
    get: () => {
      const s = status();
      const v = s === undefined ? undefined : value(s);
      return {
        name,
        help,
        type: "gauge",
        aggregator: "sum",
        values: v === undefined ? [] : [{ labels: {}, value: v }],
      };
    },
    reset: () => {},
  } as unknown as Prom.Metric);
  return [
    gauge(
      "tcp_echo_redis_up",
      "1 while Redis answers, 0 while it is away (clustered servers only).",
      (s) => s.up ? 1 : 0,
    ),
    gauge(
      "tcp_echo_redis_held_lines",
      "Lines held, unsent, while Redis is away.",
      (s) => s.heldLines,
    ),
    gauge(
      "tcp_echo_redis_lag_seconds",
      "Seconds between the stream's last entry and the last one applied here.",
      (s) => s.lagSeconds,
    ),
  ];
}

/** `closedByClient` as `closed_by_client`. */
function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
