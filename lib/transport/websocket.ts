// Private: the WebSocket transport. Deno.serve listens for HTTP; `GET /ws`
// upgrades, and each WebSocket becomes a connection the engine serves as
// any other (lib/websocket/conn.ts), its messages framed for the mode;
// `/healthz` and `/readyz` answer orchestrators. Closing the listener stops
// the upgrades (503) and turns `/readyz` to 503, while the WebSockets open
// go on: Deno's `shutdown()` would end them, so the HTTP server is shut
// down only once the engine has finished with them (`settled`). Not
// exported from mod.ts.

import { formatAddr, textResponse } from "../_helpers.ts";
import { addressList } from "../rules/cidr.ts";
import { forwardedClient } from "../websocket/forwarded.ts";
import { isPagePath, pageResponse } from "../websocket/page.ts";
import type { ListenConfig, ServerConfig } from "../core/config.ts";
import { infoDocument, sessionFacts } from "../modes/info.ts";
import { WebSocketConn } from "../websocket/conn.ts";
import { echoFraming, lineFraming } from "../websocket/framing.ts";
import type { Transport, TransportEvents } from "./transport.ts";

/** A WebSocket listener's configuration. */
export type WebSocketListen = Extract<ListenConfig, { transport: "websocket" }>;

/**
 * WebSocket over HTTP on `listen.hostname:listen.port` (TLS with its
 * certificate and key, when it has them).
 */
export function websocketTransport(
  listen: WebSocketListen,
  config: Pick<ServerConfig, "mode" | "host" | "id">,
  reusePort: boolean,
  events: Pick<TransportEvents, "badUpgrade">,
): Transport {
  let http: Deno.HttpServer<Deno.NetAddr> | undefined;
  const trusted = listen.trusted && addressList(listen.trusted);
  let listener: WebSocketListener | undefined;
  /** False from the moment a shutdown begins (see Transport.unready). */
  let ready = true;
  return {
    // Listening again (after a `down` fault that refuses) takes new
    // upgrades on the same HTTP server: while the listener is closed, they
    // are answered 503.
    listen() {
      const accepting = new WebSocketListener();
      listener = accepting;
      if (http === undefined) {
        const tls = listen.tls === undefined
          ? {}
          : { cert: listen.tls.cert, key: listen.tls.key };
        http = Deno.serve(
          {
            hostname: listen.hostname,
            port: listen.port,
            ...(reusePort ? { reusePort: true } : {}),
            ...tls,
            onListen: () => {},
            onError: () => new Response("Internal error\n", { status: 500 }),
          },
          (request, info) => route(request, info, listener!),
        );
      }
      accepting.addr = http.addr;
      return accepting;
    },
    listensAgain: true,
    prepare: () => {},
    unready: () => {
      ready = false;
    },
    peer: (conn) => formatAddr(conn.remoteAddr),
    settled: async () => {
      await http?.shutdown();
    },
  };

  function route(
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    accepting: WebSocketListener,
  ): Response | Promise<Response> {
    const { pathname } = new URL(request.url);
    if (isPagePath(pathname)) return pageResponse(pathname);
    switch (pathname) {
      case "/healthz":
        return textResponse(200, "ok\n");
      case "/readyz":
        if (!ready) return textResponse(503, "draining\n");
        return accepting.closed
          ? textResponse(503, "not accepting\n")
          : textResponse(200, "ready\n");
      case "/info":
        return Response.json(
          infoDocument(
            sessionFacts(
              config,
              "websocket",
              forwardedClient(
                info.remoteAddr,
                request.headers.get("x-forwarded-for"),
                trusted,
              ),
              http!.addr,
            ),
            {
              method: request.method,
              path: pathname,
              headers: request.headers,
            },
            config.mode,
          ),
        );
      case "/ws":
        break;
      default:
        return textResponse(
          404,
          "Not found: try /, /ws, /info, /healthz or /readyz\n",
        );
    }
    if (accepting.closed) {
      return textResponse(503, ready ? "not accepting\n" : "draining\n");
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return textResponse(
        426,
        "/ws speaks WebSocket: send an Upgrade request\n",
        {
          upgrade: "websocket",
        },
      );
    }
    // Read before the upgrade: Deno closes the request (its headers, the
    // peer's address) then.
    const remote = forwardedClient(
      info.remoteAddr,
      request.headers.get("x-forwarded-for"),
      trusted,
    );
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request);
    } catch (error) {
      const reason = (error as Error).message;
      events.badUpgrade(formatAddr(remote), reason);
      return textResponse(400, `Bad WebSocket upgrade: ${reason}\n`);
    }
    const { socket, response } = upgraded;
    const conn = new WebSocketConn(
      socket,
      config.mode === "echo" ? echoFraming() : lineFraming(),
      { local: http!.addr, remote },
      listen.maxMessageBytes,
    );
    // Served once open: a socket that fails before is never handed over.
    socket.addEventListener("open", () => accepting.push(conn), {
      once: true,
    });
    return response;
  }
}

/** The upgraded WebSockets, as a listener the engine accepts from. */
class WebSocketListener implements Deno.Listener {
  addr!: Deno.NetAddr;
  closed = false;
  #ready: WebSocketConn[] = [];
  #waiting: {
    resolve: (conn: Deno.Conn) => void;
    reject: (error: Error) => void;
  }[] = [];

  push(conn: WebSocketConn): void {
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

  /** Stops the upgrades; the WebSockets open go on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const conn of this.#ready.splice(0)) conn.close();
    for (const { reject } of this.#waiting.splice(0)) {
      reject(new Deno.errors.BadResource("Listener closed"));
    }
  }

  get rid(): number {
    throw new TypeError("A WebSocket listener has no resource id");
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
