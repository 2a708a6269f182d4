// The public types of serveEcho: its options, its handle and its counters.
// This file imports nothing of ours, so that every other file may import it
// without an import circle (`.ci/imports.ts` checks that).

/**
 * What the server does with what a client sends; see
 * {@linkcode ServeEchoOptions.mode}.
 */
export type EchoMode =
  | "echo"
  | "line"
  | "broadcast"
  | "chat"
  | "info"
  | "proxy";

/** The modes {@linkcode ServeEchoOptions.mode} accepts (for the CLI). */
export const MODES: readonly EchoMode[] = [
  "echo",
  "line",
  "broadcast",
  "chat",
  "info",
  "proxy",
];

/** Options for {@linkcode serveEcho} on TCP. */
export interface ServeEchoOptions {
  /**
   * The address to listen on: an IPv4 or IPv6 address (`::1`; `::` serves
   * IPv4 clients too where the system is dual-stack, as Linux is by
   * default), or a name, which listens on the first address it resolves
   * to.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port to listen on; 0 picks any free port (read it from
   * {@linkcode EchoServer.addr}).
   *
   * @default {9000}
   */
  port?: number;
  /**
   * A PEM certificate chain (the server's certificate first): with `key`,
   * the server speaks TLS, in every mode and with workers. Deno takes the
   * PEM text, not a file name. A client that does not complete a handshake
   * (plaintext, garbage, a certificate it rejects, or silence past
   * `handshakeTimeout`) is closed and counted in
   * {@linkcode EchoServerStats.handshakeFailures}, and never reaches the
   * mode.
   */
  cert?: string;
  /** The PEM private key of `cert`. */
  key?: string;
  /**
   * With TLS, milliseconds a client has to complete its handshake before it
   * is closed; 0 waits forever (a client that connects and says nothing
   * keeps its socket until shutdown). On the default engine (Deno's own TLS
   * listener cannot close a client whose handshake never completes), the
   * server listens on plain TCP and relays each client's bytes to Deno's
   * TLS on 127.0.0.1, whatever the timeout; the native engine speaks TLS
   * on the client's socket.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
  /**
   * With TLS, the PEM certificates of the authorities that sign clients'
   * certificates: the server asks every client for a certificate, verifies
   * it against them, and refuses a client without a valid one (unless
   * `clientCertOptional`). Info mode answers `clientcert` with its subject,
   * and the `Opened` record names it. The native engine only (Deno's TLS
   * cannot ask for one): the default engine refuses it.
   */
  clientCa?: string;
  /**
   * With `clientCa`, a client without a certificate is admitted too (one
   * with a certificate that does not verify is still refused).
   *
   * @default {false}
   */
  clientCertOptional?: boolean;
  /**
   * With TLS, the protocols offered by ALPN (RFC 7301), most preferred
   * first, each 1 to 255 bytes: a client that offers protocols gets the
   * first of its own that is here, and is refused when none is. Info mode
   * answers `alpn` with the protocol agreed.
   */
  alpnProtocols?: string[];
  /**
   * With TLS, more certificates, each chosen when a client asks for its
   * `hostname` by SNI (`*.example.com` matches one label); others get
   * `cert`. Info mode answers `sni` with the name asked. The native engine
   * only (Deno's TLS listener takes one certificate).
   */
  sni?: { hostname: string; cert: string; key: string }[];
  /**
   * Also echo UDP datagrams (RFC 862's datagram service) on the same port
   * number: each goes back to its sender unchanged, up to 65,507 bytes, and
   * the server never sends more than it received. `"only"` serves UDP
   * without TCP. Echo mode, or info mode (one command a datagram; its reply
   * may be larger than the command: `help`'s list, the hostname, the id);
   * without TLS, on the calling thread (with
   * `workers`, TCP is served by all of them, UDP by this one). Needs Deno's
   * `--unstable-net`. UDP echo answers whoever a datagram claims to come
   * from: do not expose it beyond networks you trust (it can reflect
   * traffic at a spoofed address, though never amplify it).
   *
   * @default {false}
   */
  udp?: boolean | "only";
  /**
   * Serves WebSocket clients too, over HTTP/1.1 at `hostname:port`
   * (127.0.0.1:8080 by default; TLS with `cert` and `key`):
   * `GET /ws` upgrades, and the mode serves each WebSocket as it serves a
   * TCP client, with the same counters, rules, faults, logs and relay (a
   * chat line typed in a browser reaches `nc` users in the room). In echo
   * mode each message comes back as it came (text as text, binary as
   * binary); the other modes take each text message as a line (several,
   * split on newlines) and send each line as one text message. A message
   * over `maxMessageBytes` (1 MiB by default) closes the WebSocket with
   * 1009, a frame that breaks the protocol with 1002 (1007 for text that
   * is not UTF-8). A request head not complete within `headerTimeout` ms
   * (10 s by default) is answered 408 and closed, counted with the bad
   * upgrades. `GET /healthz` answers 200 while the server runs, `GET /readyz`
   * 200 while it accepts and 503 once it drains. With `only`, no TCP
   * listener is opened beside it. Served by the default engine, with
   * `workers` too (each its own listener on the port).
   */
  websocket?: {
    hostname?: string;
    port?: number;
    only?: boolean;
    maxMessageBytes?: number;
    headerTimeout?: number;
  };
  /**
   * With `udp`, the most datagrams a second answered for one source
   * address (a token bucket with a burst of this many); the rest are
   * dropped and counted in `stats.datagramsRateLimited`, so that the UDP
   * echo cannot be turned into a flood at a third party. `Infinity` for
   * none.
   *
   * @default {1000}
   */
  udpRate?: number;
  /**
   * Every connection must start with a PROXY protocol header, version 1
   * (text) or 2 (binary), as HAProxy, AWS NLB, nginx and Envoy send it: the
   * client it names becomes the connection's peer everywhere (logs, and
   * `remoteAddr`); `LOCAL` (v2) and `UNKNOWN` (v1) keep the connection's
   * own. Bytes after the header are the start of the stream. A header that
   * breaks the spec, comes late or comes from an untrusted peer closes the
   * connection and counts in
   * {@linkcode EchoServerStats.proxyHeaderFailures}. Over TCP, TLS (the
   * header comes before the handshake) and Unix sockets; not UDP.
   *
   * @default {false}
   */
  proxyProtocol?: boolean;
  /**
   * With `proxyProtocol`, milliseconds a client has to send its whole
   * header.
   *
   * @default {3000}
   */
  proxyTimeout?: number;
  /**
   * With `proxyProtocol`, the proxies whose headers are believed: IP
   * addresses or CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`). A header from
   * anyone else is refused. Without it, every peer is believed. A Unix
   * socket's peers are on this host and always believed.
   */
  trustedProxies?: string[];
  /**
   * Clients that may come in: IPv4 or IPv6 addresses and CIDR blocks (a
   * bare address is a /32 or /128). With any entry, every other client is
   * refused: closed at once, before a byte is read, logged and counted in
   * {@linkcode EchoServerStats.refused}; UDP datagrams from others are
   * dropped. The address is the one a PROXY header names, with
   * `proxyProtocol`. Clients of a Unix socket have no address and are not
   * subject to it.
   */
  allow?: string[];
  /** Clients refused, as for `allow`; `deny` wins over `allow`. */
  deny?: string[];
  /**
   * The most connections one address may hold open at once, over all
   * workers; more are refused (closed before a byte is read, logged,
   * counted in `stats.refused.perAddress`). The address is the one a
   * PROXY header names; Unix-socket clients are not counted.
   *
   * @default {Infinity}
   */
  maxConnectionsPerIp?: number;
  /**
   * The most new connections one address may open a second, over all
   * workers: a token bucket with a burst of this many. More are refused
   * (`stats.refused.connectRate`).
   *
   * @default {Infinity}
   */
  connectRate?: number;
  /**
   * Each connection is read no faster than this many bytes a second (a
   * token bucket holding one second's bytes): what a client sends beyond
   * it waits in the kernel's buffers and TCP slows the client down, so
   * nothing is dropped and the echo stays exact, and one client cannot take
   * the whole machine.
   *
   * @default {Infinity}
   */
  maxBytesPerSecond?: number;
  /**
   * Faults to act out on purpose, as toxiproxy's toxics do: each delays,
   * thins, slices or cuts what the server receives or sends (`direction`)
   * for a fraction of connections (`rate`) and, with `clients`, only for
   * clients in those CIDRs. Checked whole before the server starts (a
   * mistake is a `TypeError` naming the fault and the field). The default
   * engine acts out `latency`, `bandwidth`, `slicer`, `limit`, `hang` and
   * `slow_close` on every mode and transport (on TLS, on its encrypted
   * bytes), and `drop`, `duplicate`, `corrupt` and `reorder` on the replies
   * of `udp`, and `down` that closes; the native engine acts out the
   * stream faults and `reset` (RST) on every transport (on TLS, on the
   * plaintext),
   * `down` that closes, and the datagram faults. What an engine cannot act
   * out is refused with its reason.
   */
  faults?: readonly FaultSpec[];
  /**
   * In proxy mode (`mode: "proxy"`), where every connection is forwarded:
   * `HOST:PORT`, `[ADDRESS]:PORT` or `unix:PATH`. Each client gets its own
   * connection to it, and bytes go both ways as they come, each side's end
   * of stream passed on as a half-close; the faults act on the client's
   * side (`receive`: what goes upstream; `send`: what comes back). When it
   * cannot be reached, the client's connection is closed (see
   * `upstreamUnreachable`), counted in `stats.upstreamFailures`, and the
   * outage logged once (a warning), and once more when it answers again.
   * The native engine resolves a host name once, when it starts; the
   * default engine at each connect.
   */
  upstream?: string;
  /**
   * In proxy mode, speak TLS to the upstream, verifying its certificate
   * for `serverName` (the upstream's host by default) against `caCerts`
   * (PEM), or the system's store without them.
   *
   * @default {false}
   */
  upstreamTls?: boolean | { caCerts?: readonly string[]; serverName?: string };
  /**
   * In proxy mode, start each upstream connection with a PROXY header of
   * this version naming the client (after any PROXY header it came with)
   * and the address it connected to, before TLS; `LOCAL` (v2) or `UNKNOWN`
   * (v1) for a client on a Unix socket.
   */
  upstreamProxy?: "v1" | "v2";
  /**
   * In proxy mode, how long a connect to the upstream (with its PROXY
   * header and TLS handshake) may take, in milliseconds.
   *
   * @default {5000}
   */
  upstreamTimeout?: number;
  /**
   * In proxy mode, how a client is closed when its upstream cannot be
   * reached: `"reset"` (RST, as the upstream's refusal would look; the
   * native engine's default) or `"close"` (a clean end of stream, FIN; the
   * default engine's, which cannot reset a connection: Deno has no
   * `SO_LINGER`, so it refuses `"reset"`).
   */
  upstreamUnreachable?: "reset" | "close";
  /**
   * Whether a change of the faults (`setFaults`, a control API) reaches
   * connections already open, from their next bytes on: `latency`,
   * `bandwidth`, `slicer` and `hang` are replaced (a hang whose fault is
   * lifted lets bytes pass again), and a `down` that closes closes them;
   * `limit`, `reset` and `slow_close` count from a connection's start, so
   * they stay as they were. Every connection then passes through the
   * faults' layer (it passes bytes straight on while none hit it), which
   * costs a little on each read and write; without it, open connections
   * keep the faults they were accepted with.
   *
   * @default {false}
   */
  liveFaults?: boolean;
  /**
   * In broadcast and chat mode, the Redis that several instances share, so
   * that their clients form one broadcast or one chat: every line reaches
   * every client of every instance, once, in one order; names are unique
   * and rooms span instances. `redis://`, `rediss://` (TLS) or
   * `unix:///path` to a socket; a password goes in the URL. `ready`
   * rejects if Redis does not answer within 5 s.
   */
  redis?: string;
  /**
   * With `redis`, the prefix of every key, so that several clusters share
   * one Redis.
   *
   * @default {"tcp-echo"}
   */
  redisKey?: string;
  /**
   * With `redis`, the most lines an instance holds, unsent, while Redis is
   * away (they go out in order once it is back). Past it, a sender gets
   * `ERR cluster unavailable, line not sent`. From 1 to 1,000,000.
   *
   * @default {10000}
   */
  redisHold?: number;
  /**
   * The most connections served at once. A connection over the limit is
   * closed as soon as it is accepted and counted in
   * {@linkcode EchoServerStats.rejected}.
   *
   * @default {Infinity}
   */
  maxConnections?: number;
  /**
   * Milliseconds a connection may go without a byte moving either way before
   * the server closes it; 0 never closes an idle connection.
   *
   * @default {0}
   */
  idleTimeout?: number;
  /**
   * Milliseconds {@linkcode EchoServer.shutdown} lets open connections finish
   * before it ends them; `Infinity` waits for every client to close. Ending
   * is polite: the server stops reading, sends what it has in flight,
   * half-closes, and closes once the client closes or after one more
   * second, so a client sees a clean end of stream and an exact prefix of
   * its echo.
   *
   * @default {5000}
   */
  gracePeriod?: number;
  /**
   * Milliseconds {@linkcode EchoServer.shutdown} goes on accepting before
   * it drains, with {@linkcode EchoServer.draining} set (and `/readyz`
   * answering 503), so that a load balancer stops sending new clients
   * before the listener closes (agnhost's `--delay-shutdown`). Aborting
   * `signal` meanwhile stops at once.
   *
   * @default {0}
   */
  drainDelay?: number;
  /**
   * Aborting this signal is the hard stop: the listener and every connection
   * are closed at once.
   */
  signal?: AbortSignal;
  /**
   * What the server does with what a client sends:
   *
   * - `"echo"`: every byte back, in order (RFC 862).
   * - `"line"`: every newline-terminated line back as sent (`\n` or
   *   `\r\n`; a last line without a newline counts too). A line that is
   *   exactly `exit` or `quit` closes the connection.
   * - `"broadcast"`: every line from any client goes, unchanged, to every
   *   client, the sender included, in the order the server received them.
   * - `"chat"`: named clients in rooms: `<name> text` lines, join and leave
   *   notices, `/nick NAME`, `/join ROOM`, `/who` and `/quit` (in any
   *   case). Text is for people's terminals: invalid UTF-8 and every control
   *   character but TAB (a bare CR, escape sequences) become U+FFFD, and a
   *   name cannot pass for the server's text or another user's prefix.
   *
   * - `"info"`: for load-balancer and mesh tests, each line is a command
   *   and gets one line back: `hostname`, `id`, `clientip` and
   *   `clientport` (after any PROXY header), `serverip`, `serverport`,
   *   `transport`, `echo TEXT`, `time` (RFC 3339), `help`; `exit` or
   *   `quit` closes. Over UDP, each datagram is one command. It reads the
   *   hostname, which Deno allows with `--allow-sys=hostname`.
   *
   * - `"proxy"`: every connection is forwarded to `upstream`, both ways,
   *   byte for byte, so that faults break any TCP service put behind it.
   *
   * In every line mode, a line longer than `maxLineBytes` gets
   * `ERR line too long (max N bytes)` back and its connection is closed.
   *
   * @default {"echo"}
   */
  mode?: EchoMode;
  /**
   * In info mode, what `id` answers, so that several instances on one
   * machine tell themselves apart.
   *
   * @default {"HOSTNAME:PORT"}
   */
  id?: string;
  /**
   * The longest line the line modes accept, in bytes, not counting its
   * `\n` or `\r\n`.
   *
   * @default {8192}
   */
  maxLineBytes?: number;
  /**
   * The most lines that may wait in one client's send queue: lines from
   * other clients and from {@linkcode EchoServer.announce} that its socket
   * has not taken yet. A client whose queue is full is disconnected, so a
   * slow reader never slows the others down. At least 2.
   *
   * @default {100}
   */
  channelCapacity?: number;
  /**
   * The most bytes that may wait in one client's send queue; see
   * `channelCapacity`. At least twice the longest line the server may send:
   * `2 * (maxLineBytes + 134)`, or in chat mode, where each control
   * character or invalid UTF-8 byte becomes the 3-byte U+FFFD,
   * `2 * (3 * maxLineBytes + 134)`.
   *
   * @default {1048576}
   */
  channelBytes?: number;
  /**
   * How many of its room's last messages a chat newcomer gets, from 0 to
   * half of `channelCapacity`. The default is 20, or half of
   * `channelCapacity` when that is less.
   *
   * @default {20}
   */
  history?: number;
  /**
   * How chat names its clients: `"auto"` calls each `userN` until it
   * changes its name with `/nick`; `"cert"` (with `clientCa`, on the native
   * engine) calls a client with a verified certificate by its common name
   * (CN), which it cannot change and which a client without a certificate
   * cannot keep: its holder is renamed `userN` when the certificate's
   * owner comes. A second client with the same certificate name, or one
   * whose CN is not a valid chat name, is called `userN`, and its welcome
   * says why.
   *
   * @default {"auto"}
   */
  chatNames?: "auto" | "cert";
  /**
   * Chat's flood control: the lines (commands too) one client may send a
   * second, in a burst of as many; past it, each line is refused with an
   * `ERR too many lines` line to its sender alone, and counted in
   * `stats.chatLinesLimited`. Decided where the client is connected, once,
   * so with `redis` too. `Infinity` for none. Chat mode only.
   *
   * @default {Infinity}
   */
  chatRate?: number;
  /**
   * Chat's registered users: the text of a users file (`NAME:HASH` a line,
   * scrypt hashes as `deno task server --add-user` writes them; `#`
   * comments). A registered name can be taken only with `/login NAME
   * PASSWORD` (or `/nick NAME PASSWORD`), checked where the client is
   * connected: the password reaches no other instance, log or history.
   * Failed logins wait a second for their answer; past 3 on a connection
   * or 10 a minute from an address, logins are refused unchecked. Counted
   * in `stats.chatLogins`. {@linkcode EchoServer.reloadChatUsers} takes a
   * new text. Chat mode only.
   */
  chatUsers?: string;
  /**
   * With `chatUsers`: a client is in no room, and may send only `/login`,
   * `/help` and `/quit`, until it has logged in (or its certificate named
   * it, with `chatNames: "cert"`).
   *
   * @default {false}
   */
  chatRequireLogin?: boolean;
  /**
   * How chat clients read and write until they say `/protocol`: `text`
   * (lines for people, as ever) or `json` (every line the server sends is
   * one JSON object, and a client may send objects: see
   * docs/chat-protocol.md). Chat mode only.
   *
   * @default {"text"}
   */
  chatProtocol?: "text" | "json";
  /**
   * Chat history that survives restarts: every room's lines are appended
   * to this file as JSON lines (`{"room","line","ts"}`), read back at start
   * (a newcomer after a restart still gets the room's last `history`
   * lines, and `/history N` more), and the file is rewritten with only
   * what is kept once it has grown 10,000 lines past it. A torn last line
   * (a crash mid-write) or any line that is not an entry is skipped and
   * logged. Chat mode only; with `redis`, each instance may keep its own.
   */
  historyFile?: string;
  /**
   * When `historyFile`'s lines reach the disk: `always` (fsync each line),
   * `second` (at most a second later) or `never` (when the system likes),
   * as Redis' `appendfsync`.
   *
   * @default {"second"}
   */
  historySync?: "always" | "second" | "never";
  /**
   * Chat's files between members: the largest file a client may offer
   * (`/send NAME PATH` in our interactive client), in bytes; 0 turns file
   * transfer off. The bytes go through the server on connections of their
   * own, to a second listener on `filePort` (see docs/chat.md); with
   * `redis`, between instances through Redis. Counted in `stats.chatFiles`
   * and `stats.chatFileBytes`. Chat mode only, on TCP (not a Unix socket).
   *
   * @default {1073741824}
   */
  maxFileBytes?: number;
  /**
   * The port of chat's file listener, on the chat listener's host and with
   * its TLS; 0 picks a free one (clients are told which). Give one when
   * clients come through a firewall or a NAT that must let it through.
   *
   * @default {0}
   */
  filePort?: number;
  /**
   * How many threads serve connections: the calling thread and
   * `workers - 1` Web Workers, each with its own listener on the same port
   * (`SO_REUSEPORT`), so that the kernel spreads new connections over them.
   * `"auto"` is one per core (`navigator.hardwareConcurrency`); at most
   * four per core (a worker costs about 11.5 MB). Counters,
   * limits, shutdown, the signal and every mode span all workers: a
   * broadcast or chat line reaches the clients of every worker, through a
   * relay that runs on the calling thread.
   *
   * More than one needs Linux, Deno's `--unstable-net` flag, and read
   * access to this package's worker module when it is loaded from disk. A
   * port that another process listens on is refused
   * (`Deno.errors.AddrInUse`), as without workers: the listeners only share
   * the port among themselves.
   *
   * @default {1}
   */
  workers?: number | "auto";
  /**
   * What serves the connections. `"default"` is Deno's own sockets.
   * `"native"` is an epoll loop over libc through Deno's FFI, one per
   * worker, each in a Web Worker of its own (so with `workers: 1` too, and
   * the calling thread stays free): every mode and option, over TCP, TLS
   * (through OpenSSL's `libssl.so.3`), Unix sockets and UDP, on Linux
   * (x86_64, aarch64); it needs
   * `--allow-ffi`, which is full access to the process. For benchmarks and
   * many connections; see docs/native-engine.md.
   *
   * @default {"default"}
   */
  engine?: "default" | "native";
}

