// Private: the native engine's echo loop: one epoll set, one listening
// socket, the connections it accepted, all through libc (lib/native/ffi.ts).
// It runs in a Worker and blocks in epoll_wait(); the calling thread talks
// to it through shared memory and an eventfd (lib/native/native_server.ts).
// Not exported from mod.ts.
//
// The same contract as the default engine (lib/server/connection.ts): every
// byte echoed in order, a write the socket does not take whole kept and
// finished on EPOLLOUT while reading stops, the client's end of stream
// answered with ours once everything owed is sent, a reset or error closing
// only its connection, idle connections closed, and at shutdown a polite
// end: stop echoing, send what is owed, half-close, close once the client
// closes or after a second.

import { acceptBackoff, formatAddr } from "../_helpers.ts";
import { join } from "../_lines.ts";
import { ConnTable } from "./conn_table.ts";
import {
  ACCEPTED,
  ACTIVE,
  BYTES_IN,
  BYTES_OUT,
  countClosed,
  DATAGRAM_BYTES_OUT,
  DATAGRAMS_OUT,
  FAULT_DELAYED,
  setFaultCount,
} from "../core/counters.ts";
import {
  acceptFailed,
  acceptPaused,
  closed,
  dropped,
  faulted,
  type LogRecord,
  opened,
  proxyFailed,
  refused,
  rejected,
} from "../core/records.ts";
import {
  headerClient,
  HeaderReader,
  headerTimedOut,
  NOT_TRUSTED,
} from "../proxy/reader.ts";
import { accessGuard, type Guard } from "../rules/access.ts";
import { judge } from "../rules/door.ts";
import { type AddressList, addressList } from "../rules/cidr.ts";
import { Limiter, type LimitsConfig } from "../rules/limits.ts";
import { DatagramPolicy } from "../core/datagrams.ts";
import { BATCH, DatagramBatch } from "./datagram_batch.ts";
import {
  HOLD_EOF,
  HOLD_FAULT,
  HOLD_RATE,
  HOLD_RELAY,
  HOLD_UPSTREAM,
} from "./conn_table.ts";
import { FaultedConns } from "./faulted_conns.ts";
import { Upstreams } from "./upstreams.ts";
import { FaultSet } from "../faults/pipe.ts";
import {
  type Fault,
  isDatagram,
  isDownClose,
  isStream,
} from "../faults/spec.ts";
import { DatagramFaults, REORDER_HOLD_MS } from "../faults/datagrams.ts";
import { RelayMembers } from "./relay_members.ts";
import { type Greeting, TlsConns } from "./tls_conns.ts";
import type { TlsSession } from "../tls/session.ts";
import type { Delivery, RelayMessage } from "../relay/bridge.ts";
import { TokenBucket } from "../rules/bucket.ts";
import {
  EAGAIN,
  EINTR,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_CTL_MOD,
  EPOLL_EVENT_SIZE,
  EPOLLERR,
  epollEvents,
  epollFd,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  errnoName,
  errnoText,
  fromSockaddr,
  IPPROTO_TCP,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  type Native,
  setEpollEvent,
  SHUT_WR,
  SO_LINGER,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOCKADDR_MAX,
  SOL_SOCKET,
  TCP_NODELAY,
  unixSockaddr,
} from "./ffi.ts";
import { acceptExhausted, LINGER_MS } from "../core/lifecycle.ts";
import { type ServerConfig, tlsOf, type TlsSettings } from "../core/config.ts";
import { sessionFacts } from "../modes/info.ts";
import { type SessionMaker, SESSIONS } from "../modes/registry.ts";
import type { SessionFacts, Step } from "../modes/session.ts";
import type { Ending } from "../core/endings.ts";

/** What the calling thread asks, in `control[0]`. */
export const RUN = 0;
/** Stop accepting; serve the connections there are until they end. */
export const DRAIN = 1;
/** The grace period is over: end every connection politely. */
export const FINISH = 2;
/** Close everything now. */
export const STOP = 3;

/**
 * The read buffer, shared by every connection of the loop. A stream reads up
 * to this much a call: with 256 KiB rather than 64, a 512 MiB bulk echo went
 * from 1,180-1,290 to 1,355-1,520 MB/s here (5 interleaved pairs), at less
 * CPU a byte; ping-pong reads are small either way.
 */
const BUFFER_SIZE = 256 * 1024;
/** Events taken per epoll_wait(). */
const MAX_EVENTS = 256;
/** Free read-rest buffers kept for reuse (BUFFER_SIZE each). */
const MAX_SPARE = 16;
/** Reads per readable event before others get their turn. */
const READS_PER_EVENT = 16;
/**
 * How long a TLS connection is idle before its record buffers (about
 * 33 kB) are given back: with them an idle TLS connection took 35 kB here,
 * as Node's does; without, about a fifth. OpenSSL makes them again for
 * the next record, so a busy connection never pays.
 */
const TRIM_MS = 1000;

/** A log record, sent to the calling thread in batches. */
export type LoopRecord = LogRecord;

/** A connection at the door: its PROXY header is being read. */
interface AtDoor {
  reader: HeaderReader;
  /** When its time to send the header is up. */
  until: number;
  /** The socket's own peer (the proxy). */
  peer: Deno.Addr;
}

/** What one loop needs: its sockets, shared memory, and its settings. */
export interface LoopConfig {
  /** The listening TCP or Unix socket; -1 for UDP alone. */
  listenFd: number;
  /** The UDP socket, with `udp`; -1 without. */
  udpFd: number;
  /** Where UDP sources' rates are kept, shared by every loop. */
  udpTable: Pick<LimitsConfig, "table" | "seeds">;
  /** An eventfd the calling thread writes to after changing `control`. */
  wakeFd: number;
  control: Int32Array;
  /** This loop's counters (see lib/core/counters.ts). */
  counters: Float64Array;
  /** Connections open on every loop, for `maxConnections`. */
  open: Int32Array;
  /** The server's options, as serveEcho checked them. */
  server: ServerConfig;
  /** The listening address, as logs show it. */
  address: string;
  /**
   * How many operator lines the calling thread has posted to this loop's
   * worker: when it is ahead of what the loop took, `run()` returns so that
   * the worker can receive them (see {@linkcode EchoLoop.announce}).
   */
  mail: Int32Array;
  /** Which records are wanted. */
  logInfo: boolean;
  logDebug: boolean;
  /** Called with the records of one turn, when there are any. */
  post(records: LoopRecord[]): void;
  /** Sends a message to the relay on the calling thread. */
  send(message: RelayMessage, transfer?: Transferable[]): void;
}

