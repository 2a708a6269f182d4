// Private: where every client connects: echoOnce and echoStream, loadTest
// and the interactive session. The transport is chosen here and nowhere
// else, so a new one (TLS, Unix sockets) is one change. Not exported from
// mod.ts.

/** Where and how a client connects. */
export interface DialOptions {
  hostname: string;
  port: number;
  /** Aborting it gives up connecting. */
  signal?: AbortSignal;
}

/**
 * Connects to an echo server, with Nagle's algorithm off, so that small
 * messages are not held back waiting for an acknowledgement.
 *
 * @throws {Deno.errors.ConnectionRefused} Nothing listens there.
 * @throws {unknown} `signal.reason`, when the signal aborts first.
 */
export async function dial(options: DialOptions): Promise<Deno.TcpConn> {
  const { hostname, port, signal } = options;
  const conn = await Deno.connect({ hostname, port, signal });
  try {
    conn.setNoDelay(true);
  } catch (error) {
    conn.close();
    throw error;
  }
  return conn;
}
