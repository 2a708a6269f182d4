// Private: the WebSocket transport. It listens on TCP (or TLS, through the
// TLS transport's gate) and speaks the HTTP/1.1 of lib/websocket/http.ts
// on each connection itself: a gate reads each request head within
// `headerTimeout` (a client that dribbles its headers gets a 408 and is
// closed, counted), answers the page, `/info`, `/healthz` and `/readyz`
// on connections kept alive, and hands the engine a WebSocketConn for each
// `GET /ws` it upgrades. Deno.serve is not used: it has no header timeout
// (denoland/deno#3515), ends a WebSocket that breaks the protocol without
// a close code, takes unmasked frames, and reads a WebSocket whether or
// not anyone reads its messages. Not exported from mod.ts.

import { describeError, formatAddr, textResponse } from "../_helpers.ts";
import { addressList } from "../rules/cidr.ts";
import { forwardedClient } from "../websocket/forwarded.ts";
import { isPagePath, pageResponse } from "../websocket/page.ts";
import type { ListenConfig, ServerConfig, TlsListen } from "../core/config.ts";
import { infoDocument, sessionFacts } from "../modes/info.ts";
import { WebSocketConn } from "../websocket/conn.ts";
import { echoFraming, lineFraming } from "../websocket/framing.ts";
import {
  acceptUpgrade,
  type BadRequest,
  encodeResponse,
  HeadReader,
  type HttpRequest,
  wantsClose,
} from "../websocket/http.ts";
import { writeAll } from "../_helpers.ts";
import { lingeringClose } from "../websocket/linger.ts";
import { tcpTransport } from "./tcp.ts";
import { tlsTransport } from "./tls.ts";
import type { Transport, TransportEvents } from "./transport.ts";

/** A WebSocket listener's configuration. */
export type WebSocketListen = Extract<ListenConfig, { transport: "websocket" }>;

/** What the gate needs to answer requests. */
interface Site {
  listen: WebSocketListen;
  config: Pick<ServerConfig, "mode" | "host" | "id">;
  events: Pick<TransportEvents, "badUpgrade" | "acceptFailed">;
  trusted: ReturnType<typeof addressList> | undefined;
  /** False from the moment a shutdown begins (see Transport.unready). */
  ready: boolean;
}

/**
 * WebSocket over HTTP on `listen.hostname:listen.port` (TLS with its
 * certificate and key, when it has them).
 */
export function websocketTransport(
  listen: WebSocketListen,
  config: Pick<ServerConfig, "mode" | "host" | "id">,
  reusePort: boolean,
  events: TransportEvents,
): Transport {
  const { hostname, port, tls } = listen;
  const below = tls === undefined
    ? tcpTransport({ hostname, port, reusePort })
    : tlsTransport({ hostname, port, reusePort, ...tls }, events);
  const site: Site = {
    listen,
    config,
    events,
    trusted: listen.trusted && addressList(listen.trusted),
    ready: true,
  };
  let http: HttpServer | undefined;
  return {
    // The HTTP server starts with the first listen() and stays up until
    // the engine has finished (settled): while the engine's listener is
    // closed (a drain, a `down` fault that refuses), it answers upgrades
    // and /readyz with 503. Listening again takes upgrades again.
    listen() {
      const upgrades = new UpgradeQueue();
      if (http !== undefined) {
        upgrades.addr = http.addr;
        http.upgrades = upgrades;
        return upgrades;
      }
      const start = (listener: Deno.Listener) => {
        http = new HttpServer(listener, below, site, upgrades);
        upgrades.addr = listener.addr as Deno.NetAddr;
        return upgrades;
      };
      const listening = below.listen();
      if (!("listener" in listening)) return start(listening);
      return { ...listening, listener: listening.listener.then(start) };
    },
    listensAgain: true,
    prepare: () => {},
    unready: () => {
      site.ready = false;
    },
    peer: (conn) => formatAddr(conn.remoteAddr),
    settled: async () => {
      await http?.close();
      await below.settled?.();
    },
    reload: (next) =>
      below.reload?.({ ...next, transport: "tls" } as TlsListen),
  };
}

/** How long the HTTP server waits before accepting again after an error. */
const RETRY_MS = 10;

/**
 * The HTTP side of the listener: accepts below, serves each connection's
 * requests, and queues the upgraded WebSockets for the engine.
 */
