// Private: server.ts's flags and --help. Not exported from mod.ts.

import {
  MODES,
  type ServeEchoOptions,
  type ServeEchoUnixOptions,
} from "../types.ts";
import { formatAddr } from "../_helpers.ts";
import { CHAT_NAMES } from "../relay/chat.ts";
import { faultFields } from "../faults/spec.ts";
import type { FaultSpec } from "../types.ts";
import type { OptionError } from "../_helpers.ts";
import { LOG_FORMATS, LOG_LEVELS_HELP, logLevel } from "./logging.ts";
import {
  choice,
  cidr,
  cidrFile,
  decimal,
  type Flag,
  type FlagValues,
  HELP_FLAGS,
  type HelpGroups,
  type HelpPage,
  helpText,
  hostPort,
  integer,
  limit,
  protocolList,
  text,
  textFile,
  timeout,
  TLS_KEY_FLAG,
  UsageError,
  wait,
} from "./flags.ts";

/** What each mode does, for --help modes (and --help all). */
const MODES_HELP = `  echo        raw bytes back, as sent (default)
  line        each newline-terminated line back as sent; a line that is
              exactly "exit" or "quit" closes the connection
  broadcast   every line from any client to every client, the sender
              included, unchanged, in the order the server received them
  chat        like broadcast, for people: "<name> text" lines, join and
              leave notices, rooms, and the commands /nick NAME, /join ROOM,
              /who and /quit; newcomers get the room's recent lines
  info        who answered, for load balancers and meshes: each line a
              command, one line back: hostname, id, clientip, clientport,
              serverip, serverport, transport, echo TEXT, time, help, exit;
              on TLS also sni, alpn and clientcert
              (agnhost netexec's words; needs --allow-sys=hostname, which
              the server task has)
  In every line mode a line over --max-line-bytes gets
  "ERR line too long (max N bytes)" back and its connection is closed.
  proxy       every connection forwarded to --upstream and back, byte for
              byte, with exact half-close, for faults in front of any TCP
              service (--help proxy)
  The "also" names are those of the Rust echo server this one replaces.`;

