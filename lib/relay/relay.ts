// Private: the relay behind serveEcho's `broadcast` and `chat` modes: it
// delivers lines to members in rounds, in one order that every recipient
// sees. What a line means (who gets it, in what form) is the mode's rules,
// in lib/relay/broadcast.ts and lib/relay/chat.ts. Not exported from mod.ts.

import { setImmediate } from "node:timers";
import { Pacer } from "./pacer.ts";
import type { ClusterStatus } from "../types.ts";

const encoder = new TextEncoder();
/** What a sender hears when the shared log cannot take its line. */
const UNAVAILABLE = "cluster unavailable, line not sent";

/** Where a member's lines go: its connection's send queue. */
export interface Inbox {
  /** Queues `line`; `false` when the queue is full. */
  post(line: Uint8Array): boolean;
  /** Drops every later line: the last one posted is the last one sent. */
  seal(): void;
}

/**
 * Where the lines of many members of another thread go at once: the
 * relay's bridge to that thread (lib/relay/bridge.ts).
 */
export interface BulkInbox {
  /** Queues `line` for the members `ids` (a list it may keep). */
  postAll(ids: number[], line: Uint8Array): void;
}

/** A connected client, as the relay sees it. */
export interface Member {
  readonly peer: string;
  readonly out: Inbox;
  /**
   * For a client of another thread: the bulk inbox of its thread, and its
   * number there. A line for many such members goes once per thread.
   */
  readonly remote?: { inbox: BulkInbox; id: number };
  /** The common name of the client's verified certificate, if it sent one. */
  readonly certName?: string;
  /** Chat name; empty in broadcast mode. */
  name: string;
  /** Chat room; empty in broadcast mode. */
  room: string;
  /** Set by `/quit`: the connection should close once its queue is sent. */
  quitting: boolean;
  /** Closes the connection at once because its queue is full. */
  dropQueueFull(): void;
}

/**
 * Members the rules send to together (everyone, a chat room): a set whose
 * version changes with its membership, so that the relay can keep how it
 * splits the set between this thread and others until it changes.
 */
export class MemberGroup {
  readonly members: Set<Member>;
  #version = 0;

  constructor(members: Iterable<Member> = []) {
    this.members = new Set(members);
  }

  get version(): number {
    return this.#version;
  }

  get size(): number {
    return this.members.size;
  }

  has(member: Member): boolean {
    return this.members.has(member);
  }

  add(member: Member): void {
    if (this.members.has(member)) return;
    this.members.add(member);
    this.#version++;
  }

  delete(member: Member): boolean {
    if (!this.members.delete(member)) return false;
    this.#version++;
    return true;
  }
}

/** How a group splits: members here, and ids per other thread. */
interface Split {
  version: number;
  local: Member[];
  remote: [BulkInbox, number[]][];
}

/** One line to deliver, and how many bytes it may put in a queue. */
interface Task {
  bytes: number;
  run(): void;
}

/**
 * What happens in a relay, in the one order every replica of it applies:
 * members come and go, send lines, and the operator announces.
 */
export type RelayEvent =
  | { t: "join"; member: Member }
  | { t: "leave"; member: Member }
  | {
    t: "line";
    member: Member;
    /** A copy the relay may keep, with its ending if it had one. */
    line: Uint8Array;
    /** Called once the line is delivered (on the sender's own relay). */
    delivered?: () => void;
  }
  | { t: "announce"; text: string };

/**
 * Where a relay's events go, and where they come back from in the one
 * order: {@linkcode localBus} within this process; a shared log (Redis) for
 * relays on several machines, each applying every event, so that the rules
 * (names, rooms, history) come out the same on each.
 */
export interface Bus {
  /**
   * Appends `event` to the order. `false`: a line not taken (the shared log
   * is away and the lines held for it are at their limit).
   */
  publish(event: RelayEvent): boolean;
  /** Set by the relay: called with every event, in the one order. */
  deliver: ((event: RelayEvent) => void) | undefined;
  /**
   * Set by the relay: its state, for a shared log that lets a relay that
   * starts later begin from a snapshot rather than from the log's start
   * (which a bounded log does not keep).
   */
  replica?: Replica;
  /** Resolves once the bus carries events; rejects if it cannot. */
  readonly ready?: Promise<void>;
  /** Leaves the shared log: the last thing a relay does. */
  close?(): Promise<void>;
  /** The shared log's link, for metrics (a bus within the process has none). */
  status?(): Promise<ClusterStatus>;
}