class HttpServer {
  readonly addr: Deno.NetAddr;
  /** Where upgraded WebSockets go; closed: upgrades are answered 503. */
  upgrades: UpgradeQueue;
  #listener: Deno.Listener;
  #below: Transport;
  #site: Site;
  /** Connections speaking HTTP, not upgraded (yet). */
  #http = new Set<Deno.Conn>();
  /** What runs beside the engine: HTTP connections, WebSockets' closes. */
  #tasks = new Set<Promise<void>>();
  #closed = false;

  constructor(
    listener: Deno.Listener,
    below: Transport,
    site: Site,
    upgrades: UpgradeQueue,
  ) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
    this.#below = below;
    this.#site = site;
    this.upgrades = upgrades;
    this.#track(this.#acceptAll());
  }

  async #acceptAll(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        // A client reset while queued, or out of file descriptors: counted
        // as the engine counts its own, and tried again in a moment.
        this.#site.events.acceptFailed(describeError(error));
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      this.#track(this.#serve(conn));
    }
  }

  /**
   * Stops listening, closes the connections still speaking HTTP, and
   * resolves once they and every WebSocket's close are over.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#listener.close();
      } catch {
        // Closed already.
      }
      for (const conn of this.#http) close(conn);
      this.#http.clear();
    }
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  /** Serves `conn`'s requests until it closes or upgrades. */
  async #serve(conn: Deno.Conn): Promise<void> {
    try {
      this.#below.prepare(conn);
    } catch {
      return close(conn);
    }
    this.#http.add(conn);
    let rest: Uint8Array = new Uint8Array(0);
    let first = true;
    let next: "upgraded" | "kept" | "closed" = "kept";
    try {
      while (next === "kept" && !this.#closed) {
        const head = await this.#readHead(conn, new HeadReader(rest), first);
        first = false;
        if (head === undefined) break; // Ended, or idle past the timeout.
        if ("status" in head) {
          this.#site.events.badUpgrade(
            formatAddr(conn.remoteAddr),
            head.reason,
          );
          await respond(conn, head.status, head.reason);
          next = "closed";
          break;
        }
        rest = head.rest;
        next = await this.#answer(conn, head.request, rest);
      }
    } catch {
      // Reset, or closed with the listener.
    }
    if (next === "upgraded") return;
    this.#http.delete(conn);
    // After a response that closes, the client's end is awaited (a while):
    // closing with its bytes unread would reset, and lose the response.
    if (next === "closed") await lingeringClose(conn);
    else close(conn);
  }

  /**
   * The next request head on `conn`, within the header timeout, or why it
   * cannot be served; undefined when the connection ends first, or stays
   * silent between requests.
   */
  async #readHead(
    conn: Deno.Conn,
    reader: HeadReader,
    first: boolean,
  ): Promise<
    { request: HttpRequest; rest: Uint8Array } | BadRequest | undefined
  > {
    const timeout = this.#site.listen.headerTimeout;
    const { promise: timeUp, resolve } = Promise.withResolvers<"time">();
    const timer = setTimeout(() => resolve("time"), timeout);
    const buffer = new Uint8Array(16 * 1024);
    try {
      let step = reader.step();
      while (step.state === "more") {
        const reading = conn.read(buffer);
        reading.catch(() => {}); // Closed by the listener, or a reset.
        const n = await Promise.race([reading, timeUp]);
        if (n === null) return undefined;
        if (n === "time") {
          // Silence between requests is a connection kept alive, ended.
          if (!reader.started && !first) return undefined;
          return {
            status: 408,
            reason: reader.started
              ? `request head not complete in ${timeout} ms`
              : `no request in ${timeout} ms`,
          };
        }
        step = reader.push(buffer.subarray(0, n));
      }
      return step.state === "bad" ? step.bad : step;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Answers `request`; says what becomes of the connection. */
  async #answer(
    conn: Deno.Conn,
    request: HttpRequest,
    rest: Uint8Array,
  ): Promise<"upgraded" | "kept" | "closed"> {
    const site = this.#site;
    const remote = forwardedClient(
      conn.remoteAddr as Deno.NetAddr,
      request.headers.get("x-forwarded-for"),
      site.trusted,
    );
    const head = request.method === "HEAD";
    if (request.method !== "GET" && !head) {
      await respond(conn, 405, `${request.method} is not served: GET is`, {
        allow: "GET, HEAD",
      });
      return "closed";
    }
    const length = request.headers.get("content-length") ?? "0";
    if (length !== "0" || request.headers.has("transfer-encoding")) {
      await respond(conn, 400, "a GET has no body here");
      return "closed";
    }
    let response: Response;
    const { path } = request;
    if (isPagePath(path)) response = await pageResponse(path);
    else if (path === "/healthz") response = textResponse(200, "ok\n");
    else if (path === "/readyz") {
      response = !site.ready
        ? textResponse(503, "draining\n")
        : this.upgrades.closed
        ? textResponse(503, "not accepting\n")
        : textResponse(200, "ready\n");
    } else if (path === "/info") {
      response = Response.json(infoDocument(
        sessionFacts(site.config, "websocket", remote, conn.localAddr),
        request,
        site.config.mode,
      ));
    } else if (path === "/ws") {
      return await this.#upgrade(conn, request, remote, rest);
    } else {
      response = textResponse(
        404,
        "Not found: try /, /ws, /info, /healthz or /readyz\n",
      );
    }
    const close = wantsClose(request);
    const body = new Uint8Array(await response.arrayBuffer());
    await writeAll(
      conn,
      encodeResponse(response.status, response.headers, body, { head, close }),
    );
    return close ? "closed" : "kept";
  }

  async #upgrade(
    conn: Deno.Conn,
    request: HttpRequest,
    remote: Deno.NetAddr,
    rest: Uint8Array,
  ): Promise<"upgraded" | "closed"> {
    const upgrade = acceptUpgrade(request);
    if ("status" in upgrade) {
      // A plain GET of /ws is no attempt at an upgrade: told, not counted.
      const attempt = request.headers.has("upgrade");
      const reason = attempt
        ? `Bad WebSocket upgrade: ${upgrade.reason}`
        : upgrade.reason;
      if (attempt) this.#site.events.badUpgrade(formatAddr(remote), reason);
      await respond(
        conn,
        upgrade.status,
        reason,
        Object.fromEntries(upgrade.headers ?? []),
      );
      return "closed";
    }
    if (this.upgrades.closed) {
      await respond(conn, 503, this.#site.ready ? "not accepting" : "draining");
      return "closed";
    }
    await writeAll(
      conn,
      encodeResponse(101, upgrade.headers, new Uint8Array(0)),
    );
    this.#http.delete(conn);
    const { listen, config } = this.#site;
    this.upgrades.push(
      new WebSocketConn(conn, {
        framing: config.mode === "echo" ? echoFraming() : lineFraming(),
        remoteAddr: remote,
        maxMessageBytes: listen.maxMessageBytes,
        rest,
        closing: (done) => this.#track(done),
      }),
    );
    return "upgraded";
  }
}

