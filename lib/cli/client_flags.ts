// Private: client.ts's flags and --help. Not exported from mod.ts.

import { type Ending, ENDINGS_EXPECTED } from "../client/failures.ts";
import type { EchoStreamOptions } from "../echo_stream.ts";
import { LOG_LEVELS_HELP, logLevel } from "./logging.ts";
import {
  choice,
  cidr,
  decimal,
  type Flag,
  type FlagValues,
  HELP_FLAGS,
  type HelpGroups,
  type HelpPage,
  helpText,
  integer,
  outputFile,
  type ParsedFlags,
  percent,
  protocolList,
  text,
  textFile,
  timeout,
  TLS_KEY_FLAG,
  UNLIMITED,
  UsageError,
} from "./flags.ts";

/** What a load test does, for --help load (and --help all). */
const LOAD_HELP =
  `  With any of these flags, each connection sends a message, waits for its
  whole echo, checks it byte for byte and repeats. It prints round trips,
  round trips/s, MB/s each way, latency percentiles from an HDR histogram,
  errors by kind and its own CPU time. Any error makes the exit code 1.
  --num-clients and --max-count are the Rust echo client's: "--num-clients 2
  --max-count 10" makes 20 round trips, 10 on each connection.`;

/** Every flag of client.ts: `--help`, parsing and checking come from it. */
export const CLIENT_FLAGS = {
  hostname: {
    group: "target",
    arg: "HOST",
    aliases: ["server-ip"],
    help: "server address",
    default: "127.0.0.1",
    parse: text,
  },
  port: {
    group: "target",
    arg: "PORT",
    aliases: ["server-port"],
    help: "server port",
    default: "9000",
    parse: integer,
  },
  unix: {
    group: "target",
    arg: "PATH",
    option: "path",
    excludes: ["hostname", "port", "tls", "udp"],
    help: "connect to the Unix domain socket at PATH instead of a host and " +
      "port",
    parse: text,
  },
  ws: {
    group: "websocket",
    arg: "URL",
    option: "websocket",
    excludes: ["udp", "tls", "unix", "send-proxy"],
    help: "speak WebSocket to URL (ws://HOST:PORT/ws of a server's " +
      "--websocket, or wss:// with --ca) instead of TCP: each write a " +
      "message, and the echo checked byte for byte",
    parse: text,
  },
  "ws-binary": {
    group: "websocket",
    option: "websocketBinary",
    requires: ["ws"],
    help: "send binary messages (default: text, UTF-8; a load test's " +
      "generated message is then printable ASCII)",
  },
  udp: {
    group: "udp",
    excludes: ["tls", "interactive"],
    help: "send MESSAGE as one UDP datagram (at most 65,507 bytes) and wait " +
      "--timeout ms for the reply; in a load test, datagrams instead of a " +
      "stream, a reply later than --timeout counting as lost",
  },
  "max-loss": {
    group: "udp",
    arg: "PCT",
    requires: ["udp"],
    help: "load test over UDP: exit 1 when more than PCT % of the " +
      "datagrams got no reply (default: loss alone does not fail)",
    parse: percent,
  },
  "send-proxy": {
    group: "proxy",
    arg: "v1|v2",
    option: "sendProxy",
    help: "start with a PROXY protocol header of this version, as a proxy " +
      "would (before TLS), naming --proxy-source or this client",
    parse: choice(["v1", "v2"] as const),
  },
  "proxy-source": {
    group: "proxy",
    arg: "ADDR:PORT",
    requires: ["send-proxy"],
    help: "the client address the PROXY header claims ([ADDR]:PORT for IPv6)",
    parse: text,
  },
  tls: {
    group: "tls",
    help: "speak TLS, and check the server's certificate against the " +
      "system's trust store or --ca",
  },
  ca: {
    group: "tls",
    arg: "FILE",
    option: "caCerts",
    requires: ["tls|ws"],
    help: "trust the PEM certificate authorities in FILE instead",
    parse: (path: string): string[] => [textFile(path)],
  },
  "server-name": {
    group: "tls",
    arg: "NAME",
    option: "serverName",
    requires: ["tls"],
    help: "the name the server's certificate must be for (and SNI), when " +
      "it is not --hostname",
    parse: text,
  },
  "tls-cert": {
    group: "tls",
    arg: "FILE",
    option: "cert",
    requires: ["tls", "tls-key"],
    help: "present this PEM client certificate chain to a server that asks " +
      "for one (not with --send-proxy or another --server-name)",
    parse: textFile,
  },
  "tls-key": TLS_KEY_FLAG,
  alpn: {
    group: "tls",
    arg: "LIST",
    option: "alpnProtocols",
    requires: ["tls"],
    help: "offer these protocols by ALPN, comma-separated, most preferred " +
      "first",
    parse: protocolList,
  },
  timeout: {
    group: "target",
    arg: "MS",
    help: "how long to wait for the server: to connect, and for each echoed " +
      "chunk while bytes are owed; interactively, to close once the input " +
      "has ended; unlimited waits forever",
    default: "10000",
    parse: timeout,
  },
  interactive: {
    group: "sending",
    short: "i",
    help: "talk to the server line by line",
  },
  "source-address": {
    group: "agents",
    arg: "ADDR",
    option: "sourceAddresses",
    multiple: true,
    help: "load test: connect from this local address, or each host of " +
      "this IPv4 CIDR block, in turn (again for more), past ~64,000 " +
      "connections to one server port; TCP or TLS, a PROXY header too",
    parse: text,
  },
  redis: {
    group: "agents",
    arg: "URL",
    help: "with --agent or --agents: the Redis that carries the plans and " +
      "reports (redis://, rediss://, unix:///path)",
    parse: text,
  },
  "redis-key": {
    group: "agents",
    arg: "PREFIX",
    requires: ["redis"],
    help: "prefix of the keys, as the agents' and coordinator's",
    default: "tcp-echo",
    parse: text,
  },
  agent: {
    group: "agents",
    requires: ["redis"],
    excludes: ["agents", "interactive"],
    help: "be a load agent: wait on --redis for plans, run each with this " +
      "client's --engine, report, wait again; Ctrl+C ends it",
  },
  "agent-name": {
    group: "agents",
    arg: "NAME",
    requires: ["agent"],
    help: "this agent's name, unique on that Redis",
    default: "HOST-PID",
    parse: text,
  },
  "agent-allow": {
    group: "agents",
    arg: "CIDR",
    multiple: true,
    requires: ["agent"],
    help: "targets this agent accepts (again for more); a plan for any " +
      "other, or a Unix socket, is refused",
    parse: cidr,
  },
  agents: {
    group: "agents",
    arg: "N",
    requires: ["redis"],
    help: "with load flags: run the test on N agents, its connections, " +
      "count and rate split exactly, all started at one time of Redis' " +
      "clock; one merged report",
    parse: integer,
  },
  "plot-agents": {
    group: "agents",
    requires: ["agents", "plot"],
    help: "draw each agent's latency in --plot's chart too, named by the " +
      "agent",
  },
  "agents-timeout": {
    group: "agents",
    arg: "S",
    requires: ["agents"],
    help: "seconds to wait for the agents",
    default: "30",
    parse: decimal,
  },
  "download-dir": {
    group: "chat",
    arg: "DIR",
    help: "where files other members send are saved (the name they were " +
      "offered with, made safe)",
    default: ".",
    parse: (path: string) => path,
  },
  raw: {
    group: "sending",
    excludes: ["interactive"],
    help: "print what the server sends, as it sends it (made safe on a " +
      "terminal), instead of checking it against what was sent, as nc " +
      "would: for servers that answer rather than echo (--mode info, " +
      "line mode's ERR lines)",
  },
  message: {
    group: "sending",
    arg: "TEXT",
    help: "the message, instead of MESSAGE; in a load test, sent instead of " +
      "--size random bytes",
    parse: text,
  },
  connections: {
    group: "load",
    arg: "N",
    excludes: ["num-clients"],
    help: "load test: connections at once",
    default: "1",
    parse: integer,
  },
  engine: {
    group: "engine",
    arg: "NAME",
    help: "load test: default (Deno's sockets) or native (one loop over " +
      "libc through FFI, in a thread of its own; TCP, Unix, UDP, or TLS " +
      "through OpenSSL; Linux); the client task allows FFI, and drops it " +
      "unless native",
    default: "default",
    parse: choice(["default", "native"] as const),
  },
  "native-io": {
    group: "engine",
    arg: "NAME",
    help: "load test with --engine native: io_uring (a system call per " +
      "batch of sends and receives; Linux 6.1+) or epoll (one per send and " +
      "receive); default io_uring where the kernel allows it, else epoll; " +
      "UDP, TLS and --reconnect-every run on epoll",
    parse: choice(["io_uring", "epoll"] as const),
  },
  "num-clients": {
    group: "load",
    arg: "N",
    option: "connections",
    help: "load test: N connections, each making --max-count round trips " +
      "unless --count or --duration is given",
    parse: integer,
  },
  count: {
    group: "load",
    arg: "N",
    excludes: ["max-count", "duration"],
    help: "load test: round trips in all",
    default: "1000 unless --duration or --max-count",
    parse: integer,
  },
  "max-count": {
    group: "load",
    arg: "N",
    option: "countPerConnection",
    excludes: ["duration"],
    help: "load test: round trips on each connection, instead of --count " +
      "(default: 1 with --num-clients)",
    parse: integer,
  },
  duration: {
    group: "load",
    arg: "S",
    help: "load test: run for S seconds instead of a count",
    parse: decimal,
  },
  warmup: {
    group: "load",
    arg: "S",
    requires: ["duration"],
    help: "load test: first run S seconds unmeasured (round trips made and " +
      "checked, not counted), then --duration",
    parse: decimal,
  },
  "reconnect-every": {
    group: "load",
    arg: "N",
    option: "reconnectEvery",
    help: "load test: a new connection every N round trips (1: a connect " +
      "and TLS handshake each), timed apart",
    parse: integer,
  },
  expect: {
    group: "load",
    arg: "LIST",
    help: "load test: count reset,close,timeout, not as errors",
    parse: endings,
  },
  size: {
    group: "load",
    arg: "N",
    option: "message",
    excludes: ["message"],
    help: "load test: message size in bytes",
    default: "64",
    parse: integer,
  },
  rate: {
    group: "load",
    arg: "N",
    help: "load test: aim for N round trips/s in all; latency counts from " +
      "when each was due",
    default: "unlimited, flat out",
    parse: (value: string): number =>
      value === UNLIMITED ? Infinity : decimal(value),
  },
  "report-interval": {
    group: "load",
    arg: "S",
    help: "load test: seconds between progress reports when stderr is not " +
      "a terminal",
    default: "5",
    parse: decimal,
  },
  json: {
    group: "load",
    help: "load test: print the report as one JSON object",
  },
  histogram: {
    group: "charts",
    arg: "FILE",
    help: "load test: write the latency percentile distribution to FILE, in " +
      "HdrHistogram's text format (ms), as its plotter and wrk2 users read it",
    parse: outputFile(),
  },
  plot: {
    group: "charts",
    arg: "FILE.svg",
    help: "load test: draw latency by percentile (50 % to 99.99 % and " +
      "beyond, log scale) to FILE.svg; a chart already there from an " +
      "earlier run keeps it, so runs with different --label compare",
    parse: outputFile(".svg"),
  },
  label: {
    group: "charts",
    arg: "NAME",
    requires: ["plot"],
    help: "this run's name in --plot's legend (default: the server's " +
      "address); a run of the same name is replaced",
    parse: text,
  },
  "log-level": {
    group: "logging",
    arg: "LEVEL",
    aliases: ["log_level"],
    help: `${LOG_LEVELS_HELP}: what the client logs on stderr (debug: each ` +
      "connection)",
    default: "warning",
    parse: logLevel,
  },
  ...HELP_FLAGS,
} satisfies Record<string, Flag<unknown>>;