/**
 * What a relay's state is after the events applied so far, as plain data:
 * its members by key, in the order they joined, and what its rules keep.
 */
export interface RelayState {
  members: string[];
  rules?: unknown;
}

/** A relay's state, saved and loaded by its {@linkcode Bus}. */
export interface Replica {
  /** Resolves once nothing waits to be delivered: the state is whole. */
  idle(): Promise<void>;
  /** The state, with each member named by `keyOf`. */
  save(keyOf: (member: Member) => string): RelayState;
  /** Takes `state` (before any event), with members made by `memberOf`. */
  load(state: RelayState, memberOf: (key: string) => Member): void;
}

/** The bus of a relay alone in its process: each event is next, at once. */
export function localBus(): Bus {
  const bus: Bus = {
    publish: (event) => {
      bus.deliver?.(event);
      return true;
    },
    deliver: undefined,
  };
  return bus;
}

/** Options of a {@linkcode Relay}. */
export interface RelayOptions {
  /** What lines mean (who gets them, in what form), made for this relay. */
  rules(fanout: Fanout): RelayRules;
  /** Most lines delivered between two moments when every writer is idle. */
  linesPerRound: number;
  /** Most bytes a round may add to one client's queue. */
  bytesPerRound: number;
  /**
   * Where events go and come back from, in order.
   *
   * @default {localBus()}
   */
  bus?: Bus;
  /** Called once for each line delivered to the members here. */
  relayed?: () => void;
}

/**
 * What the relay's members may do to each other, from the relay's side:
 * the members there are now, posting a line to one, and removing one.
 */
export interface Fanout {
  /** The members, in the order they joined. */
  readonly members: ReadonlySet<Member>;
  /** Every member, as a group. */
  readonly everyone: MemberGroup;
  /** Queues `line` for `member`, dropping it if its queue is full. */
  post(member: Member, line: Uint8Array): void;
  /**
   * Queues `line` for every member of `group`: for members of other
   * threads, once per thread rather than once per member.
   */
  postAll(group: MemberGroup, line: Uint8Array): void;
  /** Removes `member` at once, as `/quit` does; its queue is still sent. */
  remove(member: Member): void;
}

/**
 * What lines mean in a relay mode (lib/relay/broadcast.ts,
 * lib/relay/chat.ts). The relay calls `welcome`, `farewell` and `line` in
 * its rounds, in one order, and they post through the {@linkcode Fanout}
 * they were made with.
 */
export interface RelayRules {
  /**
   * Most bytes handling `line` may add to one member's queue; `welcome`
   * and `farewell` may add at most `noticeBytes`.
   */
  lineBytes(line: Uint8Array): number;
  /** Most bytes a join or a leave adds to one queue; 0 when it sends nothing. */
  readonly noticeBytes: number;
  /** What the rules keep (names, rooms, history), as plain data. */
  save?(keyOf: (member: Member) => string): unknown;
  /** Takes what `save` gave, on a relay that has applied no event yet. */
  load?(state: unknown, memberOf: (key: string) => Member): void;
  /**
   * `[server] text` as `member` reads it (chat's JSON protocol); without
   * it, every member gets that line of text.
   */
  serverLine?(member: Member, text: string): Uint8Array;
  /**
   * In a round: `[server] text` to every member, each as it reads it
   * (through the fan-out, so once per thread where they read alike);
   * without it, that line of text to everyone.
   */
  announce?(text: string): void;
  /** `ERR text` as `member` reads it; without it, that line of text. */
  errorLine?(member: Member, text: string): Uint8Array;
  /**
   * The relay is done: what the rules hold open (a file, a listener) is
   * closed.
   */
  close?(): void | Promise<void>;
  /** A member arrived (before its first round): name it. */
  join(member: Member): void;
  /** In a round, once `join` came: greet it and tell the others. */
  welcome(member: Member): void;
  /** A member is gone (before the round that tells the others). */
  leave(member: Member): void;
  /** In a round, once `leave` came: tell the others. */
  farewell(member: Member): void;
  /** In a round: what `member` sent, with its ending if it had one. */
  line(member: Member, line: Uint8Array): void;
  /**
   * On the sender's own relay, before a line joins the order (so once,
   * whatever the bus): whether it goes on, as it is or as another line
   * (a login, checked here, goes on without its password). Refused, the
   * sender alone gets `reply` and no other relay hears of it. The sender's
   * later lines wait for an answer that takes time.
   */
  admit?(member: Member, line: Uint8Array): Admission | Promise<Admission>;
}