/** The upgraded WebSockets, as the listener the engine accepts from. */
class UpgradeQueue implements Deno.Listener {
  addr!: Deno.NetAddr;
  closed = false;
  #ready: Deno.Conn[] = [];
  #waiting: {
    resolve: (conn: Deno.Conn) => void;
    reject: (error: Error) => void;
  }[] = [];

  push(conn: Deno.Conn): void {
    if (this.closed) return conn.close();
    const waiting = this.#waiting.shift();
    if (waiting !== undefined) waiting.resolve(conn);
    else this.#ready.push(conn);
  }

  accept(): Promise<Deno.Conn> {
    const ready = this.#ready.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.closed) {
      return Promise.reject(new Deno.errors.BadResource("Listener closed"));
    }
    return new Promise((resolve, reject) =>
      this.#waiting.push({ resolve, reject })
    );
  }

  /** Stops the upgrades (503 from now on); the WebSockets open go on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const conn of this.#ready.splice(0)) conn.close();
    for (const { reject } of this.#waiting.splice(0)) {
      reject(new Deno.errors.BadResource("Listener closed"));
    }
  }

  ref(): void {}
  unref(): void {}

  async *[Symbol.asyncIterator](): AsyncIterableIterator<Deno.Conn> {
    while (true) {
      try {
        yield await this.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource) return;
        throw error;
      }
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Writes a plain-text response of `status` with `text` and a newline, after
 * which the connection closes.
 */
async function respond(
  conn: Deno.Conn,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): Promise<void> {
  const response = textResponse(status, `${text}\n`, headers);
  const body = new Uint8Array(await response.arrayBuffer());
  await writeAll(
    conn,
    encodeResponse(status, response.headers, body, { close: true }),
  );
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}