/** Every flag of server.ts: `--help`, parsing and checking come from it. */
export const SERVER_FLAGS = {
  mode: {
    group: "modes",
    arg: "MODE",
    help: "echo, line, broadcast, chat, info or proxy (--help modes: " +
      "what each does)",
    default: "echo",
    parse: choice(MODES),
  },
  hostname: {
    group: "listen",
    arg: "HOST",
    aliases: ["ip"],
    help: "address to listen on; a name listens on the first address it " +
      "resolves to only (localhost: 127.0.0.1; give ::1 for IPv6)",
    default: "127.0.0.1",
    parse: text,
  },
  port: {
    group: "listen",
    arg: "PORT",
    help: "port to listen on, 0 for any free port",
    default: "9000",
    parse: integer,
  },
  unix: {
    group: "listen",
    arg: "PATH",
    option: "path",
    excludes: ["hostname", "port", "udp", "udp-only"],
    help: "listen on a Unix domain socket at PATH instead of a host and " +
      "port (one thread; a socket file nothing answers on is replaced, and " +
      "the file is removed on stop)",
    parse: text,
  },
  "tls-cert": {
    group: "tls",
    arg: "FILE",
    option: "cert",
    requires: ["tls-key"],
    help: "speak TLS with this PEM certificate chain (every mode, and " +
      "workers); SIGHUP reads the TLS files again for new handshakes " +
      "(a file that cannot be used keeps the old ones, and the log says why)",
    parse: textFile,
  },
  "tls-key": TLS_KEY_FLAG,
  "handshake-timeout": {
    group: "tls",
    arg: "MS",
    requires: ["tls-cert"],
    help: "with TLS, close a client that has not completed its handshake " +
      "after MS ms (counted as a handshake failure); unlimited waits until " +
      "shutdown",
    default: "10000",
    parse: timeout,
  },
  "tls-client-ca": {
    group: "tls",
    arg: "FILE",
    option: "clientCa",
    requires: ["tls-cert"],
    help: "ask every client for a certificate and verify it against the " +
      "PEM authorities in FILE; a client without a valid one is refused " +
      "(native engine)",
    parse: textFile,
  },
  "tls-client-optional": {
    group: "tls",
    option: "clientCertOptional",
    requires: ["tls-client-ca"],
    help: "with --tls-client-ca, admit a client without a certificate too " +
      "(one whose certificate does not verify is still refused)",
  },
  "chat-names": {
    group: "tls",
    arg: "HOW",
    help: "in chat mode, auto (userN, then /nick) or cert: a client with a " +
      "verified certificate is called by its CN (--tls-client-ca)",
    default: "auto",
    parse: choice(CHAT_NAMES),
  },
  "tls-sni": {
    group: "tls",
    arg: "NAME=CERT,KEY",
    option: "sni",
    multiple: true,
    requires: ["tls-cert"],
    help: "serve the PEM chain in file CERT with the key in file KEY to " +
      "clients that ask for NAME by SNI (*.example.com matches one label); " +
      "again for more; the others get --tls-cert (native engine)",
    parse: sniEntry,
  },
  alpn: {
    group: "tls",
    arg: "LIST",
    option: "alpnProtocols",
    requires: ["tls-cert"],
    help: "offer these protocols by ALPN, comma-separated, most preferred " +
      "first (h2,http/1.1); a client that offers only others is refused",
    parse: protocolList,
  },
  udp: {
    group: "udp",
    help: "also echo UDP datagrams on the same port number (RFC 862), each " +
      "back to its sender unchanged (in info mode, one command a datagram); " +
      "echo and info mode only, without TLS, on one " +
      "thread (with --workers, TCP uses them all). UDP answers whatever " +
      "address a datagram claims to come from: do not expose it beyond " +
      "networks you trust",
  },
  "udp-rate": {
    group: "udp",
    arg: "N",
    help: "most UDP datagrams a second answered for one source address " +
      "(or unlimited); the rest are dropped and counted",
    default: "1000",
    parse: limit,
  },
  "udp-only": {
    group: "udp",
    option: "udp",
    excludes: ["udp"],
    help: "serve UDP only, no TCP",
  },
  "proxy-protocol": {
    group: "rules",
    help: "every connection starts with a PROXY protocol header (v1 or v2, " +
      "as HAProxy, AWS NLB, nginx and Envoy send it), whose client address " +
      "is used everywhere; TCP, TLS (before the handshake) and Unix, not UDP",
  },
  "proxy-timeout": {
    group: "rules",
    arg: "MS",
    requires: ["proxy-protocol"],
    help: "close a client whose PROXY header is not complete after MS ms",
    default: "3000",
    parse: integer,
  },
  "trusted-proxy": {
    group: "rules",
    arg: "CIDR",
    option: "trustedProxies",
    multiple: true,
    help: "believe PROXY headers (--proxy-protocol) and X-Forwarded-For " +
      "(--websocket) only from this address or block (again for more); a " +
      "PROXY header from anyone else is refused (default: any peer), an " +
      "X-Forwarded-For ignored",
    parse: cidr,
  },
  allow: {
    group: "rules",
    arg: "CIDR",
    multiple: true,
    help: "let in only clients in this address or block (again for more; " +
      "IPv4 or IPv6, a bare address is /32 or /128); everyone else is " +
      "closed before a byte is read. Unix-socket clients have no address " +
      "and are not subject to it",
    parse: cidr,
  },
  deny: {
    group: "rules",
    arg: "CIDR",
    multiple: true,
    help: "keep out clients in this address or block (again for more); " +
      "deny wins over allow",
    parse: cidr,
  },
  "allow-file": {
    group: "rules",
    arg: "FILE",
    option: "allow",
    multiple: true,
    help: "--allow for each line of FILE (# starts a comment)",
    parse: cidrFile,
  },
  "deny-file": {
    group: "rules",
    arg: "FILE",
    option: "deny",
    multiple: true,
    help: "--deny for each line of FILE (# starts a comment)",
    parse: cidrFile,
  },
  "max-connections": {
    group: "limits",
    arg: "N",
    help: "most connections at once; more are closed at once",
    default: "unlimited",
    parse: limit,
  },
  "max-connections-per-ip": {
    group: "rules",
    arg: "N",
    help: "most connections one address may hold open at once, over all " +
      "workers; more are refused (the address a PROXY header names)",
    default: "unlimited",
    parse: limit,
  },
  "connect-rate": {
    group: "rules",
    arg: "N",
    help: "most new connections one address may open a second (a token " +
      "bucket with a burst of N), over all workers; more are refused",
    default: "unlimited",
    parse: limit,
  },
  "max-bytes-per-second": {
    group: "rules",
    arg: "N",
    help: "read each connection no faster than N bytes a second; TCP slows " +
      "the client down, nothing is dropped, the echo stays exact",
    default: "unlimited",
    parse: limit,
  },
  fault: {
    group: "faults",
    arg: "KIND[:P=V,…]",
    option: "faults",
    multiple: true,
    help: "act out a fault on purpose, again for more, each on what the " +
      "ones before let through: latency:ms=100,jitter=20 (distribution=" +
      "normal), bandwidth:bytesPerSecond=100000, slicer:size=16,delayMs=5, " +
      "limit:bytes=1024 (then FIN), hang:bytes=0,forMs=5000, " +
      "slow_close:ms=1000, down (closed at once; how=refuse: the listener " +
      "stops), reset:bytes=1024 (native); on --udp replies " +
      "drop:probability=0.1, " +
      "duplicate, corrupt (one bit), reorder (window=4); each also takes " +
      "direction=receive|send, " +
      "rate=0.5 (of connections), clients=CIDR+CIDR and name=NAME",
    parse: fault,
  },
  faults: {
    group: "faults",
    arg: "FILE",
    help: "the faults in FILE, a JSON list as serveEcho's faults takes " +
      '([{"kind": "latency", "ms": 100}]), before any --fault',
    parse: faultsFile,
  },
  upstream: {
    group: "proxy",
    arg: "HOST:PORT",
    help: "in proxy mode, where each connection is forwarded: HOST:PORT, " +
      "[ADDRESS]:PORT or unix:PATH",
    parse: text,
  },
  "upstream-tls": {
    group: "proxy",
    requires: ["upstream"],
    help: "speak TLS to the upstream, verifying its certificate against the " +
      "system's trust store or --upstream-ca",
  },
  "upstream-ca": {
    group: "proxy",
    arg: "FILE",
    requires: ["upstream-tls"],
    help: "trust the PEM certificate authorities in FILE for the upstream",
    parse: textFile,
  },
  "upstream-server-name": {
    group: "proxy",
    arg: "NAME",
    requires: ["upstream-tls"],
    help: "the name the upstream's certificate must be for (and SNI), when " +
      "it is not the upstream's host",
    parse: text,
  },
  "send-proxy": {
    group: "proxy",
    arg: "v1|v2",
    option: "upstreamProxy",
    requires: ["upstream"],
    help: "start each upstream connection with a PROXY protocol header of " +
      "this version naming the client (before TLS)",
    parse: choice(["v1", "v2"] as const),
  },
  "upstream-timeout": {
    group: "proxy",
    arg: "MS",
    requires: ["upstream"],
    help: "close a client whose upstream connection (with its PROXY header " +
      "and TLS handshake) is not made after MS ms",
    default: "5000",
    parse: integer,
  },
  "upstream-unreachable": {
    group: "proxy",
    arg: "reset|close",
    requires: ["upstream"],
    help: "close a client whose upstream cannot be reached with a reset " +
      "(RST; the native engine's default) or a clean end (FIN; the default " +
      "engine's, which cannot reset)",
    parse: choice(["reset", "close"] as const),
  },
  websocket: {
    group: "websocket",
    arg: "HOST:PORT",
    help: "serve WebSocket clients too, at ws://HOST:PORT/ws (wss:// with " +
      "--tls-cert), in the mode of the TCP ones and sharing their relay; " +
      "/healthz and /readyz there for orchestrators",
    parse: hostPort,
  },
  "websocket-only": {
    group: "websocket",
    requires: ["websocket"],
    help: "no TCP listener: WebSocket clients only",
  },
  "max-message-bytes": {
    group: "websocket",
    arg: "N",
    option: "websocket.maxMessageBytes",
    requires: ["websocket"],
    help: "close a WebSocket whose message is longer than N bytes (1009)",
    default: "1048576",
    parse: integer,
  },
  "header-timeout": {
    group: "websocket",
    arg: "MS",
    option: "websocket.headerTimeout",
    requires: ["websocket"],
    help: "answer 408 and close an HTTP client whose request head is not " +
      "complete MS ms after it connected (or after its last response)",
    default: "10000",
    parse: integer,
  },
  control: {
    group: "faults",
    arg: "HOST:PORT",
    help: "serve the faults' HTTP API at http://HOST:PORT/faults (GET, PUT " +
      "a list, POST /faults/NAME one, DELETE /faults/NAME or all), " +
      "loopback clients only without a token; open connections follow " +
      "the changes (latency, bandwidth, slicer, hang, down); the same " +
      "HOST:PORT as --metrics shares its listener",
    parse: hostPort,
  },
  "control-token-file": {
    group: "faults",
    arg: "FILE",
    requires: ["control"],
    help: "the control API wants the token in FILE as Authorization: " +
      "Bearer TOKEN, and then answers clients from anywhere",
    parse: tokenFile,
  },
  "idle-timeout": {
    group: "limits",
    arg: "MS",
    help: "close a connection after MS ms with no data either way",
    default: "unlimited",
    parse: timeout,
  },
  "grace-period": {
    group: "limits",
    arg: "MS",
    help: "on shutdown, how long open connections may finish; then the " +
      "server stops reading, sends what is in flight, half-closes and " +
      "closes within 1 s; unlimited waits until they close",
    default: "5000",
    parse: wait,
  },
  "drain-delay": {
    group: "websocket",
    arg: "MS",
    help: "on shutdown, go on accepting for MS ms with /readyz answering " +
      "503 (--websocket, --metrics), so that a load balancer stops sending " +
      "first; then the grace period",
    default: "0",
    parse: integer,
  },
  id: {
    group: "modes",
    arg: "TEXT",
    help: "what info mode answers to id, so that instances on one machine " +
      "differ",
    default: "HOSTNAME:PORT",
    parse: text,
  },
  redis: {
    group: "cluster",
    arg: "URL",
    help: "broadcast and chat across instances that share this Redis " +
      "(redis://, rediss://, unix:///path); it must answer at start-up, or " +
      "the server exits 1",
    parse: text,
  },
  "redis-key": {
    group: "cluster",
    arg: "PREFIX",
    requires: ["redis"],
    help: "prefix of the keys, so that clusters share one Redis",
    default: "tcp-echo",
    parse: text,
  },
  "redis-hold": {
    group: "cluster",
    arg: "N",
    requires: ["redis"],
    help: "most lines held while Redis is away; past it a sender gets " +
      '"ERR cluster unavailable, line not sent"',
    default: "10000",
    parse: integer,
  },
  "max-line-bytes": {
    group: "modes",
    arg: "N",
    help: "longest line the line modes accept, without its line ending",
    default: "8192",
    parse: integer,
  },
  "channel-capacity": {
    group: "limits",
    arg: "N",
    help: "most lines waiting to be sent to one client; a client that lets " +
      "more pile up is disconnected",
    default: "100",
    parse: integer,
  },
  "channel-bytes": {
    group: "limits",
    arg: "N",
    help: "most bytes waiting to be sent to one client",
    default: "1048576",
    parse: integer,
  },
  history: {
    group: "modes",
    arg: "N",
    help: "lines of its room a chat newcomer gets, at most half of " +
      "--channel-capacity",
    default: "20, or that half if less",
    parse: integer,
  },
  "chat-users": {
    group: "chat",
    arg: "FILE",
    option: "chatUsers",
    help: "registered chat users (NAME:HASH lines, --add-user writes them); " +
      "a registered name is taken only with /login NAME PASSWORD; SIGHUP " +
      "reads FILE again",
    parse: (path: string) => path,
  },
  "chat-require-login": {
    group: "chat",
    option: "chatRequireLogin",
    requires: ["chat-users"],
    help: "clients log in before they join a room or say anything",
  },
  "add-user": {
    group: "chat",
    arg: "NAME",
    requires: ["chat-users"],
    help: "register NAME in --chat-users FILE (or change its password), " +
      "reading the password from the terminal without echo, or from stdin; " +
      "then exit",
    parse: (name: string) => name,
  },
  "chat-protocol": {
    group: "chat",
    arg: "text|json",
    option: "chatProtocol",
    help: "how chat clients read and write until they say /protocol: text, " +
      "or json (one object a line, docs/chat-protocol.md)",
    default: "text",
    parse: choice(["text", "json"] as const),
  },
  "history-file": {
    group: "chat",
    arg: "FILE",
    option: "historyFile",
    help: "keep chat history in FILE (JSON lines) across restarts: read " +
      "back at start, rewritten smaller as it grows; a torn last line is " +
      "skipped and logged",
    parse: (path: string) => path,
  },
  "max-file-bytes": {
    group: "chat",
    arg: "N",
    option: "maxFileBytes",
    help: "largest file chat clients may send each other (/send NAME PATH " +
      "in client -i); 0 turns files off",
    default: "1073741824",
    parse: integer,
  },
  "file-port": {
    group: "chat",
    arg: "PORT",
    option: "filePort",
    help: "port of chat's file listener (on --host, with --tls); 0 picks " +
      "a free one and tells clients",
    default: "0",
    parse: integer,
  },
  "history-sync": {
    group: "chat",
    arg: "WHEN",
    option: "historySync",
    requires: ["history-file"],
    help: "when history lines reach the disk: always (fsync each), second, " +
      "or never (as Redis' appendfsync)",
    default: "second",
    parse: choice(["always", "second", "never"] as const),
  },
  "chat-rate": {
    group: "chat",
    arg: "N",
    help: "chat's flood control: lines a client may send a second (a burst " +
      "of N); past it each is refused with an ERR line, and counted",
    default: "unlimited",
    parse: limit,
  },
  operator: {
    group: "modes",
    help: "read lines from stdin and send each to every client " +
      '("[server] text" in broadcast and chat mode)',
  },
  workers: {
    group: "listen",
    arg: "N|auto",
    aliases: ["num-workers"],
    help: "serve on N threads (auto: one per core; at most 4 per core), " +
      "each with its own listener on the same port (SO_REUSEPORT, Linux " +
      "only; needs deno run --unstable-net, which the server task has)",
    default: "1",
    parse: (value: string): number | "auto" =>
      value === "auto" ? "auto" : integer(value),
  },
  engine: {
    group: "engine",
    arg: "NAME",
    help: "default (Deno's sockets) or native (an epoll loop over libc " +
      "through FFI, in a thread of its own per worker: everything but TLS, " +
      "Linux); the server task allows FFI, and drops it unless native",
    default: "default",
    parse: choice(["default", "native"] as const),
  },
  status: {
    group: "observability",
    help: "show the server's status (open, accepted, bytes in and out per " +
      "second, refused, dropped) on stderr every --status-interval: one " +
      "line redrawn in place on a terminal, a log record off one",
  },
  "status-interval": {
    group: "observability",
    arg: "S",
    help: "seconds between status updates; alone, it turns --status on " +
      "(default: 1)",
    parse: decimal,
  },
  metrics: {
    group: "observability",
    arg: "HOST:PORT",
    help: "serve Prometheus metrics over HTTP at http://HOST:PORT/metrics " +
      "(port 0: a free one, printed at start-up)",
    parse: hostPort,
  },
  "log-level": {
    group: "logging",
    arg: "LEVEL",
    aliases: ["log_level"],
    help: LOG_LEVELS_HELP,
    default: "info",
    parse: logLevel,
  },
  "log-format": {
    group: "logging",
    arg: "FORMAT",
    help: "pretty or json",
    default: "pretty",
    parse: choice(LOG_FORMATS),
  },
  ...HELP_FLAGS,
} satisfies Record<string, Flag<unknown>>;