/**
 * Options for {@linkcode serveEcho} on a Unix domain socket: the TCP options
 * but the address, with a `path` instead, as for `Deno.serve`. It is served
 * on one thread: `workers` must be 1. TLS on it (`cert`, `key`) needs the
 * native engine.
 */
export interface ServeEchoUnixOptions extends
  Omit<
    ServeEchoOptions,
    "hostname" | "port" | "udp"
  > {
  /**
   * The socket's path, at most 107 bytes. A socket file there that nothing
   * answers on (left by a server that was killed) is replaced, and
   * {@linkcode EchoServer.ready} resolves once the server listens; a live
   * server there, or a file that is not a socket, rejects `ready` with
   * `Deno.errors.AddrInUse`. The file is removed when the server stops.
   * Deno needs `--allow-read`, `--allow-write` and `--allow-net` for it.
   */
  path: string;
}

/** How a server in a cluster (`redis`) is linked to the others. */
export interface ClusterStatus {
  /** Redis answers now. */
  readonly up: boolean;
  /** Lines held, unsent, while Redis is away (at most `redisHold`). */
  readonly heldLines: number;
  /**
   * Seconds between the stream's last entry and the last one this server
   * applied: 0 when it is caught up; `undefined` while Redis is away.
   */
  readonly lagSeconds: number | undefined;
}

