// Private: a server that echoes UDP datagrams beside its TCP connections
// (serveEcho's `udp` option), or UDP alone, on the default engine (the
// native engine's loops take datagrams themselves). Not exported from
// mod.ts.

import type { Fault } from "../faults/spec.ts";
import type { ClusterStatus, EchoServerStats } from "../types.ts";
import type { TlsSettings } from "../core/config.ts";
import { sumStats } from "../core/counters.ts";
import type { Backend } from "../core/handle.ts";
import type { DatagramEcho } from "./datagram.ts";

/** The TCP server (if any) and the UDP socket, as one backend. */
export class WithDatagrams implements Backend {
  readonly addr: Deno.Addr;
  readonly ready: Promise<void>;
  readonly finished: Promise<void>;
  readonly engine = "default" as const;
  readonly transport: "tcp" | "tls" | "unix" | "udp" | "websocket";
  readonly websocketAddr: Deno.NetAddr | undefined;
  #stream: Backend | undefined;
  #udp: DatagramEcho;

  constructor(stream: Backend | undefined, udp: DatagramEcho) {
    this.#stream = stream;
    this.#udp = udp;
    this.transport = stream?.transport ?? "udp";
    this.addr = stream?.addr ?? udp.addr;
    this.websocketAddr = stream?.websocketAddr;
    this.ready = stream?.ready ?? Promise.resolve();
    this.finished = Promise.all([stream?.finished, udp.finished]).then(
      () => {},
    );
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
      // The streams count what faults did to connections, UDP to replies.
      faultActions: {
        ...stream.faultActions,
        drop: udp.faultActions.drop,
        duplicate: udp.faultActions.duplicate,
        corrupt: udp.faultActions.corrupt,
        reorder: udp.faultActions.reorder,
      },
    };
  }

  clusterStatus(): Promise<ClusterStatus | undefined> {
    return this.#stream?.clusterStatus() ?? Promise.resolve(undefined);
  }

  announce(message: string): number {
    // UDP has no clients to speak to unasked.
    return this.#stream?.announce(message) ?? 0;
  }

  async drain(): Promise<void> {
    // Datagrams have nothing in flight to wait for.
    this.#udp.close();
    await this.#stream?.drain();
    await this.finished;
  }

  unready(): void {
    this.#stream?.unready?.();
  }

  stop(): void {
    this.#udp.close();
    this.#stream?.stop();
  }

  readonly datagrams = true;

  async setFaults(faults: Fault[]): Promise<void> {
    // The streams check theirs first: a refusal changes neither.
    await this.#stream?.setFaults(faults);
    this.#udp.setFaults(faults);
  }

  reloadTls(listen: TlsSettings): Promise<void> {
    // UDP is not encrypted: the streams' listener has the certificates.
    return this.#stream?.reloadTls(listen) ?? Promise.resolve();
  }
}