/** The groups of server.ts's --help; plain --help shows the common ones. */
export const SERVER_GROUPS: HelpGroups = {
  listen: { title: "Listening", common: true },
  modes: { title: "Modes", common: true, intro: MODES_HELP },
  limits: { title: "Limits", common: true },
  logging: { title: "Logging and help", common: true },
  tls: { title: "TLS (deno task cert makes a certificate)" },
  udp: { title: "UDP" },
  rules: { title: "PROXY protocol, access rules and rate limits" },
  chat: { title: "Chat mode" },
  cluster: { title: "Cluster: broadcast and chat across instances" },
  observability: { title: "Metrics and status" },
  faults: { title: "Faults (toxiproxy's toxics, on purpose)" },
  proxy: { title: "Proxy mode: faults in front of any TCP service" },
  websocket: { title: "WebSocket and HTTP health endpoints" },
  engine: { title: "Engine" },
};

/** server.ts's --help page. */
const SERVER_HELP: HelpPage = {
  head: `Usage: deno task server [options]

An RFC 862 TCP echo server: every byte each client sends comes back, in order,
binary-safe; when a client half-closes, what is still owed is echoed and the
connection closed. --mode turns it into a line echo, a broadcast relay, a chat
or an info service for load balancers.`,
  table: SERVER_FLAGS,
  groups: SERVER_GROUPS,
  tail: `Examples:
  deno task server --port 7                  echo on port 7 (0: any free port)
  deno task server --mode chat --operator    a chat; type lines to talk to all
  deno task server --tls-cert cert.pem --tls-key key.pem
  deno task server --workers auto --engine native --max-connections 50000

When ready it prints "Listening on HOST:PORT" on stdout; logs go to stderr.
Ctrl+C or SIGTERM stops accepting and waits for open connections up to the
grace period; a second Ctrl+C stops at once.

Exit codes:
  0    stopped cleanly
  1    runtime failure (such as the port being in use or a host that does
       not resolve)
  2    usage error (unknown flag or bad flag value)
  130  stopped at once by a second Ctrl+C or SIGTERM`,
};