/** What {@linkcode EchoServer.reloadTls} takes: new certificates. */
export type TlsReload =
  & Required<Pick<ServeEchoOptions, "cert" | "key">>
  & Pick<ServeEchoOptions, "clientCa" | "clientCertOptional" | "sni">;

/** Why a TLS handshake failed, as stats and metrics count it. */
export type HandshakeFailureKind =
  | "protocol"
  | "certificate"
  | "timeout"
  | "notTls";

/**
 * Why a connection closed: the client closed it, it was idle for
 * `idleTimeout`, its send queue was full, it sent `/quit` (or, in line and
 * info mode, `exit` or `quit`), the server shut
 * down politely (`shutdown`, the grace period's end) or stopped at once, it
 * was reset (or its pipe broke), a fault ended it on purpose (`faults`), or
 * another error.
 */
export type CloseReason =
  | "closedByClient"
  | "idleTimeout"
  | "sendQueueFull"
  | "quitCommand"
  | "shutdown"
  | "serverStopped"
  | "reset"
  | "fault"
  | "error";

/** Counters of an {@linkcode EchoServer}, read at one instant. */
export interface EchoServerStats {
  /** Connections open now. */
  readonly active: number;
  /** Connections accepted since the server started, rejected ones included. */
  readonly accepted: number;
  /** Connections closed at once because `maxConnections` were open. */
  readonly rejected: number;
  /** Bytes received from clients. */
  readonly bytesIn: number;
  /** Bytes sent to clients. */
  readonly bytesOut: number;
  /** Connections closed because their send queue was full. */
  readonly dropped: number;
  /**
   * Connections lost before they could be served: `accept()` failed for
   * that one connection, most often because the client reset it while it
   * waited to be accepted (on the stream listener or the WebSocket
   * listener). Not in `accepted`.
   */
  readonly acceptErrors: number;
  /**
   * TLS clients closed because their handshake failed (a plaintext client,
   * garbage, a client that rejected the certificate) or did not finish
   * within `handshakeTimeout`. Not in `accepted`.
   */
  readonly handshakeFailures: number;
  /** TLS handshakes completed (each client admitted or not after it). */
  readonly handshakes: number;
  /**
   * {@linkcode EchoServerStats.handshakeFailures} by kind: `protocol` (the
   * TLS exchange failed, or the client left mid-way), `certificate` (a
   * client certificate missing or refused, or the client refused ours),
   * `timeout` and `notTls` (plain text, an HTTP request).
   */
  readonly handshakeFailuresBy: Readonly<Record<HandshakeFailureKind, number>>;
  /**
   * How long completed handshakes took, from accept: `counts[i]` took at
   * most `[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1][i]` seconds
   * (and more than the bucket before); the last count is for the rest.
   */
  readonly handshakeDurations: {
    readonly counts: readonly number[];
    readonly sumSeconds: number;
  };
  /** Connections that `faults` hit (one fault or more). */
  readonly faulted: number;
  /**
   * In proxy mode, connects to the upstream that failed (each closed its
   * client's connection).
   */
  readonly upstreamFailures: number;
  /**
   * Requests refused on the WebSocket listener: upgrades not valid (a bad
   * key, 400, or version, 426), bad HTTP (400, 431, 505), and request
   * heads not complete within `websocket.headerTimeout` (408).
   */
  readonly websocketBadUpgrades: number;
  /** Chat lines refused by flood control (`chatRate`). */
  readonly chatLinesLimited: number;
  /**
   * Chat logins: `ok`, `failed` (a wrong name or password), `refused`
   * (too many failures, not checked).
   */
  readonly chatLogins: Record<"ok" | "failed" | "refused", number>;
  /**
   * Chat's file transfers (`maxFileBytes`): `done` (every byte delivered to
   * the receiver's client), `failed` (a side went away or never came);
   * counted where the receiver is connected.
   */
  readonly chatFiles: Record<"done" | "failed", number>;
  /** Bytes chat's file transfers delivered to their receivers. */
  readonly chatFileBytes: number;
  /**
   * Bytes that `latency`, `bandwidth` and `slicer` faults held back, each
   * way (a byte received and echoed counts twice when both are delayed).
   */
  readonly faultDelayedBytes: number;
  /**
   * What `faults` did: connections a `limit` ended, that a `hang` hung, that
   * a `reset` reset, that `down` closed at once; UDP replies dropped, sent
   * twice, corrupted, held back.
   */
  readonly faultActions: Readonly<Record<FaultAction, number>>;
  /** UDP datagrams received (with `udp`). */
  readonly datagramsIn: number;
  /** UDP datagrams sent back. */
  readonly datagramsOut: number;
  /** Bytes in the UDP datagrams received. */
  readonly datagramBytesIn: number;
  /** Bytes in the UDP datagrams sent back. */
  readonly datagramBytesOut: number;
  /**
   * With `proxyProtocol`, connections closed because their PROXY header was
   * not valid, not complete within `proxyTimeout`, or came from a peer that
   * is not a trusted proxy. Not in `accepted`.
   */
  readonly proxyHeaderFailures: number;
  /**
   * Connections refused by `deny` (`denied`) or for not being in `allow`
   * (`notAllowed`), closed before a byte was read. Not in `accepted`.
   */
  readonly refused: {
    readonly denied: number;
    readonly notAllowed: number;
    /** Over `maxConnectionsPerIp`. */
    readonly perAddress: number;
    /** Over `connectRate`. */
    readonly connectRate: number;
  };
  /** UDP datagrams dropped because `deny` or `allow` refused their source. */
  readonly datagramsRefused: number;
  /** UDP datagrams dropped because their source went over `udpRate`. */
  readonly datagramsRateLimited: number;
  /** Connections closed after they were accepted, by why. */
  readonly closed: Readonly<Record<CloseReason, number>>;
  /**
   * How long closed connections lasted: `counts[i]` connections lasted at
   * most `[0.001, 0.01, 0.1, 1, 10, 60, 600, 3600][i]` seconds and more
   * than the bound before it (the last count: longer than an hour), and
   * `sumSeconds` is their total.
   */
  readonly durations: {
    readonly counts: readonly number[];
    readonly sumSeconds: number;
  };
  /**
   * Lines the relay delivered in broadcast and chat mode, each counted once
   * however many members got it (with Redis, every instance counts the
   * lines it delivered to its own members); 0 in the other modes.
   */
  readonly linesRelayed: number;
  /**
   * Connections accepted by each worker, the calling thread's first (one
   * number without workers).
   */
  readonly perWorker: readonly number[];
}