/** What becomes of a line on its sender's relay (see RelayRules.admit). */
export type Admission =
  | { ok: true; line?: Uint8Array }
  | { ok: false; reply: Uint8Array };

/** What a sender hears when its line could not be judged. */
const NOT_JUDGED: Admission = {
  ok: false,
  reply: encoder.encode("ERR internal error, line not sent\n"),
};

/**
 * What a listener needs of a relay: the {@linkcode Relay} itself, or, in a
 * worker, a link to the relay on the main thread (see lib/workers/worker.ts).
 */
export interface RelayPort {
  /** Number of members. */
  readonly size: number;
  /** Resolves once nothing waits to be delivered. */
  idle(): Promise<void>;
  /** To be called by a member's outbox when its writer starts or stops. */
  writerBusy(writer: object, busy: boolean): void;
  /** To be called by a member's outbox when its socket took bytes. */
  writerProgress(): void;
  /** Adds a member; in chat, names it and puts it in the lobby. */
  join(member: Member): void;
  /** Removes a member; in chat, tells its room. */
  leave(member: Member): void;
  /**
   * Relays lines a member sent (each a copy the relay may keep, with its
   * ending if it had one), resolving once all of them are delivered.
   */
  submit(member: Member, lines: Uint8Array[]): Promise<void>;
  /**
   * Sends `[server] text` to every member, or to those `only` accepts,
   * resolving once it is in their queues. With `last`, nothing is sent to
   * them after it (the shutdown notice).
   */
  announce(
    text: string,
    only?: (member: Member) => boolean,
    last?: boolean,
  ): Promise<void>;
}

/** One thing to deliver, and how many bytes it may put in a queue. */
interface Task {
  bytes: number;
  run(): void;
}

/** How `group` splits between this thread and others, now. */
function splitGroup(group: MemberGroup): Split {
  const local: Member[] = [];
  const remote = new Map<BulkInbox, number[]>();
  for (const member of group.members) {
    if (member.remote === undefined) {
      local.push(member);
      continue;
    }
    const { inbox, id } = member.remote;
    const ids = remote.get(inbox);
    if (ids === undefined) remote.set(inbox, [id]);
    else ids.push(id);
  }
  return { version: group.version, local, remote: [...remote] };
}

/**
 * Resolves on the event loop's next turn, after what is ready now.
 * `setImmediate`, not `setTimeout(0)`: in Deno 2.9 a zero timer waits about
 * 2 ms (measured), a round's whole latency when lines are few.
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Delivers lines to members as its {@linkcode RelayRules} say, in one order
 * that every recipient sees.
 *
 * Delivery happens in rounds: at most `linesPerRound` lines, then a wait
 * until every member's writer has handed its batch to the socket, except
 * writers whose socket takes nothing (see {@linkcode Pacer}). A client that
 * reads therefore never holds more than two rounds in its queue, however
 * many clients talk at once and however busy the server is, while a client
 * that stops reading falls behind by a round each time and is dropped when
 * its queue is full. Senders wait for their lines to be delivered before
 * their next read, so a fast sender is paced by the relay rather than
 * filling its memory.
 */
export class Relay implements RelayPort {
  #options: RelayOptions;
  #rules: RelayRules;
  #bus: Bus;
  /** Every member, this relay's and (over a shared bus) other relays'. */
  #group = new MemberGroup();
  #members = this.#group.members;
  /** How each group the rules sent to splits (see postAll). */
  #splits = new WeakMap<MemberGroup, Split>();
  /** This relay's own members, from join() until leave(). */
  #local = new Set<Member>();
  #queue: Task[] = [];
  #head = 0;
  #pumping = false;
  #pacer = new Pacer();
  #idleWaiters: (() => void)[] = [];