/** The flags that make a load test. */
export const LOAD_FLAGS = [
  "connections",
  "num-clients",
  "count",
  "max-count",
  "duration",
  "warmup",
  "reconnect-every",
  "size",
  "rate",
  "report-interval",
  "json",
  "max-loss",
  "source-address",
] as const;

/** The groups of client.ts's --help; plain --help shows the common ones. */
export const CLIENT_GROUPS: HelpGroups = {
  target: { title: "Where", common: true },
  sending: { title: "One message, stdin, or a session", common: true },
  load: { title: "Load tests", common: true, intro: LOAD_HELP },
  logging: { title: "Logging and help", common: true },
  tls: { title: "TLS" },
  udp: { title: "UDP" },
  websocket: { title: "WebSocket" },
  agents: {
    title: "Load beyond one machine: agents through Redis, source addresses",
  },
  chat: {
    title: "Chat (interactively)",
    intro: `In a chat server's session the client takes files: /send NAME PATH
offers one (its size and SHA-256 go with the offer); /accept ID takes one,
resuming what an earlier attempt saved, and checks its SHA-256 before it
gives it its name.`,
  },
  proxy: { title: "PROXY protocol" },
  charts: { title: "Latency charts (load tests)" },
  engine: { title: "Engine (load tests)" },
};