/**
 * A running echo server, as returned by {@linkcode serveEcho}: on TCP its
 * `addr` is a `Deno.NetAddr`, on a Unix socket a `Deno.UnixAddr`.
 */
export interface EchoServer<A extends Deno.Addr = Deno.NetAddr>
  extends AsyncDisposable {
  /** The address the server listens on, with the port really bound. */
  readonly addr: A;
  /**
   * Whether a shutdown has begun ({@linkcode EchoServer.shutdown}, a first
   * SIGTERM on the command line): from then on `/readyz` answers 503, while
   * the server may still accept for `drainDelay` ms.
   */
  readonly draining: boolean;
  /**
   * The address of its WebSocket listener (`websocket`), with the port
   * really bound; undefined without one.
   */
  readonly websocketAddr: Deno.NetAddr | undefined;
  /** Resolves once the listener and every connection are closed. */
  readonly finished: Promise<void>;
  /**
   * Resolves once every worker listens (at once without workers); until
   * then, the calling thread's listener takes every connection. Rejects if
   * a worker failed to start. On a Unix socket whose path holds an old
   * socket file, resolves once that is replaced, and rejects with
   * `Deno.errors.AddrInUse` when a server answers there.
   */
  readonly ready: Promise<void>;
  /** The server's counters at this instant. */
  readonly stats: EchoServerStats;
  /** What the server does with what clients send. */
  readonly mode: EchoMode;
  /** What serves the connections: Deno's sockets, or the native engine. */
  readonly engine: "default" | "native";
  /**
   * What clients reach it over: TCP, TLS or a Unix socket (UDP beside any
   * of them is in `stats`); `"udp"` for a server of datagrams only.
   */
  readonly transport: "tcp" | "tls" | "unix" | "udp" | "websocket";
  /**
   * Whether clients speak TLS to it: on TCP (`transport` `"tls"`), or on a
   * Unix socket (`"unix"`, the native engine).
   */
  readonly tls: boolean;
  /**
   * The faults it acts out now (see {@linkcode ServeEchoOptions.faults}),
   * as checked: every default filled in, `direction` always given.
   */
  readonly faults: readonly FaultSpec[];
  /**
   * With `redis`, how the server is linked to the others (read from Redis
   * at that moment); `undefined` for a server not in a cluster.
   */
  clusterStatus(): Promise<ClusterStatus | undefined>;
  /**
   * Sends one line of text to every connected client: as `[server] message`
   * in broadcast and chat mode, as the bare line in echo and line mode. A
   * client whose send queue is full is disconnected.
   *
   * @param message The text, without a line ending.
   * @returns How many clients it was sent to.
   * @throws {TypeError} `message` contains a line break.
   */
  announce(message: string): number;
  /**
   * Takes new TLS certificates and keys, and client authorities, for the
   * handshakes to come; connections already open, or in their handshake,
   * go on with theirs (certificate rotation, as on SIGHUP for the server
   * CLI). The options left out keep their values: `alpnProtocols`,
   * `handshakeTimeout`, and `clientCertOptional` unless given.
   *
   * @param tls The new `cert` and `key`, and `clientCa`, `sni` if any.
   * @returns A promise that resolves once every listener (every worker)
   * uses them.
   * @throws {TypeError} (the promise rejects) This server does not speak
   * TLS, or one of them is not usable (its `option` names which): the old
   * ones stay.
   */
  reloadTls(tls: TlsReload): Promise<void>;
  /**
   * Takes a new text of the chat users file (see
   * {@linkcode ServeEchoOptions.chatUsers}), for the logins to come; who is
   * logged in stays so (as on SIGHUP for the server CLI).
   *
   * @throws {TypeError} This server has no `chatUsers`, or `text` is not a
   * users file (the error says which line): the old users stay.
   */
  reloadChatUsers(text: string): void;
  /**
   * Replaces the server's faults (see {@linkcode ServeEchoOptions.faults}):
   * connections accepted, and UDP replies sent, from now on get the new
   * ones; connections already open keep theirs, or with `liveFaults` take
   * the new ones that make sense for them. `[]` lifts them all. Changes
   * are made one at a time, in the order asked.
   *
   * @throws {TypeError} The spec is not valid (its message names the fault
   * and the field), or asks for UDP faults on a server without UDP.
   * @throws {RangeError} This engine cannot act one of them out (its
   * `option` is `engine`). In both cases the faults before stay.
   */
  setFaults(faults: readonly FaultSpec[]): Promise<void>;
  /**
   * Stops accepting at once, lets open connections finish for up to
   * `gracePeriod` milliseconds, then ends the rest politely (see
   * {@linkcode ServeEchoOptions.gracePeriod}). Calling it again returns the
   * same promise.
   *
   * @returns A promise that resolves when the server has finished.
   */
  shutdown(): Promise<void>;
}