  constructor(options: RelayOptions) {
    this.#options = options;
    this.#rules = options.rules({
      members: this.#members,
      everyone: this.#group,
      post: (member, line) => this.#post(member, line),
      postAll: (group, line) => this.#postAll(group, line),
      remove: (member) => this.#remove(member),
    });
    this.#bus = options.bus ?? localBus();
    this.#bus.deliver = (event) => this.#apply(event);
    this.#bus.replica = {
      idle: () => this.idle(),
      save: (keyOf) => ({
        members: [...this.#members].map(keyOf),
        rules: this.#rules.save?.(keyOf),
      }),
      load: (state, memberOf) => {
        for (const key of state.members) this.#group.add(memberOf(key));
        this.#rules.load?.(state.rules, memberOf);
      },
    };
  }

  /** Number of members. */
  get size(): number {
    return this.#members.size;
  }

  /** Resolves once the bus carries events (at once within a process). */
  get ready(): Promise<void> {
    return this.#bus.ready ?? Promise.resolve();
  }

  /** The bus's link to a shared log, if it has one. */
  status(): Promise<ClusterStatus> | undefined {
    return this.#bus.status?.();
  }

  /** Closes the bus, once everything waiting is delivered. */
  async close(): Promise<void> {
    await this.idle();
    await this.#bus.close?.();
    await this.#rules.close?.();
  }

  /** Resolves once nothing waits to be delivered. */
  idle(): Promise<void> {
    if (!this.#pumping) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** To be called by a member's outbox when its writer starts or stops. */
  writerBusy(writer: object, busy: boolean): void {
    this.#pacer.busy(writer, busy);
  }

  /** To be called by a member's outbox when its socket took bytes. */
  writerProgress(): void {
    this.#pacer.progress();
  }

  /**
   * A worker started writing a batch (`true`) or reports every writer of
   * that batch settled (`false`); see lib/workers/worker.ts.
   */
  remoteBusy(busy: boolean): void {
    this.#pacer.remoteBusy(busy);
  }

  /** Adds a member, and tells the others if the rules say so. */
  join(member: Member): void {
    this.#local.add(member);
    this.#bus.publish({ t: "join", member });
  }

  /** Removes a member, and tells the others if the rules say so. */
  leave(member: Member): void {
    if (!this.#local.delete(member)) return;
    this.#bus.publish({ t: "leave", member });
  }

  /**
   * Applies an event in the one order: membership at once (so that the
   * rules name a member in that order, the same on every relay), what it
   * sends in the relay's rounds.
   */
  #apply(event: RelayEvent): void {
    const rules = this.#rules;
    switch (event.t) {
      case "join": {
        const { member } = event;
        this.#group.add(member);
        rules.join(member);
        if (rules.noticeBytes === 0) return;
        this.#enqueue(rules.noticeBytes, () => {
          if (this.#members.has(member)) rules.welcome(member);
        });
        return;
      }
      case "leave": {
        const { member } = event;
        if (!this.#remove(member)) return;
        if (rules.noticeBytes === 0) return;
        this.#enqueue(rules.noticeBytes, () => rules.farewell(member));
        return;
      }
      case "line":
        this.#enqueue(rules.lineBytes(event.line), () => {
          rules.line(event.member, event.line);
          this.#options.relayed?.();
          event.delivered?.();
        });
        return;
      case "announce": {
        const line = encoder.encode(`[server] ${event.text}\n`);
        this.#enqueue(line.length, () => {
          if (rules.announce === undefined) {
            return this.#postAll(this.#group, line);
          }
          rules.announce(event.text);
        });
        return;
      }
    }
  }

  /** Drops `member`; `false` if it was not a member. */
  #remove(member: Member): boolean {
    if (!this.#group.delete(member)) return false;
    this.#rules.leave(member);
    return true;
  }

  /**
   * Relays lines a member sent (each a copy the relay may keep, with its
   * ending if it had one), resolving once all of them are delivered.
   */
  submit(member: Member, lines: Uint8Array[]): Promise<void> {
    if (lines.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#submit(member, lines, 0, resolve));
  }

  /** Admits and publishes `lines` from `from` on, in order. */
  #submit(
    member: Member,
    lines: Uint8Array[],
    from: number,
    resolve: () => void,
  ): void {
    const last = lines.length - 1;
    for (let i = from; i <= last; i++) {
      const delivered = i === last ? resolve : undefined;
      const admission = this.#rules.admit?.(member, lines[i]);
      if (admission instanceof Promise) {
        // The lines after it wait for its answer.
        admission.catch(() => NOT_JUDGED).then((answer) => {
          this.#admitted(member, lines[i], answer, delivered);
          if (i < last) this.#submit(member, lines, i + 1, resolve);
        });
        return;
      }
      this.#admitted(member, lines[i], admission, delivered);
    }
  }

  #admitted(
    member: Member,
    line: Uint8Array,
    admission: Admission | undefined,
    delivered: (() => void) | undefined,
  ): void {
    if (admission?.ok === false) {
      // After the lines before it, here: in the order the sender sent.
      const { reply } = admission;
      this.#enqueue(reply.length, () => {
        this.#post(member, reply);
        delivered?.();
      });
      return;
    }
    const event: RelayEvent = {
      t: "line",
      member,
      line: admission?.line ?? line,
      delivered,
    };
    if (!this.#bus.publish(event)) {
      // Told at once, and the sender's next lines wait for it.
      this.#post(
        member,
        this.#rules.errorLine?.(member, UNAVAILABLE) ??
          encoder.encode(`ERR ${UNAVAILABLE}\n`),
      );
      delivered?.();
    }
  }

  /**
   * Sends `[server] text` to every member, or to those `only` accepts,
   * resolving once it is in their queues. With `last`, nothing is sent to
   * them after it (the shutdown notice).
   */
  announce(
    text: string,
    only?: (member: Member) => boolean,
    last = false,
  ): Promise<void> {
    if (only === undefined && !last) {
      // For every member, wherever: in the one order.
      this.#bus.publish({ t: "announce", text });
      return this.idle();
    }
    // This relay's shutdown notice: for its own members, now.
    const line = encoder.encode(`[server] ${text}\n`);
    return new Promise((resolve) => {
      this.#enqueue(line.length, () => {
        for (const m of this.#members) {
          if (only !== undefined && !only(m)) continue;
          this.#post(m, this.#rules.serverLine?.(m, text) ?? line);
          if (last) m.out.seal();
        }
        resolve();
      });
    });
  }

  #enqueue(bytes: number, run: () => void): void {
    this.#queue.push({ bytes, run });
    if (!this.#pumping) this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    const { linesPerRound, bytesPerRound } = this.#options;
    while (this.#head < this.#queue.length) {
      // Let this turn's other lines (a burst of joins, many clients' lines)
      // arrive first, so that they go to each client in one write rather
      // than one write each.
      await nextTurn();
      let lines = 0;
      let bytes = 0;
      while (this.#head < this.#queue.length && lines < linesPerRound) {
        const task = this.#queue[this.#head];
        if (lines > 0 && bytes + task.bytes > bytesPerRound) break;
        this.#head++;
        lines++;
        bytes += task.bytes;
        task.run();
      }
      if (this.#head === this.#queue.length) {
        this.#queue = [];
        this.#head = 0;
      } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        // Amortised O(1) per task, however long the queue.
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      await this.#pacer.settled();
    }
    this.#pumping = false;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  #post(member: Member, line: Uint8Array): void {
    if (!member.out.post(line)) member.dropQueueFull();
  }

  #postAll(group: MemberGroup, line: Uint8Array): void {
    let split = this.#splits.get(group);
    if (split === undefined || split.version !== group.version) {
      split = splitGroup(group);
      this.#splits.set(group, split);
    }
    for (const member of split.local) this.#post(member, line);
    for (const [inbox, ids] of split.remote) inbox.postAll(ids, line);
  }
}
