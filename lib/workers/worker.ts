// Private: the Web Worker behind serveEcho's `workers` option (see
// pool.ts). It runs one listener on the shared port, forwards its log
// records to the calling thread, and, in broadcast and chat mode, talks to
// the relay there through a RelayLink. Not exported from mod.ts.

import { configureSync, type LogRecord } from "../_logtape.ts";
import { describeError, LOG_CATEGORY } from "../_helpers.ts";
import { Pacer } from "../relay/pacer.ts";
import type { Member, RelayPort } from "../relay/relay.ts";
import type { Server } from "../server/engine.ts";
import { listenersFor, type WithWebSocket } from "../server/with_websocket.ts";
import { COUNTERS } from "../core/counters.ts";
import type { FromWorker, ToWorker } from "./pool.ts";
import type { Delivery } from "../relay/bridge.ts";

const scope = globalThis as unknown as {
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
};

function send(message: FromWorker, transfer?: Transferable[]): void {
  scope.postMessage(message, transfer);
}

/**
 * The relay as this worker's listener sees it: members, lines and
 * announcements go to the relay on the calling thread; deliveries come back
 * in batches, and each batch is reported settled once every writer here is
 * idle or stuck (see {@linkcode Pacer}), which paces the relay's rounds as
 * local writers do.
 */
class RelayLink implements RelayPort {
  #ids = new Map<Member, number>();
  #members = new Map<number, Member>();
  #nextId = 1;
  #waiting = new Map<number, { member?: Member; resolve: () => void }>();
  #nextToken = 1;
  #pacer = new Pacer();
  /** Batches delivered and not yet reported settled. */
  #unsettled = 0;
  #settling = false;

  get size(): number {
    return this.#members.size;
  }

  idle(): Promise<void> {
    return Promise.resolve();
  }

  writerBusy(writer: object, busy: boolean): void {
    this.#pacer.busy(writer, busy);
  }

  writerProgress(): void {
    this.#pacer.progress();
  }

  join(member: Member): void {
    const id = this.#nextId++;
    this.#ids.set(member, id);
    this.#members.set(id, member);
    send({ t: "join", id, peer: member.peer });
  }

  leave(member: Member): void {
    const id = this.#ids.get(member);
    if (id === undefined) return;
    this.#ids.delete(member);
    this.#members.delete(id);
    send({ t: "leave", id });
  }

  submit(member: Member, lines: Uint8Array[]): Promise<void> {
    const id = this.#ids.get(member);
    if (lines.length === 0 || id === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const token = this.#nextToken++;
      this.#waiting.set(token, { member, resolve });
      // Each line is the relay's own copy: hand its memory over.
      const buffers = lines.map((line) => line.buffer as ArrayBuffer);
      send({ t: "submit", id, token, lines }, buffers);
    });
  }

  announce(
    text: string,
    only?: (member: Member) => boolean,
    last = false,
  ): Promise<void> {
    return new Promise((resolve) => {
      const token = this.#nextToken++;
      this.#waiting.set(token, { resolve });
      // Only this listener's own shutdown notice passes `only`: to its
      // clients, which are all of this worker's members.
      send({ t: "announce", token, text, local: only !== undefined, last });
    });
  }

  /** Posts a batch of lines, then resolves the submits it completes. */
  deliver(items: Delivery[], acks: [number, boolean][]): void {
    for (const [ids, line] of items) {
      for (const id of ids) {
        const member = this.#members.get(id);
        if (member !== undefined && !member.out.post(line)) {
          member.dropQueueFull();
        }
      }
    }
    for (const [token, quitting] of acks) {
      const waiting = this.#waiting.get(token);
      if (waiting === undefined) continue;
      this.#waiting.delete(token);
      if (waiting.member !== undefined && quitting) {
        waiting.member.quitting = true;
      }
      waiting.resolve();
    }
    if (items.length === 0) return;
    this.#unsettled++;
    if (this.#settling) return;
    this.#settling = true;
    // After this turn: the drains of the lines just posted start first.
    queueMicrotask(async () => {
      await this.#pacer.settled();
      this.#settling = false;
      send({ t: "settled", count: this.#unsettled });
      this.#unsettled = 0;
    });
  }
}

let server: Server | WithWebSocket | undefined;
let link: RelayLink | undefined;

function start(message: Extract<ToWorker, { t: "start" }>): void {
  if (message.logLevel !== undefined) {
    configureSync({
      sinks: {
        main: (record: LogRecord) =>
          send({
            t: "log",
            record: {
              category: record.category,
              level: record.level,
              message: record.message,
              rawMessage: record.rawMessage,
              timestamp: record.timestamp,
              properties: record.properties,
            },
          }),
      },
      loggers: [
        {
          category: [LOG_CATEGORY],
          lowestLevel: message.logLevel,
          sinks: ["main"],
        },
        { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
      ],
    });
  }
  const { config } = message;
  if (config.mode === "broadcast" || config.mode === "chat") {
    link = new RelayLink();
  }
  try {
    server = listenersFor(config, {
      reusePort: true,
      counters: new Float64Array(
        message.counters,
        message.index * COUNTERS * Float64Array.BYTES_PER_ELEMENT,
        COUNTERS,
      ),
      open: new Int32Array(message.open),
      relay: link,
      worker: message.index,
    });
  } catch (error) {
    send({ t: "failed", error: describeError(error) });
    return;
  }
  // Once it serves as asked (a down fault that refuses: not listening).
  server.ready.then(
    () => send({ t: "listening" }),
    (error) => send({ t: "failed", error: describeError(error) }),
  );
  server.finished.then(() => send({ t: "finished" }));
}

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.t) {
    case "start":
      return start(message);
    case "deliver":
      return link?.deliver(message.items, message.acks);
    case "announce":
      server?.announceHere(message.text);
      return;
    case "reloadTls":
      server?.reloadTls(message.listen).then(
        () => send({ t: "reloaded", id: message.id }),
        (error) =>
          send({ t: "reloaded", id: message.id, error: describeError(error) }),
      );
      return;
    case "setFaults":
      server?.setFaults(message.faults).then(
        () => send({ t: "reloaded", id: message.id }),
        (error) =>
          send({ t: "reloaded", id: message.id, error: describeError(error) }),
      );
      return;
    case "unready":
      server?.unready();
      return;
    case "shutdown":
      server?.drain();
      return;
    case "abort":
      return server?.stop();
  }
};