/**
 * Where a client connects: {@linkcode echoOnce}, {@linkcode echoStream} and
 * {@linkcode loadTest} take these.
 */
export interface ConnectOptions {
  /**
   * The echo server's host name or IP address (IPv6 as `::1`, without
   * brackets).
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The echo server's port.
   *
   * @default {9000}
   */
  port?: number;
  /**
   * Connect to the Unix domain socket at this path instead of `hostname`
   * and `port` (which must then be left out). Deno needs `--allow-read`
   * and `--allow-write` for it.
   */
  path?: string;
  /**
   * Speak TLS, verifying the server's certificate against `caCerts`, or
   * the system's trust store without them. A certificate that does not
   * verify fails the call, as any connection error does.
   *
   * @default {false}
   */
  tls?: boolean;
  /**
   * Speak UDP: `echoOnce` sends its message as one datagram (at most
   * 65,507 bytes) and waits up to its `timeout` for the reply; `loadTest`
   * counts replies that do not come within `timeout` as lost. Not for
   * `echoStream`. Needs Deno's `--unstable-net`.
   *
   * @default {false}
   */
  udp?: boolean;
  /**
   * Start the connection with a PROXY protocol header of this version, as
   * a proxy would, before anything else (before TLS): to test a server, or
   * a chain of proxies, that reads it. Over TCP it names `proxySource` (or
   * this connection's own address) and the server's; over a Unix socket
   * without `proxySource`, v1 `UNKNOWN` or v2 `LOCAL`. Not for UDP.
   */
  sendProxy?: "v1" | "v2";
  /**
   * With `sendProxy`, the client address the header claims, as
   * `ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6).
   */
  proxySource?: string;
  /** With `tls`, the PEM certificates of the authorities to trust instead. */
  caCerts?: readonly string[];
  /**
   * With `tls`, the name the certificate must be for, and the one sent in
   * SNI, when it is not `hostname` (connecting to an IP address, say).
   */
  serverName?: string;
  /**
   * With `tls`, a client certificate to present (PEM chain), for a server
   * that asks for one; with `key`. Deno presents one only on a connection
   * it opens itself: not after a PROXY header (`sendProxy`), nor with a
   * `serverName` other than `hostname`. (`loadTest` with `engine:
   * "native"` speaks TLS through OpenSSL, which presents it anywhere, over
   * a Unix socket too.)
   */
  cert?: string;
  /** With `cert`, its PEM private key. */
  key?: string;
  /** With `tls`, the protocols to offer by ALPN, most preferred first. */
  alpnProtocols?: readonly string[];
  /**
   * Speak WebSocket to this `ws://` or `wss://` URL (a server's
   * `websocket` listener: `ws://127.0.0.1:8080/ws`) instead of TCP to
   * `hostname` and `port`: each write is one message, and the messages
   * received are the echo, so echoes and load tests check every byte as
   * over TCP. `wss://` trusts `caCerts` when given. A WebSocket cannot
   * half-close: the end of the input closes it once as many messages have
   * come back as were sent.
   */
  websocket?: string;
  /**
   * With `websocket`, send binary messages rather than text (text must be
   * UTF-8; `loadTest`'s generated message then is printable ASCII).
   *
   * @default {false}
   */
  websocketBinary?: boolean;
}