/** client.ts's --help page. */
const CLIENT_HELP: HelpPage = {
  head: `Usage: deno task client [options] MESSAGE...
       deno task client [options] -
       deno task client [options] [--interactive]
       deno task client [options] --connections N (--count N | --duration S)

Sends MESSAGE (several words are joined with spaces) to a TCP echo server,
half-closes, and prints the echo and a newline; every byte is checked. With
-, sends stdin until EOF and writes the echo byte for byte. With no MESSAGE on
a terminal (or --interactive), a session: each line typed is sent, and what
the server sends is printed (safe for the terminal); Ctrl+D or "exit" ends it.`,
  table: CLIENT_FLAGS,
  groups: CLIENT_GROUPS,
  tail: `Examples:
  deno task client "hi"                          prints: hi
  printf 'any\\0bytes' | deno task client - | od -c
  deno task client --raw clientip                 ask a --mode info server
  deno task client --connections 50 --duration 10 --size 64 --json

Exit codes:
  0  the echo matched what was sent; interactively, the session ended; a
     load test had no error
  1  refused, reset, timed out, or a wrong echo; any error in a load test
  2  usage error (unknown flag, bad flag value, no message)
  3  a test on --agents lost an agent: the report leaves its part out`,
};

/**
 * client.ts's --help for `topic`: the common options (`""`), every option
 * (`all`), or one group's.
 *
 * @throws {UsageError} `topic` is no group's name.
 */