/** The echo loop of one thread. */
export class EchoLoop {
  #native: Native;
  #config: LoopConfig;
  #epoll: number;
  #events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  #eventsView = new DataView(this.#events.buffer);
  #one = new Uint8Array(EPOLL_EVENT_SIZE);
  #oneView = new DataView(this.#one.buffer);
  #buffer = new Uint8Array(BUFFER_SIZE);
  #address = new Uint8Array(SOCKADDR_MAX);
  #addressLength = new Uint32Array(1);
  #wakeBuffer = new Uint8Array(8);
  #nodelay = new Int32Array([1]);
  #conns = new ConnTable();
  /** Read buffers' rests, sent and free again (see #oweRead). */
  #spare: Uint8Array[] = [];
  #records: LoopRecord[] = [];
  #listening = true;
  #acceptPaused = false;
  #acceptAt = 0;
  #backoff = 0;
  #nextIdleScan = Infinity;
  #command = RUN;
  #mailTaken = 0;
  #now = Date.now();
  /** The mode's sessions, in the line modes; echo mode has none. */
  #session: SessionMaker | undefined;
  /** The rules at the door, when any is configured. */
  #guard: Guard | undefined;
  #limiter: Limiter | undefined;
  #trusted: AddressList | undefined;
  /** Whether a new connection stops at the door (PROXY header, rules). */
  #door: boolean;
  #atDoor = new Map<number, AtDoor>();
  /** UDP: the batch of datagrams, and what they mean. */
  #batch: DatagramBatch | undefined;
  #datagramPolicy: DatagramPolicy | undefined;
  /**
   * While a `down` fault refuses connects: the listening socket is closed,
   * and this is its address and options, to listen again when it is lifted.
   */
  #refused:
    | { name: Uint8Array; family: number; reusePort: boolean }
    | undefined;
  /** UDP: datagram faults on the replies, if any, and held replies' peers. */
  #datagramFaults: DatagramFaults | undefined;
  #heldPeers = new Map<string, Uint8Array>();
  #nextHeld = Infinity;
  /** Broadcast and chat: the clients as the relay's members. */
  #relay: RelayMembers | undefined;
  /** The socket file's path, on a Unix socket. */
  #path: string | undefined;
  /** Clients on a Unix socket so far, which logs name by number. */
  #unixClients = 0;
  /** TLS through OpenSSL, on a TLS listener. */
  #tls: TlsConns | undefined;
  /** When idle TLS connections' buffers are next given back, and last. */
  #nextTrim = Infinity;
  #lastTrim = 0;
  /** The connections that faults hit (lib/native/faulted_conns.ts). */
  #faults: FaultedConns;
  /** Proxy mode: each client's upstream (lib/native/upstreams.ts). */
  #upstreams: Upstreams | undefined;
  /** Clients whose half-close waits for what they owe (proxy mode). */
  #shutAfterFlush = new Set<number>();
  /** The connection a reset fault ends now: no close_notify before it. */
  #resetting = -1;
  /** Connections a fault ended (the mode saw an end the client did not send). */
  #faultEnded = new Set<number>();

