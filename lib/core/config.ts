// Private: the options of one listener, as serveEcho checked them: plain
// data, so that a worker receives them by postMessage and builds the same
// listener. Not exported from mod.ts.

import type { Fault } from "../faults/spec.ts";
import type { UpstreamConfig } from "../upstream/config.ts";
import type { WebSocketConfig } from "../websocket/config.ts";
import type { ChatUsers } from "../relay/chat_users.ts";
import type { HistorySync } from "../relay/chat_history.ts";
import type { AccessConfig } from "../rules/access.ts";
import type { LimitsConfig } from "../rules/limits.ts";
import type { EchoMode } from "../types.ts";

/** How a listener speaks TLS: its certificates and what it asks for. */
export interface TlsSettings {
  /** PEM certificate chain and private key. */
  cert: string;
  key: string;
  handshakeTimeout: number;
  /** PEM authorities of client certificates; none asked without. */
  clientCa: string | undefined;
  clientCertOptional: boolean;
  /** Protocols offered by ALPN; none when empty. */
  alpn: string[];
  /** More certificates, by the server name a client asks for. */
  sni: { name: string; cert: string; key: string }[];
}

/**
 * Where and how to listen, chosen once from the shape of serveEcho's
 * options, as Deno.serve does: a `path` means a Unix socket, `cert` and
 * `key` mean TLS (on TCP, or on the socket), and otherwise TCP.
 */
export type ListenConfig =
  | { transport: "tcp"; hostname: string; port: number }
  | ({ transport: "tls"; hostname: string; port: number } & TlsSettings)
  | { transport: "unix"; path: string; tls: TlsSettings | undefined }
  | {
    transport: "websocket";
    hostname: string;
    port: number;
    tls: TlsSettings | undefined;
    /** The largest message taken; a bigger one closes with 1009. */
    maxMessageBytes: number;
    /** Milliseconds a client has to send each request head (408 past it). */
    headerTimeout: number;
    /** Proxies whose X-Forwarded-For is believed; none when undefined. */
    trusted: string[] | undefined;
  };

/** A TLS listener's configuration on TCP. */
export type TlsListen = Extract<ListenConfig, { transport: "tls" }>;

/** How `listen` speaks TLS; `undefined` in clear. */
export function tlsOf(listen: ListenConfig): TlsSettings | undefined {
  if (listen.transport === "tls") return listen;
  return listen.transport === "tcp" ? undefined : listen.tls;
}

/** How to read PROXY headers (serveEcho's `proxyProtocol`). */
export interface ProxyConfig {
  /** Milliseconds a client has to send its header. */
  timeout: number;
  /** CIDR blocks that may send headers; anyone when undefined. */
  trusted: string[] | undefined;
}

/** The options of one listener, checked and with their defaults filled in. */
export interface ServerConfig {
  listen: ListenConfig;
  /** Read a PROXY header first on every connection. */
  proxy: ProxyConfig | undefined;
  /** Addresses let in and kept out (empty lists: everyone). */
  access: AccessConfig;
  /** Per-address limits, shared by every thread; none when undefined. */
  limits: LimitsConfig | undefined;
  /** How fast each connection is read, in bytes a second (or Infinity). */
  maxBytesPerSecond: number;
  /** The faults to act out, checked (lib/faults/spec.ts); none when empty. */
  faults: Fault[];
  /** Changes of the faults reach open connections (every one is wrapped). */
  liveFaults: boolean;
  /** Where proxy mode forwards every connection (only in proxy mode). */
  upstream: UpstreamConfig | undefined;
  /** Milliseconds a shutdown goes on accepting, not ready, before it drains. */
  drainDelay: number;
  /** A WebSocket listener beside (or instead of) `listen`, if any. */
  websocket: WebSocketConfig | undefined;
  /** UDP datagrams a second per source (or Infinity). */
  udpRate: number;
  /** The Redis that relays of several instances share, if any. */
  redis: { url: string; key: string; holdLimit: number } | undefined;
  maxConnections: number;
  idleTimeout: number;
  gracePeriod: number;
  mode: EchoMode;
  /** The machine's hostname, in info mode (read once, here). */
  host: string;
  /** What info mode's `id` answers; empty for `host:port`. */
  id: string;
  maxLineBytes: number;
  channelCapacity: number;
  channelBytes: number;
  history: number;
  /** Chat names clients by their certificates (`chatNames: "cert"`). */
  certNames: boolean;
  /** Lines a chat client may send a second (a burst of as many). */
  chatRate: number;
  /**
   * Chat's registered users, on the thread that runs the relay (copied to
   * a worker, it is an empty object: workers have no relay of their own).
   */
  chatUsers: ChatUsers | undefined;
  /** Chat clients log in before anything else. */
  chatRequireLogin: boolean;
  /** How chat clients read and write at first. */
  chatProtocol: "text" | "json";
  /** Where chat's history is kept across restarts; nowhere when undefined. */
  historyFile: string | undefined;
  historySync: HistorySync;
  /** The largest file chat members may send each other; 0: none. */
  maxFileBytes: number;
  /** The port of chat's file listener (0: any free one). */
  filePort: number;
}