/** What a fault did, as {@linkcode EchoServerStats.faultActions} counts it. */
export type FaultAction =
  | "limit"
  | "hang"
  | "reset"
  | "down"
  | "drop"
  | "duplicate"
  | "corrupt"
  | "reorder";

/** Whom a fault hits, and how it is known: what every fault may have. */
export interface FaultTarget {
  /**
   * Unique among the server's faults; by default its kind (so two faults
   * of one kind need names).
   */
  name?: string;
  /**
   * What it acts on: what the server receives, what it sends, or both.
   *
   * @default {"both"}
   */
  direction?: "receive" | "send" | "both";
  /**
   * The fraction of connections it hits (toxiproxy's toxicity), from 0 to 1.
   *
   * @default {1}
   */
  rate?: number;
  /** Only clients in these CIDRs (`10.0.0.0/8`, `::1`); everyone without. */
  clients?: readonly string[];
}

/**
 * One fault of {@linkcode ServeEchoOptions.faults}: its kind, its own
 * parameters (milliseconds, bytes, probabilities from 0 to 1), and whom it
 * hits.
 */
export type FaultSpec =
  & FaultTarget
  & (
    /** Each chunk later by `ms`, ± `jitter` (uniform or normal), in order. */
    | {
      kind: "latency";
      ms: number;
      jitter?: number;
      distribution?: "uniform" | "normal";
    }
    /** At most `bytesPerSecond`, nothing dropped. */
    | { kind: "bandwidth"; bytesPerSecond: number }
    /** Pieces of `size` bytes (± `sizeJitter`), `delayMs` apart. */
    | { kind: "slicer"; size: number; sizeJitter?: number; delayMs?: number }
    /** After `bytes`, a clean close (FIN). */
    | { kind: "limit"; bytes: number }
    /** After `bytes`, or `afterMs` from the start, a reset (RST). */
    | { kind: "reset"; bytes?: number; afterMs?: number }
    /** After `bytes`, nothing more either way; closed after `forMs`, if given. */
    | { kind: "hang"; bytes?: number; forMs?: number }
    /** The close held back `ms`. */
    | { kind: "slow_close"; ms: number }
    /** New connections closed at once, or not accepted. */
    | { kind: "down"; how?: "close" | "refuse" }
    /** UDP replies dropped, sent twice or with one bit flipped. */
    | { kind: "drop" | "duplicate" | "corrupt"; probability: number }
    /** UDP replies held back while `window` later ones pass. */
    | { kind: "reorder"; probability: number; window?: number }
  );

