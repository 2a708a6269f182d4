// Private: proxy mode's connect to its upstream for one client: TCP (with
// Nagle's algorithm off) or a Unix socket, a PROXY header naming the client
// first if asked, then TLS if asked, all within the timeout. Not exported
// from mod.ts.

import { writeAll } from "../_helpers.ts";
import { clientHeader } from "../proxy/header.ts";
import type { UpstreamConfig } from "./config.ts";

/**
 * A connection to `upstream` for `client` (whose addresses a PROXY header
 * names).
 *
 * @throws {Deno.errors.TimedOut} It took longer than the timeout.
 * @throws {Error} The connect, the header or the handshake failed.
 */
export async function dialUpstream(
  upstream: UpstreamConfig,
  client: Deno.Conn,
): Promise<Deno.Conn> {
  const controller = new AbortController();
  const timer = setTimeout(
    () =>
      controller.abort(
        new Deno.errors.TimedOut(`timed out after ${upstream.timeout} ms`),
      ),
    upstream.timeout,
  );
  const { signal } = controller;
  let conn: Deno.Conn | undefined;
  try {
    const { to } = upstream;
    conn = await within<Deno.Conn>(
      to.transport === "unix"
        ? Deno.connect({ transport: "unix", path: to.path })
        : Deno.connect({ hostname: to.hostname, port: to.port, signal }),
      signal,
    );
    if (to.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
    if (upstream.sendProxy !== undefined) {
      const net = (addr: Deno.Addr) =>
        addr.transport === "tcp" ? addr as Deno.NetAddr : undefined;
      const source = net(client.remoteAddr);
      const header = source === undefined
        ? clientHeader(upstream.sendProxy, undefined, undefined, undefined)
        : clientHeader(
          upstream.sendProxy,
          source,
          undefined,
          net(client.localAddr),
        );
      await within(writeAll(conn, header), signal);
    }
    if (upstream.tls !== undefined) {
      const tls = await Deno.startTls(conn as Deno.TcpConn, {
        hostname: upstream.tls.serverName,
        ...(upstream.tls.caCerts ? { caCerts: upstream.tls.caCerts } : {}),
      });
      conn = tls;
      await within(tls.handshake(), signal);
    }
    return conn;
  } catch (error) {
    try {
      conn?.close();
    } catch {
      // Closed already.
    }
    throw signal.aborted ? signal.reason : error;
  } finally {
    clearTimeout(timer);
  }
}

/** `promise`, or `signal`'s reason once it aborts first. */
function within<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.then((value) => (value as Deno.Conn)?.close?.(), () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      // What comes late is closed: nobody will use it.
      promise.then((value) => {
        try {
          (value as { close?: () => void })?.close?.();
        } catch {
          // Closed already.
        }
      }, () => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}
