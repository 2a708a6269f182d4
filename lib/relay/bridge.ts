// Private: the relay on the calling thread, as seen by the clients of one
// other thread (a Web Worker of the pool, lib/workers/, or a loop of the
// native engine, lib/native/): the thread names its clients by number and
// sends their joins, leaves, lines and announcements; the bridge makes each
// a member of the relay here and sends back what the relay delivers to
// them, batched once a turn, with the acknowledgements of their lines. The
// thread reports each batch settled once its writers are idle or stuck,
// which paces the relay's rounds as local writers do. Not exported from
// mod.ts.

import type { BulkInbox, Inbox, Member, Relay } from "./relay.ts";

/** One delivery: a line and the ids of the thread's members it goes to. */
export type Delivery = [ids: number[], line: Uint8Array];

/** What the bridge sends the thread: a batch of deliveries and acks. */
export interface DeliverMessage {
  t: "deliver";
  items: Delivery[];
  /** Finished submits and announcements: `[token, quitting]`. */
  acks: [token: number, quitting: boolean][];
}

/** What a thread sends the relay through its bridge. */
export type RelayMessage =
  | { t: "join"; id: number; peer: string; certName?: string }
  | { t: "leave"; id: number }
  | { t: "submit"; id: number; token: number; lines: Uint8Array[] }
  | {
    t: "announce";
    token: number;
    text: string;
    /** Only to this thread's members. */
    local: boolean;
    /** Nothing to them after it. */
    last: boolean;
  }
  /** The thread's writers are idle after `count` more deliveries. */
  | { t: "settled"; count: number };

/** A client of another thread, as the relay here sees it. */
class RemoteMember implements Member {
  readonly bridge: RelayBridge;
  readonly peer: string;
  readonly certName: string | undefined;
  readonly out: Inbox;
  readonly remote: { inbox: BulkInbox; id: number };
  name = "";
  room = "";
  quitting = false;

  constructor(
    bridge: RelayBridge,
    id: number,
    peer: string,
    certName: string | undefined,
  ) {
    this.bridge = bridge;
    this.peer = peer;
    this.certName = certName;
    this.remote = { inbox: bridge, id };
    this.out = {
      post: (line) => bridge.sealed(id) || bridge.deliver(id, line),
      seal: () => bridge.seal(id),
    };
  }

  dropQueueFull(): void {
    // The thread drops its own clients: their queues are there.
  }
}

/** The relay's side of one thread's clients. */
export class RelayBridge implements BulkInbox {
  #relay: Relay;
  #send: (message: DeliverMessage) => void;
  #members = new Map<number, RemoteMember>();
  #items: Delivery[] = [];
  #acks: [number, boolean][] = [];
  #flushing = false;
  /** Deliveries sent that the thread has not reported settled. */
  #unsettled = 0;
  #done = false;
  /** Members that get nothing more (after the shutdown notice). */
  #sealed = new Set<number>();
  /** Lists of ids made by `deliver`, which may grow. */
  #own = new WeakSet<number[]>();

  /** A bridge to the thread that `send` posts to. */
  constructor(relay: Relay, send: (message: DeliverMessage) => void) {
    this.#relay = relay;
    this.#send = send;
  }

  /** Queues `line` for member `id`; sent with this turn's other lines. */
  deliver(id: number, line: Uint8Array): boolean {
    const last = this.#items.at(-1);
    // Only a list made here grows: postAll's are the relay's, shared.
    if (last !== undefined && last[1] === line && this.#own.has(last[0])) {
      last[0].push(id);
    } else {
      const ids = [id];
      this.#own.add(ids);
      this.#items.push([ids, line]);
    }
    this.#scheduleFlush();
    return true;
  }

  /** Queues `line` for the members `ids` (a list shared, not changed). */
  postAll(ids: number[], line: Uint8Array): void {
    const to = this.#sealed.size === 0
      ? ids
      : ids.filter((id) => !this.#sealed.has(id));
    this.#items.push([to, line]);
    this.#scheduleFlush();
  }

  /** Member `id` gets nothing after what it has been sent. */
  seal(id: number): void {
    this.#sealed.add(id);
  }

  sealed(id: number): boolean {
    return this.#sealed.has(id);
  }

  /** Takes a message from the thread. */
  receive(message: RelayMessage): void {
    const relay = this.#relay;
    switch (message.t) {
      case "join": {
        const member = new RemoteMember(
          this,
          message.id,
          message.peer,
          message.certName,
        );
        this.#members.set(message.id, member);
        relay.join(member);
        return;
      }
      case "leave": {
        const member = this.#members.get(message.id);
        if (member === undefined) return;
        this.#members.delete(message.id);
        relay.leave(member);
        return;
      }
      case "submit": {
        const member = this.#members.get(message.id);
        if (member === undefined) return this.#ack(message.token, true);
        relay.submit(member, message.lines).then(() =>
          this.#ack(message.token, member.quitting)
        );
        return;
      }
      case "announce": {
        const only = message.local
          ? (m: Member) => m instanceof RemoteMember && m.bridge === this
          : undefined;
        relay.announce(message.text, only, message.last).then(() =>
          this.#ack(message.token, false)
        );
        return;
      }
      case "settled":
        this.#unsettled -= message.count;
        if (this.#unsettled === 0) relay.remoteBusy(false);
        return;
    }
  }

  /** Whether `member` is one of this thread's clients. */
  has(member: Member): boolean {
    return member instanceof RemoteMember && member.bridge === this;
  }

  /**
   * The thread is gone, or going: its clients leave (`forget`), and the
   * relay stops waiting for its writers.
   */
  close(forget: boolean): void {
    this.#done = true;
    if (this.#unsettled > 0) {
      this.#unsettled = 0;
      this.#relay.remoteBusy(false);
    }
    if (!forget) return;
    for (const member of this.#members.values()) this.#relay.leave(member);
    this.#members.clear();
  }

  #ack(token: number, quitting: boolean): void {
    this.#acks.push([token, quitting]);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    // After the relay's current round, which may post many lines.
    queueMicrotask(() => {
      this.#flushing = false;
      const items = this.#items;
      const acks = this.#acks;
      this.#items = [];
      this.#acks = [];
      if (this.#done) return;
      if (items.length > 0 && this.#unsettled++ === 0) {
        this.#relay.remoteBusy(true);
      }
      this.#send({ t: "deliver", items, acks });
    });
  }
}
