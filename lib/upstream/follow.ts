// Private: an upstream named by a host name, followed. The default engine
// looks the name up at each connect (Deno.connect); the native engine's
// loops connect to an address, so the server looks the name up again every
// FOLLOW_MS, as a proxy in front of a service whose address changes (a
// container restarted, a DNS record moved) must, and tells the loops when
// the address changes. Not exported from mod.ts.

import { lookup } from "node:dns/promises";

/** How often the name is looked up again. */
export const FOLLOW_MS = 2000;

/**
 * How a name is looked up: getaddrinfo() through node:dns, off the calling
 * thread, in the order the system ranks the addresses (/etc/hosts, DNS).
 * A test swaps `lookup` to move a name between two local addresses.
 */
export const resolver = {
  lookup: async (name: string): Promise<string> =>
    (await lookup(name, { verbatim: true })).address,
};

/** What the follower says. */
export interface FollowHooks {
  /**
   * The name now gives `address` (it gave `was`); the next lookup waits
   * for what this returns.
   */
  moved(address: string, was: string): void | Promise<void>;
  /** A lookup failed (the last address stays): say so, once a streak. */
  failed(reason: string): void;
}

/** Looks `name` up every FOLLOW_MS until stopped. */
export class UpstreamFollower {
  #name: string;
  #address: string;
  #hooks: FollowHooks;
  #timer: ReturnType<typeof setInterval>;
  #looking: Promise<void> | undefined;
  /** A lookup, or what it called for, is under way. */
  #busy = false;
  #failing = false;
  #stopped = false;

  /** `address`: what `name` gave at the start. */
  constructor(name: string, address: string, hooks: FollowHooks) {
    this.#name = name;
    this.#address = address;
    this.#hooks = hooks;
    this.#timer = setInterval(() => this.#look(), FOLLOW_MS);
  }

  /** What the name gave last. */
  get address(): string {
    return this.#address;
  }

  #look(): void {
    if (this.#busy || this.#stopped) return;
    this.#busy = true;
    const lookup = resolver.lookup(this.#name).then(
      (address) => ({ address }),
      (error: Error) => ({ error }),
    );
    // What stop() waits for: the lookup, not what is done with it.
    this.#looking = lookup.then(() => {});
    lookup.then(async (result) => {
      if (this.#stopped) return;
      if ("error" in result) {
        if (!this.#failing) this.#hooks.failed(result.error.message);
        this.#failing = true;
        return;
      }
      this.#failing = false;
      if (result.address === this.#address) return;
      // Taken once the hook is done, so that a hook that failed is
      // called again at the next lookup.
      await this.#hooks.moved(result.address, this.#address);
      this.#address = result.address;
    }).catch(() => {
      // A hook that failed: the next lookup tries again.
    }).finally(() => this.#busy = false);
  }

  /** Stops following, once a lookup under way has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#looking;
  }
}