export function clientHelp(topic: string): string {
  return helpText(CLIENT_HELP, topic);
}

/** Throws a {@link UsageError} for flags and arguments that do not go together. */
export function checkClientFlags(
  { values: v, spelled, positionals }: ParsedFlags<typeof CLIENT_FLAGS>,
): void {
  if (v.help || v.version) return;
  if (v.agent) {
    if (positionals.length > 0 || v.message !== undefined) {
      throw new UsageError(
        "Unexpected MESSAGE with --agent: the coordinator's plans say what to send",
      );
    }
    return;
  }
  if (v.agents !== undefined && !LOAD_FLAGS.some((name) => spelled[name])) {
    throw new UsageError(
      "--agents needs a load test (--connections, --count, --duration, ...)",
    );
  }
  if (LOAD_FLAGS.some((name) => spelled[name] !== undefined)) {
    if (positionals.length > 0 || v.interactive) {
      throw new UsageError(
        "Unexpected MESSAGE or --interactive in a load test: use --message",
      );
    }
    if (v.raw) {
      throw new UsageError("Unexpected --raw in a load test: it checks echoes");
    }
    return;
  }
  for (
    const name of [
      "engine",
      "native-io",
      "histogram",
      "plot",
      "expect",
    ] as const
  ) {
    if (spelled[name] !== undefined) {
      throw new UsageError(
        `Unexpected ${
          spelled[name]
        } without a load test flag (--connections, --count, --duration, ...)`,
      );
    }
  }
  if (v.udp && positionals.length === 1 && positionals[0] === "-") {
    throw new UsageError("Unexpected - with --udp: give MESSAGE, one datagram");
  }
  if (positionals.length > 0 && v.message !== undefined) {
    throw new UsageError("Give MESSAGE or --message, not both");
  }
  const hasMessage = positionals.length > 0 || v.message !== undefined;
  if (v.interactive && hasMessage) {
    throw new UsageError(
      "Unexpected MESSAGE with --interactive: type the lines instead",
    );
  }
  if (!hasMessage && v.interactive === undefined && !Deno.stdin.isTerminal()) {
    throw new UsageError(
      "Missing MESSAGE: give the text to send, - for stdin, or --interactive",
    );
  }
}

/** Where and how to connect, from the flags given (the library fills defaults). */
export function clientTarget(
  v: FlagValues<typeof CLIENT_FLAGS>,
): EchoStreamOptions {
  return {
    hostname: v.hostname,
    port: v.port,
    path: v.unix,
    udp: v.udp,
    websocket: v.ws,
    websocketBinary: v["ws-binary"],
    sendProxy: v["send-proxy"],
    proxySource: v["proxy-source"],
    tls: v.tls,
    caCerts: v.ca,
    serverName: v["server-name"],
    cert: v["tls-cert"],
    key: v["tls-key"],
    alpnProtocols: v.alpn,
    timeout: v.timeout,
  };
}

/** --expect's list: endings a load test counts as outcomes. */
function endings(text: string): Ending[] {
  const list = text.split(",");
  for (const ending of list) {
    if (!(ENDINGS_EXPECTED as readonly string[]).includes(ending)) {
      throw new UsageError(
        `expected a comma-separated list of ${ENDINGS_EXPECTED.join(", ")}`,
      );
    }
  }
  return list as Ending[];
}