/**
 * server.ts's --help for `topic`: the common options (`""`), every option
 * (`all`), or one group's.
 *
 * @throws {UsageError} `topic` is no group's name.
 */
export function serverHelp(topic: string): string {
  return helpText(SERVER_HELP, topic);
}

/** serveEcho's options from the flags given (the library fills defaults). */
export function serverOptions(
  v: FlagValues<typeof SERVER_FLAGS>,
): ServeEchoOptions | ServeEchoUnixOptions {
  const tls = {
    cert: v["tls-cert"],
    key: v["tls-key"],
    handshakeTimeout: v["handshake-timeout"],
    clientCa: v["tls-client-ca"],
    clientCertOptional: v["tls-client-optional"],
    sni: v["tls-sni"],
    alpnProtocols: v.alpn,
  };
  const where = v.unix === undefined
    ? {
      hostname: v.hostname,
      port: v.port,
      ...tls,
      udp: v["udp-only"] ? "only" as const : v.udp,
      udpRate: v["udp-rate"],
    }
    : { path: v.unix, ...tls };
  return {
    ...where,
    websocket: v.websocket === undefined ? undefined : {
      ...v.websocket,
      only: v["websocket-only"],
      maxMessageBytes: v["max-message-bytes"],
      headerTimeout: v["header-timeout"],
    },
    proxyProtocol: v["proxy-protocol"],
    proxyTimeout: v["proxy-timeout"],
    trustedProxies: v["trusted-proxy"],
    faults: v.faults === undefined && v.fault === undefined
      ? undefined
      : [...v.faults ?? [], ...v.fault ?? []],
    liveFaults: v.control !== undefined || undefined,
    upstream: v.upstream,
    upstreamTls: v["upstream-tls"]
      ? {
        caCerts: v["upstream-ca"] === undefined
          ? undefined
          : [v["upstream-ca"]],
        serverName: v["upstream-server-name"],
      }
      : undefined,
    upstreamProxy: v["send-proxy"],
    upstreamTimeout: v["upstream-timeout"],
    upstreamUnreachable: v["upstream-unreachable"],
    allow: list(v.allow, v["allow-file"]),
    deny: list(v.deny, v["deny-file"]),
    mode: v.mode,
    id: v.id,
    redis: v.redis,
    redisKey: v["redis-key"],
    redisHold: v["redis-hold"],
    maxConnections: v["max-connections"],
    maxConnectionsPerIp: v["max-connections-per-ip"],
    connectRate: v["connect-rate"],
    maxBytesPerSecond: v["max-bytes-per-second"],
    idleTimeout: v["idle-timeout"],
    gracePeriod: v["grace-period"],
    drainDelay: v["drain-delay"],
    maxLineBytes: v["max-line-bytes"],
    channelCapacity: v["channel-capacity"],
    channelBytes: v["channel-bytes"],
    history: v.history,
    chatRate: v["chat-rate"],
    chatRequireLogin: v["chat-require-login"],
    historyFile: v["history-file"],
    chatProtocol: v["chat-protocol"],
    historySync: v["history-sync"],
    maxFileBytes: v["max-file-bytes"],
    filePort: v["file-port"],
    chatNames: v["chat-names"],
    workers: v.workers,
    engine: v.engine,
  };
}

