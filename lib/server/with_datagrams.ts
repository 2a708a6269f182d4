// Private: a server that echoes UDP datagrams beside its TCP connections
// (serveEcho's `udp` option), or UDP alone. Not exported from mod.ts.

import type {
  ClusterStatus,
  EchoMode,
  EchoServer,
  EchoServerStats,
} from "../types.ts";
import { sumStats } from "../core/counters.ts";
import type { DatagramEcho } from "./datagram.ts";
import { assertAnnouncement } from "../core/lifecycle.ts";

/** The TCP server (if any) and the UDP socket, as one EchoServer. */
export class WithDatagrams implements EchoServer<Deno.Addr> {
  readonly addr: Deno.Addr;
  readonly ready: Promise<void>;
  readonly finished: Promise<void>;
  readonly mode: EchoMode;
  /** Datagrams are always Deno's: the native engine serves TCP alone. */
  readonly engine = "default";
  readonly transport: "tcp" | "tls" | "unix" | "udp";
  #stream: EchoServer<Deno.Addr> | undefined;
  #udp: DatagramEcho;

  constructor(
    stream: EchoServer<Deno.Addr> | undefined,
    udp: DatagramEcho,
    mode: EchoMode,
    signal: AbortSignal | undefined,
  ) {
    this.#stream = stream;
    this.#udp = udp;
    this.mode = mode;
    this.transport = stream?.transport ?? "udp";
    this.addr = stream?.addr ?? udp.addr;
    this.ready = stream?.ready ?? Promise.resolve();
    signal?.addEventListener("abort", this.#close, { once: true });
    this.finished = Promise.all([stream?.finished, udp.finished]).then(() => {
      signal?.removeEventListener("abort", this.#close);
    });
  }

  get stats(): EchoServerStats {
    const udp = sumStats(this.#udp.counters);
    const stream = this.#stream?.stats ?? { ...udp, perWorker: [0] };
    return {
      ...stream,
      datagramsIn: udp.datagramsIn,
      datagramsOut: udp.datagramsOut,
      datagramBytesIn: udp.datagramBytesIn,
      datagramBytesOut: udp.datagramBytesOut,
      datagramsRefused: udp.datagramsRefused,
      datagramsRateLimited: udp.datagramsRateLimited,
    };
  }

  clusterStatus(): Promise<ClusterStatus | undefined> {
    return this.#stream?.clusterStatus() ?? Promise.resolve(undefined);
  }

  announce(message: string): number {
    if (this.#stream !== undefined) return this.#stream.announce(message);
    assertAnnouncement(message);
    return 0; // UDP has no clients to speak to unasked.
  }

  shutdown(): Promise<void> {
    // Datagrams have nothing in flight to wait for.
    this.#udp.close();
    return Promise.all([this.#stream?.shutdown(), this.finished]).then(
      () => {},
    );
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #close = (): void => {
    this.#udp.close();
  };
}