/** Options for `loadTest`. */
export interface LoadTestOptions extends ConnectOptions {
  /**
   * Connections opened at once; each runs its own round trips one after
   * another.
   *
   * @default {1}
   */
  connections?: number;
  /**
   * Round trips in all, over all connections. Without `count`,
   * `countPerConnection` or `duration`, 1000.
   */
  count?: number;
  /**
   * Round trips each connection makes, instead of a `count` in all: with
   * `connections: 2, countPerConnection: 10`, 20 round trips, 10 on each
   * connection. A connection that fails makes fewer.
   */
  countPerConnection?: number;
  /**
   * Milliseconds to run for, instead of a `count`. At its end (or the
   * signal's), round trips in flight finish, uncounted, for up to a second
   * (at most `timeout`), so that each connection closes with nothing owed:
   * the server sees its clients close, not reset.
   */
  duration?: number;
  /**
   * With `duration`, milliseconds to run first without measuring: round
   * trips are made and checked but not counted, so that the server and
   * this process (its JIT, its caches) are warm when `duration` starts, as
   * a C load generator's warm-up does.
   *
   * @default {0}
   */
  warmup?: number;
  /**
   * The message: its bytes (a string is sent as UTF-8), or a size in bytes
   * for a message of pseudo-random bytes.
   *
   * @default {64}
   */
  message?: string | Uint8Array | number;
  /**
   * Round trips each connection makes before it is closed and a new one
   * opened in its place: 1 makes a connect (and a TLS handshake) for every
   * round trip. The report times connects and handshakes apart from round
   * trips. Not for UDP.
   *
   * @default {Infinity}
   */
  reconnectEvery?: number;
  /**
   * Ways a connection may end early that the test expects (a server with
   * faults, or one that drops clients on purpose): `reset`, `close` (before
   * its echo was whole) and `timeout` (a round trip over `timeout`). Each
   * is counted (`resets`, `closes`, `timeouts` in the report), not an error,
   * and another connection takes its place. Not for UDP.
   */
  expect?: readonly ("reset" | "close" | "timeout")[];
  /**
   * Round trips per second to aim for, over all connections; each connection
   * starts its round trips on a fixed schedule. When a connection is behind
   * that schedule because its earlier round trips were slow, latency is
   * measured from when the round trip was due, so a server that falls behind
   * is not flattered (no coordinated omission). Without it, connections go
   * flat out.
   */
  rate?: number;
  /**
   * Milliseconds a round trip may take before it counts as an error and its
   * connection stops; also the connect timeout. 0 waits forever.
   *
   * @default {10000}
   */
  timeout?: number;
  /** Called about every `progressInterval` milliseconds while it runs. */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * How often `onProgress` is called.
   *
   * @default {1000}
   */
  progressInterval?: number;
  /** Aborting it stops the test early; the report covers what was done. */
  signal?: AbortSignal;
  /**
   * What drives the connections. `"native"` is one io_uring or epoll loop
   * over libc through Deno's FFI, in a Web Worker of its own: TCP, a Unix
   * socket (with a PROXY header if asked), UDP, or TLS through OpenSSL
   * (`libssl.so.3`, resuming sessions on reconnects; these three on epoll),
   * on Linux, with `--allow-ffi` (full access to the process). For driving
   * fast servers at the rate of a C load generator; every byte is still
   * compared and every latency recorded.
   *
   * @default {"default"}
   */
  engine?: "default" | "native";
  /**
   * How the native engine drives its sockets: `"io_uring"` (Linux 6.1+:
   * one system call submits a batch of sends and receives; the fastest),
   * or `"epoll"` (readiness, then a send or recv call each). By default,
   * io_uring where the kernel allows it (containers often forbid it), else
   * epoll; the report says which ran. Only with `engine: "native"`.
   */
  nativeIo?: "io_uring" | "epoll";
  /**
   * Local addresses the connections come from, in turn (connection i from
   * the i-th modulo their number), each an address or an IPv4 CIDR block
   * (its hosts: `127.0.0.0/29` is `127.0.0.1` to `127.0.0.6`), so that one
   * client holds more connections to one server port than one address has
   * ports (about 64,000). TCP or TLS (on the default engine through
   * node:tls), with a PROXY header too, which names each connection's own
   * source unless `proxySource` says otherwise.
   */
  sourceAddresses?: readonly string[];
  /**
   * Each progress report carries the latency histogram so far (what a load
   * agent sends its coordinator, so that a part cut short still counts).
   *
   * @default {false}
   */
  progressHistogram?: boolean;
}