/** The entries of a repeatable flag and of its files, or undefined. */
function list(
  entries: string[] | undefined,
  files: string[][] | undefined,
): string[] | undefined {
  if (entries === undefined && files === undefined) return undefined;
  return [...entries ?? [], ...(files ?? []).flat()];
}

/** Where `options` listen, as errors show it. */
export function listenAddress(
  options: { hostname?: string; port?: number; path?: string },
): string {
  return options.path ?? formatAddr({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 9000,
  });
}

/** `NAME=CERT,KEY`: a server name, and the files of its chain and key. */
function sniEntry(
  value: string,
): { hostname: string; cert: string; key: string } {
  const equals = value.indexOf("=");
  const comma = value.lastIndexOf(",");
  if (equals <= 0 || comma < equals + 2 || comma === value.length - 1) {
    throw new UsageError("must be NAME=CERT,KEY (a name, then two files)");
  }
  const hostname = value.slice(0, equals);
  const at = (what: string, path: string) => {
    try {
      return textFile(path);
    } catch (error) {
      throw new UsageError(
        `${what} of ${hostname}: ${(error as Error).message}`,
      );
    }
  };
  return {
    hostname,
    cert: at("the certificate", value.slice(equals + 1, comma)),
    key: at("the key", value.slice(comma + 1)),
  };
}

/** One --fault: its kind and parameters, checked as the library checks them. */
function fault(text: string): FaultSpec {
  try {
    return faultFields(text) as unknown as FaultSpec;
  } catch (error) {
    // The flag's error ends with the whole text given: no second "got".
    const reason = (error as OptionError).reason ?? String(error);
    throw new UsageError(reason.replace(/, got .*$/, ""));
  }
}

/** --control-token-file FILE: its text, without the line break after it. */
function tokenFile(path: string): string {
  return textFile(path).replace(/\r?\n$/, "");
}

/** --faults FILE: a JSON list of faults (checked whole by serveEcho). */
function faultsFile(path: string): FaultSpec[] {
  const text = textFile(path);
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`not JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(spec)) {
    throw new UsageError("must hold a JSON list of faults");
  }
  return spec as FaultSpec[];
}
