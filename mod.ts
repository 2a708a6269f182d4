/**
 * A TCP echo toolkit for Deno: an RFC 862 echo server that sends every byte
 * back, in order, binary-safe and with exact half-close, and clients that
 * check every byte of the echo. The same server runs as a line echo, a
 * broadcast relay or a chat ({@linkcode ServeEchoOptions.mode}), with bounded
 * per-client send queues and {@linkcode EchoServer.announce} for the operator.
 * {@linkcode loadTest} measures a server: round trips, throughput and latency
 * percentiles, with every byte verified; {@linkcode coordinateLoad} runs one
 * test on many load agents ({@linkcode runLoadAgent}) through Redis, and
 * merges their reports exactly. {@linkcode createCertificates}
 * makes a throwaway certificate authority and a certificate for TLS.
 *
 * ```ts
 * import { echoOnce, serveEcho } from "@tcp-echo/tcp-echo";
 * import assert from "node:assert/strict";
 *
 * await using server = serveEcho({ port: 0 });
 * const reply = await echoOnce("hello", { port: server.addr.port });
 * assert.equal(reply, "hello");
 * ```
 *
 * The package logs through {@link https://logtape.org LogTape} under the
 * category `["tcp-echo"]` and prints nothing unless the application
 * configures LogTape.
 *
 * @module
 */

export { serveEcho } from "./lib/serve_echo.ts";
export type {
  CloseReason,
  ClusterStatus,
  ConnectOptions,
  EchoMode,
  EchoServer,
  EchoServerStats,
  FaultAction,
  FaultSpec,
  FaultTarget,
  HandshakeFailureKind,
  ServeEchoOptions,
  ServeEchoUnixOptions,
  TlsReload,
} from "./lib/types.ts";
export { serveControl } from "./lib/serve_control.ts";
export type { ServeControlOptions } from "./lib/serve_control.ts";
export { echoOnce } from "./lib/echo_once.ts";
export type { EchoOnceOptions } from "./lib/echo_once.ts";
export { EchoError, echoStream } from "./lib/echo_stream.ts";
export type { EchoErrorOptions, EchoProblem } from "./lib/echo_stream.ts";
export type { EchoStreamOptions } from "./lib/echo_stream.ts";
export { loadTest } from "./lib/load.ts";
export type {
  LatencySummary,
  LoadProgress,
  LoadReport,
  LoadTestOptions,
} from "./lib/load.ts";
export { coordinateLoad } from "./lib/coordinate_load.ts";
export type {
  AgentPart,
  CoordinatedReport,
  CoordinateLoadOptions,
} from "./lib/coordinate_load.ts";
export { runLoadAgent } from "./lib/run_load_agent.ts";
export type {
  LoadAgent,
  LoadAgentEvent,
  LoadAgentOptions,
} from "./lib/run_load_agent.ts";
export type { PlanOptions } from "./lib/agents/plan.ts";
export {
  createCertificates,
  DEFAULT_CERTIFICATE_NAMES,
} from "./lib/create_certificates.ts";
export type {
  Certificates,
  CreateCertificatesOptions,
} from "./lib/create_certificates.ts";