/** Counters of a running `loadTest`. */
export interface LoadProgress {
  /** Milliseconds since the connections were opened. */
  readonly elapsedMs: number;
  /** Round trips completed and verified. */
  readonly roundTrips: number;
  /** Round trips per second since the last progress report. */
  readonly rate: number;
  /** Errors of every kind so far. */
  readonly errors: number;
  /**
   * With `progressHistogram`: the latencies so far, encoded as the report's
   * `latencyHistogram` (on the native engine, as of the last progress).
   */
  readonly latencyHistogram?: string;
}

/** Latency figures of a {@linkcode LoadReport}, in microseconds. */
export interface LatencySummary {
  /** Median. */
  readonly p50: number;
  /** 90th percentile. */
  readonly p90: number;
  /** 99th percentile. */
  readonly p99: number;
  /** 99.9th percentile. */
  readonly p999: number;
  /** Slowest round trip. */
  readonly max: number;
  /** Mean. */
  readonly mean: number;
}

/** What a `loadTest` did and measured. */
export interface LoadReport {
  /** The server, as `host:port` or a Unix socket's path. */
  readonly address: string;
  /** Connections asked for. */
  readonly connections: number;
  /** Connections that were opened. */
  readonly connected: number;
  /** Bytes in each message. */
  readonly messageBytes: number;
  /** Round trips completed, every byte of the echo verified. */
  readonly roundTrips: number;
  /** Milliseconds from the first connect to the last round trip. */
  readonly durationMs: number;
  /** Round trips per second over `durationMs`. */
  readonly roundTripsPerSecond: number;
  /** Megabytes (10^6 bytes) per second echoed, in each direction. */
  readonly megabytesPerSecond: number;
  /** Latency of the round trips, from an HDR histogram (3 digits). */
  readonly latencyUs: LatencySummary;
  /**
   * Connects made in the measured part (with `reconnectEvery`, more than
   * the connections).
   */
  readonly connects: number;
  /**
   * How long those connects took, from `connect()` to connected (after a
   * PROXY header, before TLS).
   */
  readonly connectLatencyUs: LatencySummary;
  /** Their histogram, encoded as `latencyHistogram` is. */
  readonly connectLatencyHistogram: string;
  /** With `tls`: TLS handshakes completed in the measured part. */
  readonly handshakes?: number;
  /** With `tls`: handshakes per second over `durationMs`. */
  readonly handshakesPerSecond?: number;
  /** With `tls`: how long handshakes took, from connected to done. */
  readonly handshakeLatencyUs?: LatencySummary;
  /** With `tls`: their histogram, encoded as `latencyHistogram` is. */
  readonly handshakeLatencyHistogram?: string;
  /**
   * With `tls` on the native engine: how many of the handshakes resumed
   * an earlier session of the same connection slot (a ticket).
   */
  readonly resumedHandshakes?: number;
  /**
   * That histogram (round-trip times in µs), compressed and in base64 as
   * HdrHistogram's tools exchange histograms: `decodeFromCompressedBase64`
   * of hdr-histogram-js (or HdrHistogram's Java and C libraries) reads it
   * back, for a percentile distribution, a plot, or several runs merged.
   */
  readonly latencyHistogram: string;
  /**
   * Over UDP, datagrams whose reply did not come within `timeout` (not an
   * error: UDP may lose datagrams); 0 over TCP.
   */
  readonly lost: number;
  /** Connections that could not be opened. */
  readonly connectErrors: number;
  /**
   * Connections the server closed or reset before echoing a byte: refused
   * by access rules or limits, or expecting a PROXY header or TLS.
   */
  readonly closedBeforeEcho: number;
  /** Echoes that differed from what was sent. */
  readonly mismatches: number;
  /** Other failures: resets and early closes mid-echo, timeouts. */
  readonly otherErrors: number;
  /**
   * Connections the server reset before their echo was whole, expected or
   * not (those not expected are errors too).
   */
  readonly resets: number;
  /** Connections the server closed before their echo was whole (as above). */
  readonly closes: number;
  /** Round trips that timed out (as above). */
  readonly timeouts: number;
  /** The first few error messages, for the user. */
  readonly errorMessages: readonly string[];
  /**
   * CPU time this process used in the measured part of the test (the
   * window of `durationMs`: no start-up or warm-up), in
   * milliseconds.
   */
  readonly cpuMs: number;
  /** How the native engine drove the sockets; absent with the default. */
  readonly nativeIo?: "io_uring" | "epoll";
  /** With `sourceAddresses`: connects started from each of them. */
  readonly sourceConnects?: Readonly<Record<string, number>>;
}