  constructor(native: Native, config: LoopConfig) {
    this.#native = native;
    this.#config = config;
    const server = config.server;
    this.#path = server.listen.transport === "unix"
      ? server.listen.path
      : undefined;
    this.#session = SESSIONS[server.mode];
    if (server.mode === "broadcast" || server.mode === "chat") {
      const conns = this.#conns;
      this.#relay = new RelayMembers({
        post: (message, transfer) => config.send(message, transfer),
        queue: (fd, lines) => this.#queue(fd, lines, true),
        hold: (fd) => this.#hold(fd, HOLD_RELAY),
        unhold: (fd) => this.#unhold(fd, HOLD_RELAY),
        finish: (fd, why) => this.#finish(fd, why),
        serving: (fd) => conns.has(fd) && !conns.finishing.has(fd),
        owing: () => conns.pending.size > 0,
      }, server.maxLineBytes);
    }
    this.#faults = new FaultedConns(faultSet(server.faults), {
      end: (fd) => this.#end(fd, "ended by a fault"),
      consume: (fd, bytes) => void this.#consume(fd, bytes, bytes.length),
      eof: (fd, byFault) => {
        if (!this.#conns.has(fd)) return;
        if (byFault) this.#faultEnded.add(fd);
        this.#eof(fd);
      },
      write: (fd, bytes) => this.#writeOwed(fd, bytes),
      owes: (fd) => this.#conns.owing[fd] === 1,
      closeWrite: (fd) => this.#finish(fd, "ended by a fault"),
      reset: (fd) => this.#reset(fd),
      hold: (fd) => {
        this.#hold(fd, HOLD_FAULT);
        this.#upstreams?.held(fd, true);
      },
      unhold: (fd) => {
        this.#unhold(fd, HOLD_FAULT);
        this.#upstreams?.held(fd, false);
      },
      delayed: (bytes) => this.#config.counters[FAULT_DELAYED] += bytes,
      acted: (fd, action) => {
        const record = faulted(
          this.#config.counters,
          this.#conns.peers.get(fd) ?? "",
          action,
        );
        if (this.#config.logDebug) this.#record(record);
      },
    }, server.liveFaults);
    if (server.upstream !== undefined) {
      this.#upstreams = new Upstreams(
        native,
        server.upstream,
        {
          ctl: (op, fd, events) => this.#ctl(op, fd, events),
          send: (c, bytes, length) => this.#send(c, bytes, length),
          oweRead: (c, bytes, from, to) => this.#oweRead(c, bytes, from, to),
          closeWrite: (c) =>
            this.#faults.afterSends(c, this.#now, () => this.#shutClient(c)),
          hold: (c) => this.#hold(c, HOLD_UPSTREAM),
          unhold: (c) => this.#unhold(c, HOLD_UPSTREAM),
          end: (c, reason) => this.#end(c, reason),
          reset: (c, reason) => this.#reset(c, reason),
          record: (record) => this.#record(record),
        },
        config.counters,
        this.#buffer,
      );
    }
    this.#guard = accessGuard(server.access);
    this.#limiter = server.limits && new Limiter(server.limits);
    this.#trusted = server.proxy?.trusted && addressList(server.proxy.trusted);
    this.#door = server.proxy !== undefined || this.#guard !== undefined ||
      this.#limiter !== undefined;
    const tls = tlsOf(server.listen);
    if (tls !== undefined) {
      this.#tls = new TlsConns(native, tls, {
        ctl: (op, fd, events) => this.#ctl(op, fd, events),
        record: (record) => this.#record(record),
        handshaken: (fd, greeting, plain, length) =>
          this.#handshaken(fd, greeting, plain, length),
        turnedAway: ({ limited }) => {
          if (limited !== undefined) this.#limiter!.release(limited);
        },
        counters: config.counters,
      });
      this.#nextTrim = this.#now + TRIM_MS;
    }
    const epoll = native.libc.epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) throw new Error(`epoll_create1: ${this.#error()}`);
    this.#epoll = epoll;
    this.#ctl(EPOLL_CTL_ADD, config.wakeFd, EPOLLIN);
    if (config.listenFd >= 0) {
      this.#ctl(EPOLL_CTL_ADD, config.listenFd, EPOLLIN);
      // Down, refusing: not listening until the fault is lifted.
      this.#refuse(
        config.server.faults.some((f) =>
          f.kind === "down" && f.how === "refuse"
        ),
      );
    }
    if (config.udpFd >= 0) {
      this.#ctl(EPOLL_CTL_ADD, config.udpFd, EPOLLIN);
      this.#batch = new DatagramBatch(native);
      if (config.server.faults.some(isDatagram)) {
        this.#datagramFaults = new DatagramFaults(config.server.faults);
      }
      this.#datagramPolicy = new DatagramPolicy(
        config.server,
        this.#udpAddress(),
        config.counters,
        config.udpTable,
        (record) => this.#records.push(record),
      );
    }
    if (config.server.idleTimeout > 0) {
      this.#nextIdleScan = this.#now + this.#idleScanMs();
    }
  }

  /**
   * Serves until told to stop and every connection has ended (`"done"`), or
   * until operator lines wait for the worker to receive them (`"mail"`:
   * call {@linkcode EchoLoop.announce} with each, then `run()` again).
   */
  run(): "mail" | "done" {
    const { libc } = this.#native;
    const conns = this.#conns;
    const { wakeFd, udpFd } = this.#config;
    try {
      while (this.#listening || conns.size > 0 || this.#faults.holding) {
        this.#flushRecords();
        if (this.waiting) return "mail";
        const n = libc.epoll_wait(
          this.#epoll,
          this.#events,
          MAX_EVENTS,
          this.#timeout(),
        );
        this.#now = Date.now();
        if (n < 0) {
          const errno = this.#native.errno();
          if (errno === EINTR) continue;
          throw new Error(`epoll_wait: ${errnoText(errno)}`);
        }
        for (let i = 0; i < n; i++) {
          const fd = epollFd(this.#eventsView, i);
          if (fd === wakeFd) this.#woken();
          else if (fd === this.#config.listenFd) this.#accept();
          else if (fd === udpFd) this.#datagrams();
          else if (conns.has(fd)) {
            this.#ready(fd, epollEvents(this.#eventsView, i));
          } else if (this.#upstreams?.has(fd)) {
            this.#upstreams.ready(fd, epollEvents(this.#eventsView, i));
          } else if (this.#atDoor.has(fd)) this.#doorReadable(fd);
          else if (this.#tls?.greeting(fd)) this.#tls.ready(fd);
        }
        if (this.#tls !== undefined && this.#tls.stalled.size > 0) {
          this.#resumeTls();
        }
        this.#timers();
      }
    } catch (error) {
      this.#close();
      throw error;
    }
    this.#close();
    return "done";
  }

  /** What the relay delivers to this loop's clients (see RelayMembers). */
  deliver(items: Delivery[], acks: [number, boolean][]): void {
    this.#mailTaken++;
    this.#relay?.deliver(items, acks, Date.now());
  }

  /**
   * Ends every connection politely for `reason`, after what was posted
   * before (the relay's shutdown notice).
   */
  finishAll(reason: Ending): void {
    this.#mailTaken++;
    for (const fd of this.#conns.all()) this.#finish(fd, reason);
  }

  /**
   * New TLS handshakes use `listen`'s certificates from now on.
   *
   * @throws {TypeError} One is not usable (the old ones stay).
   */
  reloadTls(listen: TlsSettings): void {
    this.#mailTaken++;
    this.#tls?.reload(listen);
  }

  /**
   * Connects to the upstream go to `hostname` (an IP address) from now on:
   * what its name gives now. Open links stay where they are.
   */
  setUpstreamAddress(hostname: string): void {
    this.#mailTaken++;
    this.#upstreams?.retarget(hostname);
  }

  /** Connections accepted from now on get `faults`; open ones keep theirs. */
  setFaults(faults: readonly Fault[]): void {
    this.#mailTaken++;
    this.#refuse(faults.some((f) => f.kind === "down" && f.how === "refuse"));
    if (this.#batch !== undefined) {
      this.#datagramFaults = faults.some(isDatagram)
        ? new DatagramFaults(faults, Math.random, this.#datagramFaults?.counts)
        : undefined;
    }
    this.#faults.set(faultSet(faults), Date.now());
  }

  /** Whether operator lines were posted that the loop has not taken. */
  get waiting(): boolean {
    return Atomics.load(this.#config.mail, 0) !== this.#mailTaken;
  }

  /**
   * Sends an operator line to every connection, after what it is owed (a
   * connection being ended gets nothing more).
   */
  announce(line: Uint8Array): void {
    this.#mailTaken++;
    const conns = this.#conns;
    for (const fd of conns.all()) {
      if (!conns.finishing.has(fd)) this.#queue(fd, [line], false);
    }
  }

  /**
   * Sends `lines` to `fd` after what it is owed, in one write; what the
   * socket does not take waits (a copy). With `bounded`, a connection
   * whose queue would go past the server's send queue bounds is dropped
   * instead, as the default engine drops a client that stops reading.
   */
  #queue(fd: number, lines: Uint8Array[], bounded: boolean): void {
    const conns = this.#conns;
    const pending = conns.pending.get(fd);
    if (pending === undefined) {
      const bytes = lines.length === 1 ? lines[0] : join(lines, sum(lines));
      const w = this.#send(fd, bytes, bytes.length);
      if (w >= 0 && w < bytes.length) this.#owe(fd, bytes.slice(w));
      return;
    }
    const { channelCapacity, channelBytes } = this.#config.server;
    const bytes = sum(lines);
    if (
      bounded && (pending.chunks.length + lines.length > channelCapacity ||
        pending.bytes + bytes > channelBytes)
    ) {
      return this.#drop(fd);
    }
    pending.chunks.push(...lines);
    pending.bytes += bytes;
  }

  /** Drops `fd`, whose send queue is full. */
  #drop(fd: number): void {
    const pending = this.#conns.pending.get(fd)!;
    this.#record(
      dropped(
        this.#config.counters,
        this.#conns.peers.get(fd) ?? "",
        pending.chunks.length,
        pending.bytes,
      ),
    );
    this.#end(fd, "send queue full");
  }

  /** Ends what is left: the last thing a loop does. */
  #close(): void {
    for (const fd of this.#conns.all()) this.#end(fd, "server stopped");
    this.#faults.closeAll();
    this.#upstreams?.closeAll();
    this.#closeListener();
    this.#tls?.close();
    this.#native.libc.close(this.#epoll);
    this.#flushRecords();
  }

  #error(): string {
    return errnoText(this.#native.errno());
  }

  #ctl(op: number, fd: number, events: number): void {
    setEpollEvent(this.#oneView, 0, events, fd);
    this.#native.libc.epoll_ctl(this.#epoll, op, fd, this.#one);
  }

  /** Keeps `record` for the next batch to the calling thread. */
  #record(record: LogRecord): void {
    this.#records.push(record);
  }

  #flushRecords(): void {
    if (this.#records.length === 0) return;
    this.#config.post(this.#records);
    this.#records = [];
  }

  /** How long epoll_wait() may block: until the next timer, if any. */
  #timeout(): number {
    let at = this.#nextIdleScan;
    if (this.#acceptPaused) at = Math.min(at, this.#acceptAt);
    for (const { until } of this.#conns.finishing.values()) {
      at = Math.min(at, until);
    }
    for (const { until } of this.#atDoor.values()) at = Math.min(at, until);
    for (const until of this.#conns.paused.values()) at = Math.min(at, until);
    if (this.#relay !== undefined) at = Math.min(at, this.#relay.nextTimer);
    if (this.#faults.size > 0 || this.#faults.holding) {
      at = Math.min(at, this.#faults.nextTimer);
    }
    if (this.#upstreams !== undefined) {
      at = Math.min(at, this.#upstreams.nextTimer);
    }
    at = Math.min(at, this.#nextHeld);
    if (this.#tls !== undefined) {
      for (const fd of this.#tls.stalled) if (this.#readsNow(fd)) return 0;
      at = Math.min(at, this.#tls.nextTimer);
      // Only while there are connections whose buffers may be given back.
      if (this.#conns.size > 0) at = Math.min(at, this.#nextTrim);
    }
    if (at === Infinity) return -1;
    return Math.max(0, Math.ceil(at - Date.now()));
  }

  #idleScanMs(): number {
    return Math.min(1000, Math.max(10, this.#config.server.idleTimeout / 8));
  }

  #timers(): void {
    const now = this.#now;
    if (
      this.#acceptPaused && now >= this.#acceptAt && this.#listening &&
      this.#refused === undefined
    ) {
      this.#acceptPaused = false;
      this.#ctl(EPOLL_CTL_ADD, this.#config.listenFd, EPOLLIN);
    }
    if (this.#atDoor.size > 0) {
      for (const [fd, { until }] of [...this.#atDoor]) {
        if (now >= until) {
          this.#turnAway(
            fd,
            headerTimedOut(this.#config.server.proxy!.timeout),
          );
        }
      }
    }
    this.#relay?.timers(now);
    this.#tls?.timers(now);
    if (this.#faults.size > 0 || this.#faults.holding) this.#faults.timers(now);
    this.#upstreams?.timers(now);
    if (now >= this.#nextHeld) this.#releaseHeld(now);
    if (now >= this.#nextTrim) this.#trimIdle(now);
    const conns = this.#conns;
    if (conns.paused.size > 0) {
      for (const [fd, until] of [...conns.paused]) {
        if (now < until) continue;
        conns.paused.delete(fd);
        this.#unhold(fd, HOLD_RATE);
      }
    }
    if (conns.finishing.size > 0) {
      for (const [fd, { reason, until }] of [...conns.finishing]) {
        if (now >= until) this.#end(fd, reason);
      }
    }
    if (now < this.#nextIdleScan) return;
    // Every connection, a few times per idle timeout (not per turn).
    this.#nextIdleScan = now + this.#idleScanMs();
    const { idleTimeout } = this.#config.server;
    for (const fd of conns.all()) {
      if (now - conns.lastActive[fd] >= idleTimeout) {
        this.#end(fd, "idle timeout");
      }
    }
  }

  /**
   * Gives back the TLS record buffers of connections that went idle
   * (nothing in or out for TRIM_MS) since the last time: each once.
   */
  #trimIdle(now: number): void {
    const conns = this.#conns;
    const since = this.#lastTrim - TRIM_MS;
    this.#lastTrim = now;
    this.#nextTrim = now + TRIM_MS;
    let trimmed = 0;
    for (const fd of conns.all()) {
      const last = conns.lastActive[fd];
      if (now - last >= TRIM_MS && last >= since && conns.owing[fd] === 0) {
        this.#tls!.trim(fd);
        trimmed++;
      }
    }
    // The buffers are small heap blocks between others: glibc keeps their
    // pages unless told to give them back.
    if (trimmed > 0) this.#native.libc.malloc_trim(0);
  }

  /** The calling thread changed `control`. */
  #woken(): void {
    this.#native.libc.read(
      this.#config.wakeFd,
      this.#wakeBuffer,
      this.#wakeBuffer.length,
    );
    const command = Atomics.load(this.#config.control, 0);
    if (command === this.#command) return;
    this.#command = command;
    if (command >= DRAIN) this.#closeListener();
    if (command === FINISH) {
      for (const fd of this.#conns.all()) this.#finish(fd, "grace period over");
    }
    if (command === STOP) {
      for (const fd of this.#conns.all()) this.#end(fd, "server stopped");
      this.#faults.closeAll();
    }
  }

  #closeListener(): void {
    if (!this.#listening) return;
    this.#listening = false;
    const { listenFd, udpFd } = this.#config;
    if (listenFd >= 0) this.#native.libc.close(listenFd);
    // Datagrams have nothing in flight to wait for.
    if (udpFd >= 0) this.#native.libc.close(udpFd);
    // Not served yet: closed with the listener, as the streams engine does.
    for (const fd of this.#atDoor.keys()) this.#native.libc.close(fd);
    this.#atDoor.clear();
    this.#tls?.closeGreetings();
    if (this.#config.logDebug) {
      this.#record({
        level: "debug",
        message: "Stopped accepting on {address}",
        properties: { address: this.#config.address },
      });
    }
  }

  #accept(): void {
    const { libc } = this.#native;
    while (this.#listening) {
      this.#addressLength[0] = this.#address.length;
      const fd = libc.accept4(
        this.#config.listenFd,
        this.#address,
        this.#addressLength,
        SOCK_NONBLOCK | SOCK_CLOEXEC,
      );
      if (fd < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        if (acceptExhausted(errnoName(errno))) {
          return this.#pauseAccepting(errno);
        }
        // This one connection is gone; the listener is fine.
        const record = acceptFailed(this.#config.counters, errnoText(errno));
        if (this.#config.logDebug) this.#records.push(record);
        continue;
      }
      this.#backoff = 0;
      if (this.#door) this.#arrived(fd);
      else this.#pass(fd, undefined, undefined, undefined);
    }
  }

  /** The UDP socket's own address. */
  #udpAddress(): Deno.NetAddr {
    const bytes = new Uint8Array(SOCKADDR_MAX);
    const length = new Uint32Array([bytes.length]);
    this.#native.libc.getsockname(this.#config.udpFd, bytes, length);
    return { transport: "udp", ...fromSockaddr(this.#native, bytes) };
  }

  /**
   * Takes the datagrams waiting, a batch at a time, and sends back each
   * one's reply (the datagram itself in echo mode) in one call.
   */
  #datagrams(): void {
    const batch = this.#batch!;
    const policy = this.#datagramPolicy!;
    const fd = this.#config.udpFd;
    const logDebug = this.#config.logDebug;
    for (let round = 0; round < READS_PER_EVENT; round++) {
      const n = batch.receive(fd);
      if (n < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) return;
        // An ICMP error for an earlier reply, say: that peer's, not ours.
        if (logDebug) {
          this.#record({
            level: "debug",
            message: "UDP receive failed: {error}",
            properties: { error: errnoText(errno) },
          });
        }
        continue;
      }
      const faults = this.#datagramFaults;
      const needsPeer = policy.needsPeer || logDebug || faults !== undefined;
      if (!needsPeer) {
        // Echo mode without rules: every datagram goes back as it came.
        policy.receivedAll(n, batch.echoAll(n));
        this.#sendDatagrams(0, n);
        if (n < BATCH) return;
        continue;
      }
      let from = 0;
      for (let i = 0; i < n; i++) {
        const data = batch.data(i);
        const peer = needsPeer ? batch.peer(i) : undefined;
        const reply = policy.receive(data, peer, this.#now);
        if (reply === undefined || faults !== undefined) {
          this.#sendDatagrams(from, i);
          from = i + 1;
          if (reply !== undefined) this.#faultedReply(i, reply, peer!);
          continue;
        }
        batch.reply(i, reply);
        if (logDebug) {
          this.#record({
            level: "debug",
            message: "Echoed {bytes} UDP bytes to {peer}",
            properties: { bytes: data.length, peer: formatAddr(peer!) },
          });
        }
      }
      this.#sendDatagrams(from, n);
      if (n < BATCH) return;
    }
  }

  /**
   * Sends the replies datagram faults let go for datagram `i`'s `reply`
   * to `peer`, at once; keeps the peers of those held back (reorder).
   */
  #faultedReply(i: number, reply: Uint8Array, peer: Deno.NetAddr): void {
    const faults = this.#datagramFaults!;
    const key = formatAddr(peer);
    const name = this.#batch!.peerName(i);
    const out = faults.reply(peer.hostname, reply, this.#now, key);
    const { counters } = this.#config;
    const { dropped, duplicated, corrupted, reordered } = faults.counts;
    setFaultCount(counters, "drop", dropped);
    setFaultCount(counters, "duplicate", duplicated);
    setFaultCount(counters, "corrupt", corrupted);
    setFaultCount(counters, "reorder", reordered);
    for (const bytes of out) this.#sendTo(bytes, name);
    if (faults.holds(key)) {
      this.#heldPeers.set(key, name);
      this.#nextHeld = Math.min(this.#nextHeld, this.#now + REORDER_HOLD_MS);
    }
  }

  /** Sends held replies whose hold is over. */
  #releaseHeld(now: number): void {
    const faults = this.#datagramFaults;
    if (faults === undefined) {
      this.#heldPeers.clear();
      this.#nextHeld = Infinity;
      return;
    }
    const { out, next } = faults.due(now);
    for (const [key, bytes] of out) {
      const name = this.#heldPeers.get(key);
      if (name !== undefined) this.#sendTo(bytes, name);
    }
    for (const key of [...this.#heldPeers.keys()]) {
      if (!faults.holds(key)) this.#heldPeers.delete(key);
    }
    this.#nextHeld = next;
  }

  /**
   * Stops listening (`on`: connects are refused, as by a host with nothing
   * on the port), or listens again on the same address.
   */
  #refuse(on: boolean): void {
    const { libc } = this.#native;
    const listenFd = this.#config.listenFd;
    if (!this.#listening || listenFd < 0 && this.#refused === undefined) return;
    if (on && this.#refused === undefined) {
      const name = new Uint8Array(SOCKADDR_MAX);
      const length = new Uint32Array([name.length]);
      libc.getsockname(listenFd, name, length);
      const option = new Int32Array(1);
      const optionLength = new Uint32Array([4]);
      libc.getsockopt(listenFd, SOL_SOCKET, SO_REUSEPORT, option, optionLength);
      this.#refused = {
        name: name.slice(0, length[0]),
        family: new DataView(name.buffer).getUint16(0, true),
        reusePort: option[0] !== 0,
      };
      if (!this.#acceptPaused) this.#ctl(EPOLL_CTL_DEL, listenFd, 0);
      libc.close(listenFd);
      this.#config.listenFd = -1;
      this.#acceptPaused = false;
      return;
    }
    if (on || this.#refused === undefined) return;
    const { family, reusePort } = this.#refused;
    // A Unix socket's whole path (getsockname's buffer here is an IP's).
    const name = this.#path === undefined
      ? this.#refused.name
      : unixSockaddr(this.#path);
    if (this.#path !== undefined) {
      // A Unix socket's file stayed (connects to it were refused): bound
      // again in its place.
      try {
        Deno.removeSync(this.#path);
      } catch {
        // Gone already: bound anew.
      }
    }
    const fd = libc.socket(
      family,
      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
      0,
    );
    const one = new Int32Array([1]);
    libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4);
    if (reusePort) libc.setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, one, 4);
    if (
      fd < 0 || libc.bind(fd, name, name.length) < 0 ||
      libc.listen(fd, BACKLOG) < 0
    ) {
      const error = errnoText(this.#native.errno());
      if (fd >= 0) libc.close(fd);
      // Another socket took the port meanwhile: said, and tried again at
      // the next change of the faults.
      this.#record({
        level: "error",
        message: "Cannot listen again on {address}: {error}",
        properties: { address: this.#config.address, error },
      });
      return;
    }
    this.#refused = undefined;
    this.#config.listenFd = fd;
    this.#ctl(EPOLL_CTL_ADD, fd, EPOLLIN);
  }

  /** Sends one datagram to the `sockaddr` `name`, counted if it went. */
  #sendTo(bytes: Uint8Array, name: Uint8Array): void {
    const w = this.#native.libc.sendto(
      this.#config.udpFd,
      bytes,
      bytes.length,
      MSG_DONTWAIT,
      name,
      name.length,
    );
    if (w < 0) return; // A full buffer or an unreachable peer: dropped.
    this.#config.counters[DATAGRAMS_OUT]++;
    this.#config.counters[DATAGRAM_BYTES_OUT] += bytes.length;
  }

  /** Sends the replies of datagrams `from` to `to` of the batch. */
  #sendDatagrams(from: number, to: number): void {
    if (to <= from) return;
    const batch = this.#batch!;
    const counters = this.#config.counters;
    // Counted first (and taken back for what did not go): a client that
    // has its reply sees it counted.
    const total = batch.bytes(from, to);
    counters[DATAGRAMS_OUT] += to - from;
    counters[DATAGRAM_BYTES_OUT] += total;
    const [sent, bytes] = batch.send(this.#config.udpFd, from, to);
    counters[DATAGRAMS_OUT] -= to - from - sent;
    counters[DATAGRAM_BYTES_OUT] -= total - bytes;
  }

  /** The peer in `#address`, as accept() gave it. */
  #peer(): Deno.Addr {
    // A Unix socket's clients have no address of their own.
    if (this.#path !== undefined) return { transport: "unix", path: "" };
    return { transport: "tcp", ...fromSockaddr(this.#native, this.#address) };
  }

  /** How logs name `client`: on a Unix socket, by the path and a number. */
  #name(client: Deno.Addr): string {
    return client.transport === "unix"
      ? `${this.#path}#${++this.#unixClients}`
      : formatAddr(client);
  }

  /**
   * A connection stops at the door: a trusted proxy's header is read first
   * (until it is whole, within the timeout); without PROXY, the rules judge
   * it at once.
   */
  #arrived(fd: number): void {
    const peer = this.#peer();
    const proxy = this.#config.server.proxy;
    if (proxy === undefined) return this.#judge(fd, peer, undefined);
    // A Unix socket's peer is on this host: trusted like a local proxy.
    if (
      this.#trusted !== undefined && "hostname" in peer &&
      this.#trusted.match(peer.hostname) === undefined
    ) {
      // Counted first: a client that sees the close sees it counted.
      this.#record(
        proxyFailed(this.#config.counters, formatAddr(peer), NOT_TRUSTED),
      );
      return void this.#native.libc.close(fd);
    }
    this.#atDoor.set(fd, {
      reader: new HeaderReader(),
      until: this.#now + proxy.timeout,
      peer,
    });
    this.#ctl(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP);
  }

  /** Reads what a connection at the door sent of its PROXY header. */
  #doorReadable(fd: number): void {
    const { libc } = this.#native;
    const door = this.#atDoor.get(fd)!;
    while (true) {
      const space = door.reader.space();
      const r = libc.read(fd, space, space.length);
      if (r < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        return this.#turnAway(
          fd,
          `connection failed before its header ended: ${errnoText(errno)}`,
        );
      }
      if (r === 0) return this.#turnAway(fd, door.reader.ended());
      const step = door.reader.filled(r);
      if (step.state === "invalid") return this.#turnAway(fd, step.reason);
      if (step.state === "done") {
        this.#atDoor.delete(fd);
        return this.#judge(fd, headerClient(step.header, door.peer), step.rest);
      }
    }
  }

  /** Closes a connection whose PROXY header failed, and says why. */
  #turnAway(fd: number, reason: string): void {
    const door = this.#atDoor.get(fd)!;
    this.#atDoor.delete(fd);
    this.#record(
      proxyFailed(this.#config.counters, formatAddr(door.peer), reason),
    );
    this.#native.libc.close(fd);
  }

  /**
   * The access rules and the per-address limits judge `client` (the
   * header's, or the socket's peer); `rest` is what came after a header.
   */
  #judge(fd: number, client: Deno.Addr, rest: Uint8Array | undefined) {
    const verdict = judge(this.#guard, this.#limiter, client);
    if (verdict.refusal !== undefined) {
      const record = refused(
        this.#config.counters,
        formatAddr(client),
        verdict.refusal,
      );
      if (this.#config.logInfo) this.#records.push(record);
      return void this.#native.libc.close(fd);
    }
    this.#pass(fd, client, verdict.limited, rest);
  }

  /**
   * A connection past the door: on TLS, its handshake comes first;
   * otherwise it is admitted. `rest` is defined when the door read it
   * (and so registered it).
   */
  #pass(
    fd: number,
    client: Deno.Addr | undefined,
    limited: string | undefined,
    rest: Uint8Array | undefined,
  ): void {
    const registered = rest !== undefined;
    if (this.#tls === undefined) {
      this.#enter(fd, client, limited, rest, registered);
      return;
    }
    this.#tls.greet(
      fd,
      client ?? this.#peer(),
      limited,
      rest,
      registered,
      this.#now,
    );
  }

  /** A TLS connection finished its handshake: admitted, then served. */
  #handshaken(
    fd: number,
    greeting: Greeting,
    plain: Uint8Array,
    length: number,
  ): void {
    const { client, limited } = greeting;
    // What came with the handshake's end is the stream's first bytes.
    const rest = plain.subarray(0, length);
    if (!this.#enter(fd, client, limited, rest, true)) {
      return this.#tls!.forget(fd);
    }
    if (this.#conns.has(fd) && this.#tls!.owes(fd)) this.#oweWire(fd);
  }

  /**
   * A connection past the door is admitted under `maxConnections` and
   * served: `client` is who it is for (the socket's peer when undefined),
   * `limited` the address whose place it holds under the limits, and
   * `rest` the first bytes of its stream, read with its PROXY header;
   * `registered` whether the epoll set has it already. Returns whether it
   * was admitted.
   */
  #enter(
    fd: number,
    client: Deno.Addr | undefined,
    limited: string | undefined,
    rest: Uint8Array | undefined,
    registered: boolean,
  ): boolean {
    const { libc } = this.#native;
    const { counters, open, logInfo } = this.#config;
    const { maxConnections } = this.#config.server;
    let faults = "";
    if (this.#faults.on) {
      const who = client ?? this.#peer();
      faults = this.#faults.open(
        fd,
        "hostname" in who ? who.hostname : undefined,
        this.#now,
      );
      if (faults === "down") {
        // The server is "down" for this client: closed as soon as accepted.
        const record = faulted(counters, formatAddr(who), "down");
        if (this.#config.logDebug) this.#record(record);
        if (limited !== undefined) this.#limiter!.release(limited);
        libc.close(fd);
        return false;
      }
    }
    counters[ACCEPTED]++;
    if (Atomics.add(open, 0, 1) >= maxConnections) {
      Atomics.sub(open, 0, 1);
      if (limited !== undefined) this.#limiter!.release(limited);
      this.#record(
        rejected(
          counters,
          this.#name(client ?? this.#peer()),
          Atomics.load(open, 0),
          maxConnections,
        ),
      );
      this.#faults.forget(fd);
      this.#tls?.goodbye(fd);
      libc.close(fd);
      return false;
    }
    if (this.#path === undefined) {
      libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, this.#nodelay, 4);
    }
    const relay = this.#relay;
    const peer = logInfo || relay !== undefined
      ? this.#name(client ?? this.#peer())
      : "";
    const conns = this.#conns;
    conns.add(fd, peer, this.#now);
    if (limited !== undefined) conns.limited.set(fd, limited);
    const rate = this.#config.server.maxBytesPerSecond;
    if (rate !== Infinity) {
      conns.buckets.set(fd, new TokenBucket(rate, this.#now));
    }
    if (this.#session !== undefined) {
      conns.sessions.set(
        fd,
        this.#session(
          this.#config.server,
          () => this.#facts(fd, client ?? this.#peer()),
        ),
      );
    }
    counters[ACTIVE]++;
    if (faults !== "") {
      const record = faulted(counters, peer, "connection", faults);
      if (this.#config.logDebug) this.#record(record);
    }
    this.#ctl(
      registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
      fd,
      EPOLLIN | EPOLLRDHUP,
    );
    // Joined before it is logged, as on the default engine.
    relay?.join(
      fd,
      peer,
      this.#config.server.certNames ? this.#tls?.certName(fd) : undefined,
    );
    if (logInfo) this.#record(opened(peer, conns.size, this.#tls?.opened(fd)));
    if (this.#upstreams !== undefined) {
      const proxied = this.#config.server.upstream!.sendProxy !== undefined;
      this.#upstreams.open(
        fd,
        proxied ? client ?? this.#peer() : undefined,
        proxied ? this.#local(fd) : undefined,
        this.#now,
      );
      if (!conns.has(fd)) return true;
    }
    if (rest !== undefined && rest.length > 0) {
      this.#consume(fd, rest, rest.length);
    }
    return true;
  }

  #pauseAccepting(errno: number): void {
    this.#backoff = acceptBackoff(this.#backoff);
    this.#acceptPaused = true;
    this.#acceptAt = this.#now + this.#backoff;
    this.#ctl(EPOLL_CTL_DEL, this.#config.listenFd, 0);
    this.#record(acceptPaused(this.#backoff, errnoText(errno)));
  }

  #ready(fd: number, events: number): void {
    const conns = this.#conns;
    if (conns.owing[fd] === 1) {
      if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) this.#flush(fd);
      return;
    }
    if (conns.held.size > 0 && conns.held.has(fd)) {
      // Not read for now: a hang-up would be reported again and again.
      if (events & (EPOLLHUP | EPOLLERR)) {
        this.#ctl(EPOLL_CTL_DEL, fd, 0);
        conns.detached.add(fd);
      }
      return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      this.#readable(fd);
    }
  }

  /**
   * Registers what `fd` waits for: writing while it owes bytes, else
   * reading unless it is held, else nothing (a hang-up only).
   */
  #interest(fd: number): void {
    const conns = this.#conns;
    const events = conns.owing[fd] === 1
      ? EPOLLOUT
      : conns.held.has(fd)
      ? 0
      : EPOLLIN | EPOLLRDHUP;
    if (conns.detached.has(fd)) {
      if (events === 0) return;
      conns.detached.delete(fd);
      return this.#ctl(EPOLL_CTL_ADD, fd, events);
    }
    this.#ctl(EPOLL_CTL_MOD, fd, events);
  }

  /** Stops reading `fd` for `why` (a HOLD_* bit); writes go on. */
  #hold(fd: number, why: number): void {
    const conns = this.#conns;
    conns.held.set(fd, (conns.held.get(fd) ?? 0) | why);
    this.#interest(fd);
  }

  /** Reads `fd` again, unless it is held for another reason too. */
  #unhold(fd: number, why: number): void {
    const conns = this.#conns;
    const held = conns.held.get(fd);
    if (held === undefined || !conns.has(fd)) return;
    if ((held & ~why) === 0) conns.held.delete(fd);
    else conns.held.set(fd, held & ~why);
    this.#interest(fd);
  }

  #readable(fd: number): void {
    const { libc } = this.#native;
    const buffer = this.#buffer;
    const conns = this.#conns;
    const tls = this.#tls === undefined ? undefined : this.#tls.session(fd);
    for (let i = 0; i < READS_PER_EVENT; i++) {
      let length = buffer.length;
      const bucket = conns.buckets.size > 0 ? conns.buckets.get(fd) : undefined;
      if (bucket !== undefined) {
        const allowed = bucket.available(this.#now);
        if (allowed < 1) return this.#pause(fd, bucket);
        length = Math.min(length, allowed);
      }
      const r = libc.read(fd, buffer, length);
      if (r < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) return;
        if (errno === EINTR) continue;
        return this.#end(fd, reason(errno));
      }
      if (r === 0) {
        if (this.#faultedEof(fd)) return;
        return this.#eof(fd);
      }
      bucket?.take(r);
      if (
        tls === undefined && this.#faults.size > 0 && this.#faults.has(fd) &&
        !this.#faults.passes(fd, "receive")
      ) {
        this.#faults.received(fd, buffer.slice(0, r), this.#now);
        if (r < length || !conns.has(fd) || conns.held.has(fd)) return;
        continue;
      }
      if (tls !== undefined) {
        tls.put(buffer, r);
        if (!this.#decrypt(fd, tls)) return;
      } else if (!this.#consume(fd, buffer, r)) return;
      if (r < length) return;
    }
  }

  /**
   * The client's end of stream, on a connection whose faults pass it on in
   * their time: true when they take it (nothing more is read).
   */
  #faultedEof(fd: number): boolean {
    const faults = this.#faults;
    if (
      faults.size === 0 || !faults.has(fd) ||
      (faults.passes(fd, "receive") && faults.passes(fd, "send"))
    ) {
      return false;
    }
    this.#hold(fd, HOLD_EOF);
    faults.ended(fd, this.#now);
    return true;
  }

  /**
   * The client's end of stream (on TLS, its close_notify or its socket's
   * end): nothing is owed (we read only then), so ours follows at once,
   * after what a session still says.
   */
  #eof(fd: number): void {
    const conns = this.#conns;
    const finishing = conns.finishing.get(fd);
    if (finishing === undefined && this.#relay !== undefined) {
      return this.#relay.end(fd);
    }
    if (finishing === undefined && this.#upstreams !== undefined) {
      // Passed on to the upstream; nothing more comes from the client.
      this.#hold(fd, HOLD_EOF);
      return this.#upstreams.clientEnded(fd);
    }
    const session = conns.sessions.get(fd);
    if (finishing === undefined && session !== undefined) {
      return void this.#step(fd, session.end(), true);
    }
    this.#end(fd, finishing?.reason ?? "closed by client", true);
  }

  /**
   * Serves what `fd`'s TLS session can decrypt, while the connection
   * reads on; returns whether to read on.
   */
  #decrypt(fd: number, tls: TlsSession): boolean {
    const conns = this.#conns;
    const faults = this.#faults;
    const result = this.#tls!.decrypt(
      fd,
      tls,
      (bytes, length) => {
        // On TLS, faults act on the plaintext (the handshake goes free).
        if (
          faults.size > 0 && faults.has(fd) && !faults.passes(fd, "receive")
        ) {
          faults.received(fd, bytes.slice(0, length), this.#now);
          return conns.has(fd) && !conns.held.has(fd);
        }
        return this.#consume(fd, bytes, length) && conns.has(fd) &&
          conns.owing[fd] === 0;
      },
    );
    if (result === "more") {
      // A record may have asked for an answer (a key update).
      if (this.#tls!.drain(fd) === "blocked") this.#oweWire(fd);
      return true;
    }
    if (result === "eof") {
      if (!this.#faultedEof(fd)) this.#eof(fd);
    } else if (result === "failed") this.#end(fd, `TLS error: ${tls.error}`);
    return false;
  }

  /**
   * Decrypts, for connections that read again, what their sessions took
   * in before they stopped reading.
   */
  #resumeTls(): void {
    for (const fd of [...this.#tls!.stalled]) {
      if (!this.#readsNow(fd)) continue;
      const tls = this.#tls!.session(fd);
      if (tls !== undefined) this.#decrypt(fd, tls);
    }
  }

  /** Whether `fd` is open and being read (not owing, not held). */
  #readsNow(fd: number): boolean {
    const conns = this.#conns;
    return conns.has(fd) && conns.owing[fd] === 0 && !conns.held.has(fd);
  }

  /** Ciphertext waits for `fd`'s socket: the connection owes bytes. */
  #oweWire(fd: number): void {
    const conns = this.#conns;
    if (conns.owing[fd] === 1) return;
    conns.pending.set(fd, { chunks: [], at: 0, bytes: 0 });
    conns.owing[fd] = 1;
    this.#interest(fd);
  }

  /**
   * Stops reading `fd` until its bucket has a byte's worth again. What the
   * client sends waits in the kernel, and TCP makes it wait.
   */
  #pause(fd: number, bucket: TokenBucket): void {
    this.#conns.paused.set(fd, this.#now + bucket.waitMs(this.#now));
    this.#hold(fd, HOLD_RATE);
  }

  /**
   * Serves the first `r` bytes of `bytes`, which the client sent: echoed,
   * or given to the connection's session. Returns whether to read on.
   */
  #consume(fd: number, bytes: Uint8Array, r: number): boolean {
    const conns = this.#conns;
    conns.bytesIn[fd] += r;
    this.#config.counters[BYTES_IN] += r;
    conns.lastActive[fd] = this.#now;
    if (conns.finishing.size > 0 && conns.finishing.has(fd)) {
      return true; // Not echoed any more.
    }
    if (this.#upstreams !== undefined) {
      return this.#upstreams.forward(fd, bytes, r);
    }
    if (this.#relay !== undefined) {
      this.#relay.receive(fd, bytes.subarray(0, r));
      return !conns.held.has(fd);
    }
    if (conns.sessions.size > 0) {
      const session = conns.sessions.get(fd);
      if (session !== undefined) {
        return this.#step(fd, session.receive(bytes.subarray(0, r)), false);
      }
    }
    // No view to allocate on the hot path: send() takes a length.
    const w = this.#send(fd, bytes, r);
    if (w < 0) return false;
    if (w < r) {
      this.#oweRead(fd, bytes, w, r);
      return false;
    }
    return true;
  }

  /**
   * Carries out what a session returned: sends its bytes (keeping what the
   * socket does not take) and ends the connection when it says so, at once
   * after the client's end of stream (`eof`), politely otherwise. Returns
   * whether to read on.
   */
  #step(fd: number, step: Step, eof: boolean): boolean {
    const { send, close } = step;
    if (send !== undefined) {
      const w = this.#send(fd, send, send.length);
      if (w < 0) return false;
      if (w < send.length) {
        // A copy: `send` may be a view of the read buffer.
        this.#owe(fd, send.slice(w));
        if (close !== undefined) this.#finish(fd, close);
        return false;
      }
    }
    if (close === undefined) return true;
    if (eof) {
      this.#end(fd, close, true);
      return false;
    }
    this.#finish(fd, close);
    return true;
  }

  /** The address client `fd` connected to (a Unix socket's path). */
  #local(fd: number): Deno.Addr {
    if (this.#path !== undefined) {
      return { transport: "unix", path: this.#path };
    }
    const bytes = new Uint8Array(SOCKADDR_MAX);
    const length = new Uint32Array([bytes.length]);
    this.#native.libc.getsockname(fd, bytes, length);
    return { transport: "tcp", ...fromSockaddr(this.#native, bytes) };
  }

  /** What a session of `fd`, for `client`, may answer with (info mode's). */
  #facts(fd: number, client: Deno.Addr): SessionFacts {
    const server = this.#config.server;
    if (this.#path !== undefined) {
      const local: Deno.UnixAddr = { transport: "unix", path: this.#path };
      return sessionFacts(server, "unix", client, local, this.#tls?.facts(fd));
    }
    const bytes = new Uint8Array(SOCKADDR_MAX);
    const length = new Uint32Array([bytes.length]);
    this.#native.libc.getsockname(fd, bytes, length);
    const local: Deno.NetAddr = {
      transport: "tcp",
      ...fromSockaddr(this.#native, bytes),
    };
    if (this.#tls === undefined) {
      return sessionFacts(server, "tcp", client, local);
    }
    return sessionFacts(server, "tls", client, local, this.#tls.facts(fd));
  }

  /** Keeps `bytes` to send once the socket takes more; stops reading. */
  #owe(fd: number, bytes: Uint8Array): void {
    const pending = this.#conns.pending.get(fd);
    if (pending !== undefined) {
      // Behind ciphertext its socket has not taken (TLS).
      pending.chunks.push(bytes);
      pending.bytes += bytes.length;
      return;
    }
    this.#conns.pending.set(fd, {
      chunks: [bytes],
      at: 0,
      bytes: bytes.length,
    });
    this.#conns.owing[fd] = 1;
    this.#interest(fd);
  }

  /**
   * Keeps the rest of this read (bytes `from` to `to` of `bytes`, the read
   * buffer) in a buffer of the pool: a stream that fills its socket again
   * and again reuses a few buffers rather than allocating one each time.
   */
  #oweRead(fd: number, bytes: Uint8Array, from: number, to: number): void {
    const spare = this.#spare.pop() ?? new Uint8Array(BUFFER_SIZE);
    spare.set(bytes.subarray(from, to));
    this.#owe(fd, spare.subarray(0, to - from));
  }

  /** Gives a pooled buffer back, if `bytes` is a view of one. */
  #recycle(bytes: Uint8Array): void {
    if (bytes.buffer.byteLength !== BUFFER_SIZE || bytes.byteOffset !== 0) {
      return;
    }
    if (this.#spare.length < MAX_SPARE) {
      this.#spare.push(new Uint8Array(bytes.buffer as ArrayBuffer));
    }
  }

  /**
   * Writes as much of the first `length` bytes of `bytes` as the socket
   * takes; returns how much, or -1 once the connection has ended on an
   * error.
   */
  #send(fd: number, bytes: Uint8Array, length: number): number {
    if (
      this.#faults.size > 0 && this.#faults.has(fd) &&
      !this.#faults.passes(fd, "send")
    ) {
      // Through the send faults, in their time (a copy: `bytes` may be
      // the read buffer).
      this.#faults.send(fd, bytes.slice(0, length), this.#now);
      return length;
    }
    return this.#write(fd, bytes, length);
  }

  /**
   * Writes `bytes` after what `fd` owes, keeping what the socket does not
   * take (a fault's bytes, due now); false once the connection has ended.
   */
  #writeOwed(fd: number, bytes: Uint8Array): boolean {
    if (!this.#conns.has(fd)) return false;
    if (this.#conns.owing[fd] === 1) {
      this.#owe(fd, bytes);
      return true;
    }
    const w = this.#write(fd, bytes, bytes.length);
    if (w < 0) return false;
    if (w < bytes.length) this.#owe(fd, bytes.subarray(w));
    return true;
  }

  /**
   * Proxy mode: the upstream's end reaches client `c`, once what it owes
   * is sent.
   */
  #shutClient(c: number): void {
    if (!this.#conns.has(c)) return;
    if (this.#conns.owing[c] === 1) {
      this.#shutAfterFlush.add(c);
      return;
    }
    if (this.#closeWrite(c)) this.#upstreams?.clientShut(c);
  }

  /** Ends `fd` with a reset (RST) for `why`: SO_LINGER 0, then close. */
  #reset(fd: number, why = "reset by a fault"): void {
    if (!this.#conns.has(fd)) return;
    this.#native.libc.setsockopt(fd, SOL_SOCKET, SO_LINGER, LINGER_0, 8);
    this.#resetting = fd;
    this.#end(fd, why);
    this.#resetting = -1;
  }

  /**
   * Writes as much of the first `length` bytes of `bytes` as the socket
   * takes, past the faults; returns how much, or -1 once the connection
   * has ended on an error.
   */
  #write(fd: number, bytes: Uint8Array, length: number): number {
    if (this.#tls !== undefined) return this.#sendTls(fd, bytes, length);
    const { libc } = this.#native;
    let written = 0;
    while (written < length) {
      const rest = written === 0 ? bytes : bytes.subarray(written, length);
      const w = libc.send(
        fd,
        rest,
        Math.min(rest.length, length - written),
        MSG_NOSIGNAL,
      );
      if (w < 0) {
        const errno = this.#native.errno();
        if (errno === EAGAIN) break;
        if (errno === EINTR) continue;
        this.#end(fd, reason(errno));
        return -1;
      }
      written += w;
    }
    this.#conns.bytesOut[fd] += written;
    this.#config.counters[BYTES_OUT] += written;
    if (written > 0) this.#conns.lastActive[fd] = this.#now;
    return written;
  }

  /**
   * Encrypts the first `length` bytes of `bytes` for `fd` and sends what
   * the socket takes: all of them are taken (`length`) unless ciphertext
   * from before still waits (0; the connection owes it), or -1 once the
   * connection has ended on an error. Ciphertext the socket does not take
   * waits in lib/native/tls_conns.ts, and the connection owes it.
   */
  #sendTls(fd: number, bytes: Uint8Array, length: number): number {
    const tls = this.#tls!;
    if (tls.owes(fd)) {
      const drained = tls.drain(fd);
      if (drained === "failed") return this.#sendFailed(fd, tls.errno);
      if (drained === "blocked") return 0;
    }
    const drained = tls.write(fd, bytes, length);
    if (drained === "failed") {
      const error = tls.session(fd)?.error;
      if (error !== undefined) {
        this.#end(fd, `TLS error: ${error}`);
        return -1;
      }
      return this.#sendFailed(fd, tls.errno);
    }
    const conns = this.#conns;
    conns.bytesOut[fd] += length;
    this.#config.counters[BYTES_OUT] += length;
    conns.lastActive[fd] = this.#now;
    if (drained === "blocked") this.#oweWire(fd);
    return length;
  }

  /** A send failed with `errno`: the connection ends. Returns -1. */
  #sendFailed(fd: number, errno: number): number {
    this.#end(fd, reason(errno));
    return -1;
  }

  /** Sends what the socket did not take; then reads again. */
  #flush(fd: number): void {
    const conns = this.#conns;
    const pending = conns.pending.get(fd)!;
    if (this.#tls !== undefined && this.#tls.owes(fd)) {
      const drained = this.#tls.drain(fd);
      if (drained === "failed") {
        return void this.#sendFailed(fd, this.#tls.errno);
      }
      if (drained === "blocked") return;
    }
    while (pending.chunks.length > 0) {
      const chunk = pending.chunks[0];
      const rest = pending.at === 0 ? chunk : chunk.subarray(pending.at);
      const w = this.#write(fd, rest, rest.length);
      if (w < 0) return;
      pending.at += w;
      pending.bytes -= w;
      if (pending.at < chunk.length) return;
      pending.chunks.shift();
      pending.at = 0;
      this.#recycle(chunk);
    }
    if (this.#tls !== undefined && this.#tls.owes(fd)) return;
    conns.pending.delete(fd);
    conns.owing[fd] = 0;
    if (conns.finishing.has(fd) && !this.#closeWrite(fd)) return;
    this.#interest(fd);
    this.#relay?.flushed();
    if (this.#upstreams !== undefined) {
      if (this.#shutAfterFlush.delete(fd)) this.#shutClient(fd);
      this.#upstreams.clientFlushed(fd);
    }
  }

  /**
   * Ends a connection politely: what the client still sends is read and
   * discarded, what is owed is sent, then the server half-closes, and the
   * connection closes once the client closes too or after LINGER_MS.
   */
  #finish(fd: number, why: Ending): void {
    const conns = this.#conns;
    if (conns.finishing.has(fd)) return;
    conns.finishing.set(fd, { reason: why, until: this.#now + LINGER_MS });
    // What it still sends is read, and discarded.
    this.#unhold(fd, HOLD_RELAY);
    if (conns.owing[fd] === 0) this.#closeWrite(fd);
  }

  /**
   * Ends our side of `fd`'s stream: on TLS, a close_notify first. Returns
   * `false` when the socket has not taken that yet: the connection owes it,
   * and its flush calls here again.
   */
  #closeWrite(fd: number): boolean {
    if (this.#tls === undefined) {
      this.#native.libc.shutdown(fd, SHUT_WR);
      return true;
    }
    if (this.#tls.closeWrite(fd)) return true;
    this.#oweWire(fd);
    return false;
  }

  /**
   * Ends a connection, after a half-close if `halfClose`. The counters go
   * first: a client that sees our end of stream sees them counted.
   */
  #end(fd: number, why: string, halfClose = false): void {
    const conns = this.#conns;
    if (!conns.has(fd)) return;
    if (this.#faultEnded.delete(fd)) why = "ended by a fault";
    const peer = conns.peers.get(fd) ?? "";
    this.#upstreams?.close(fd);
    this.#shutAfterFlush.delete(fd);
    countClosed(this.#config.counters, why, this.#now - conns.openedAt[fd]);
    const limited = conns.limited.get(fd);
    if (limited !== undefined) this.#limiter!.release(limited);
    conns.remove(fd);
    this.#config.counters[ACTIVE]--;
    Atomics.sub(this.#config.open, 0, 1);
    // After the counters: a client told of the leave sees them counted.
    this.#relay?.left(fd);
    if (this.#tls !== undefined) {
      // Our close_notify, whatever the reason, as Deno's TLS sends (but
      // for a reset, which is one because nothing says goodbye).
      if (halfClose) this.#tls.closeWrite(fd);
      else if (fd !== this.#resetting) this.#tls.goodbye(fd);
      this.#tls.forget(fd);
    } else if (halfClose) this.#native.libc.shutdown(fd, SHUT_WR);
    const { libc } = this.#native;
    if (
      this.#faults.size > 0 &&
      this.#faults.closing(fd, this.#now, () => libc.close(fd))
    ) {
      // A slow_close holds the socket back; nothing more is read.
      this.#ctl(EPOLL_CTL_DEL, fd, 0);
    } else {
      libc.close(fd);
    }
    if (!this.#config.logInfo) return;
    this.#record(closed({
      peer,
      durationMs: this.#now - conns.openedAt[fd],
      bytesIn: conns.bytesIn[fd],
      bytesOut: conns.bytesOut[fd],
      reason: why,
    }));
  }
}

/** `struct linger` { l_onoff 1, l_linger 0 }: close() resets. */
const LINGER_0 = new Int32Array([1, 0]);
/** The listen queue of a socket made again (as native_server.ts's). */
const BACKLOG = 4096;

/** The faults that act on connections among `faults`, ready to match. */
function faultSet(faults: readonly Fault[]): FaultSet | undefined {
  return faults.some((f) => isStream(f) || isDownClose(f))
    ? new FaultSet(faults)
    : undefined;
}

/** The bytes of `lines` in all. */
function sum(lines: Uint8Array[]): number {
  let bytes = 0;
  for (const line of lines) bytes += line.length;
  return bytes;
}

/** Why a connection ended on `errno`, as the default engine says it. */
function reason(errno: number): string {
  if (errno === 104) return "reset by peer";
  if (errno === 32) return "broken pipe";
  return errnoText(errno);
}
