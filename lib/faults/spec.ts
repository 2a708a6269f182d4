// Private: faults as data (issue 23): the typed spec of each fault, the one
// check every way in goes through (serveEcho's `faults`, a JSON file, the
// control API), and the command line's `NAME:PARAM=VALUE,…` form. Free of
// I/O. What a fault does to bytes is lib/faults/pipe.ts. Not exported from
// mod.ts.

import { optionError } from "../_helpers.ts";
import type { FaultSpec } from "../types.ts";
import { addressList, cidrProblem } from "../rules/cidr.ts";

/** Which bytes a fault acts on: what the server receives, or sends. */
export type FaultDirection = "receive" | "send";

/** What every fault has: its name, its direction, and whom it hits. */
export interface FaultCommon {
  /** Unique among the faults (the control API's handle); its kind by default. */
  name: string;
  /** The directions it acts on. */
  directions: FaultDirection[];
  /** The fraction of connections (or datagrams' clients) it hits, 0 to 1. */
  rate: number;
  /** Clients it hits, as CIDRs; everyone when empty. */
  clients: string[];
}

/** A fault on a byte stream, by kind, with its parameters. */
export type StreamFault =
  & FaultCommon
  & (
    /** Each chunk later by `ms` plus a jitter, in order. */
    | {
      kind: "latency";
      ms: number;
      jitter: number;
      distribution: "uniform" | "normal";
    }
    /** At most `bytesPerSecond`, nothing dropped. */
    | { kind: "bandwidth"; bytesPerSecond: number }
    /** Pieces of `size` bytes (± `sizeJitter`), `delayMs` apart. */
    | { kind: "slicer"; size: number; sizeJitter: number; delayMs: number }
    /** After `bytes`, a clean close (FIN). */
    | { kind: "limit"; bytes: number }
    /** After `bytes` (or `afterMs` from the start), a reset (RST). */
    | { kind: "reset"; bytes: number | undefined; afterMs: number | undefined }
    /** After `bytes`, nothing more either way; closed after `forMs` (or never). */
    | { kind: "hang"; bytes: number; forMs: number | undefined }
    /** The close held back `ms`. */
    | { kind: "slow_close"; ms: number }
  );

/** A fault at the door: new connections closed at once, or not accepted. */
export type DoorFault = FaultCommon & {
  kind: "down";
  how: "close" | "refuse";
};

/** A fault on datagrams, each with its probability. */
export type DatagramFault =
  & FaultCommon
  & (
    | { kind: "drop"; probability: number }
    | { kind: "duplicate"; probability: number }
    /** A datagram held back while up to `window` others pass it. */
    | { kind: "reorder"; probability: number; window: number }
    /** One bit flipped. */
    | { kind: "corrupt"; probability: number }
  );

/** Any fault, checked. */
export type Fault = StreamFault | DoorFault | DatagramFault;

/** The kinds of fault, and which part of the server each belongs to. */
export const FAULT_KINDS = {
  latency: "stream",
  bandwidth: "stream",
  slicer: "stream",
  limit: "stream",
  reset: "stream",
  hang: "stream",
  slow_close: "stream",
  down: "door",
  drop: "datagram",
  duplicate: "datagram",
  reorder: "datagram",
  corrupt: "datagram",
} as const;
/** A kind of fault. */
export type FaultKind = keyof typeof FAULT_KINDS;

/** Whether `fault` acts on a byte stream. */
export function isStream(fault: Fault): fault is StreamFault {
  return FAULT_KINDS[fault.kind] === "stream";
}

/** Whether `fault` acts on datagrams. */
export function isDatagram(fault: Fault): fault is DatagramFault {
  return FAULT_KINDS[fault.kind] === "datagram";
}

/** Whether `fault` closes new connections at once (`down`, `close`). */
export function isDownClose(fault: Fault): boolean {
  return fault.kind === "down" && fault.how === "close";
}

/**
 * Whether `fault`'s `clients` hold a client (an IP address; undefined for
 * a Unix socket's, which no CIDR holds): everyone when it names none.
 */
export function clientTest(
  fault: Fault,
): (client: string | undefined) => boolean {
  if (fault.clients.length === 0) return () => true;
  const list = addressList(fault.clients);
  return (client) => client !== undefined && list.match(client) !== undefined;
}

/**
 * Throws unless the datagram faults among `faults` have replies to act on
 * (`udp`): an option error naming the first.
 */
export function assertDatagramFaults(faults: readonly Fault[], udp: boolean) {
  const at = faults.findIndex(isDatagram);
  if (at === -1 || udp) return;
  throw optionError(
    "faults",
    `faults[${at}]: ${faults[at].kind} acts on UDP replies: give udp`,
    TypeError,
  );
}

/**
 * `fault` as a spec gives it (`direction` instead of `directions`, no
 * parameter left undefined): what a control API shows, and what
 * {@linkcode checkFault} takes back as it is.
 */
export function specOf(fault: Fault): FaultSpec {
  const { directions, ...rest } = fault;
  const spec: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(rest)) {
    if (value !== undefined) spec[key] = value;
  }
  spec.direction = directions.length === 2 ? "both" : directions[0];
  return spec as unknown as FaultSpec;
}

/** Each kind's own parameters: required, with a default, or optional. */
const PARAMETERS: Record<FaultKind, Record<string, Parameter>> = {
  latency: {
    ms: { type: "ms", required: true },
    jitter: { type: "ms", default: 0 },
    distribution: { type: ["uniform", "normal"], default: "uniform" },
  },
  bandwidth: { bytesPerSecond: { type: "positive", required: true } },
  slicer: {
    size: { type: "positive", required: true },
    sizeJitter: { type: "count", default: 0 },
    delayMs: { type: "ms", default: 0 },
  },
  limit: { bytes: { type: "count", required: true } },
  reset: { bytes: { type: "count" }, afterMs: { type: "ms" } },
  hang: { bytes: { type: "count", default: 0 }, forMs: { type: "ms" } },
  slow_close: { ms: { type: "ms", required: true } },
  down: { how: { type: ["close", "refuse"], default: "close" } },
  drop: { probability: { type: "fraction", required: true } },
  duplicate: { probability: { type: "fraction", required: true } },
  reorder: {
    probability: { type: "fraction", required: true },
    window: { type: "positive", default: 4 },
  },
  corrupt: { probability: { type: "fraction", required: true } },
};

/** What a parameter takes. */
interface Parameter {
  /**
   * `ms`: whole milliseconds, 0 to 2^31 - 1; `count`: a whole number from
   * 0; `positive`: from 1; `fraction`: 0 to 1; a list: one of its words.
   */
  type: "ms" | "count" | "positive" | "fraction" | readonly string[];
  required?: boolean;
  default?: number | string;
}

/** The parameters every fault takes besides its own. */
const COMMON = ["name", "direction", "rate", "clients"] as const;

/**
 * Checks a whole fault spec (a list of faults, as a JSON file or
 * `serveEcho({ faults })` gives it) and returns it with every default
 * filled in.
 *
 * @throws {TypeError} a fault is not what it should be; the message names
 * the fault (`faults[1]`) and the field.
 */
export function checkFaults(spec: unknown): Fault[] {
  if (!Array.isArray(spec)) {
    throw optionError("faults", "must be a list of faults", TypeError);
  }
  const faults = spec.map((entry, i) => checkFault(entry, `faults[${i}]`));
  const names = new Set<string>();
  for (const [i, fault] of faults.entries()) {
    if (names.has(fault.name)) {
      throw optionError(
        "faults",
        `faults[${i}].name: ${fault.name} is taken by an earlier fault ` +
          "(give each of the same kind a name)",
        TypeError,
      );
    }
    names.add(fault.name);
  }
  return faults;
}

/** One fault of a spec, checked, its defaults filled in; `at` names it. */
export function checkFault(entry: unknown, at = "fault"): Fault {
  const bad = (field: string, reason: string) =>
    optionError("faults", `${at}.${field}: ${reason}`, TypeError);
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw optionError("faults", `${at}: must be an object`, TypeError);
  }
  const fields = entry as Record<string, unknown>;
  const { kind } = fields;
  if (typeof kind !== "string" || !Object.hasOwn(FAULT_KINDS, kind)) {
    throw bad(
      "kind",
      `must be one of ${Object.keys(FAULT_KINDS).join(", ")}, got ${
        JSON.stringify(kind)
      }`,
    );
  }
  const own = PARAMETERS[kind as FaultKind];
  for (const field of Object.keys(fields)) {
    if (field === "kind" || (COMMON as readonly string[]).includes(field)) {
      continue;
    }
    if (!Object.hasOwn(own, field)) {
      const known = [...Object.keys(own), ...COMMON];
      throw bad(
        field,
        `${kind} has no such parameter (it takes ${known.join(", ")})`,
      );
    }
  }
  const checked: Record<string, unknown> = { kind };
  for (const [field, parameter] of Object.entries(own)) {
    const value = fields[field] ?? parameter.default;
    if (value === undefined) {
      if (parameter.required) throw bad(field, "is required");
      checked[field] = undefined;
      continue;
    }
    const problem = parameterProblem(parameter, value);
    if (problem !== undefined) throw bad(field, problem);
    checked[field] = value;
  }
  if (
    kind === "reset" && checked.bytes === undefined &&
    checked.afterMs === undefined
  ) {
    throw bad("bytes", "reset needs bytes or afterMs");
  }
  const { name = kind, direction = "both", rate = 1, clients = [] } = fields;
  if (typeof name !== "string" || !/^[\w.-]{1,64}$/.test(name)) {
    throw bad("name", "must be 1 to 64 letters, digits, _, . or -");
  }
  if (!["receive", "send", "both"].includes(direction as string)) {
    throw bad(
      "direction",
      `must be receive, send or both, got ${JSON.stringify(direction)}`,
    );
  }
  const fraction = parameterProblem({ type: "fraction" }, rate);
  if (fraction !== undefined) throw bad("rate", fraction);
  if (!Array.isArray(clients) || clients.some((c) => typeof c !== "string")) {
    throw bad("clients", "must be a list of CIDRs");
  }
  for (const cidr of clients as string[]) {
    const problem = cidrProblem(cidr);
    if (problem !== undefined) throw bad("clients", problem);
  }
  if (
    kind === "down" && checked.how === "refuse" &&
    ((clients as string[]).length > 0 || rate !== 1)
  ) {
    throw bad(
      "how",
      "refuse stops the listener for everyone: give it no clients and no rate",
    );
  }
  return {
    ...checked,
    name,
    directions: direction === "both"
      ? ["receive", "send"]
      : [direction as FaultDirection],
    rate,
    clients,
  } as Fault;
}

/** What is wrong with `value` for `parameter`, if anything. */
function parameterProblem(
  parameter: Parameter,
  value: unknown,
): string | undefined {
  const { type } = parameter;
  if (typeof type !== "string") {
    return type.includes(value as string)
      ? undefined
      : `must be one of ${type.join(", ")}, got ${JSON.stringify(value)}`;
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return `must be a number, got ${JSON.stringify(value)}`;
  }
  switch (type) {
    case "fraction":
      return value >= 0 && value <= 1
        ? undefined
        : `must be from 0 to 1, got ${value}`;
    case "ms":
      return Number.isInteger(value) && value >= 0 && value <= 2 ** 31 - 1
        ? undefined
        : `must be whole milliseconds from 0 to 2147483647, got ${value}`;
    case "count":
      return Number.isSafeInteger(value) && value >= 0
        ? undefined
        : `must be a whole number from 0, got ${value}`;
    case "positive":
      return Number.isSafeInteger(value) && value >= 1
        ? undefined
        : `must be a whole number from 1, got ${value}`;
  }
}

/**
 * One `--fault` flag's fault: `KIND[:PARAM=VALUE,…]`, numbers as numbers
 * and `clients` as CIDRs joined by `+` (`latency:ms=100,jitter=20`,
 * `reset:bytes=1024,rate=0.5,clients=10.0.0.0/8+192.0.2.0/24`). Checked
 * as {@linkcode checkFault} checks a spec's.
 *
 * @throws {TypeError} the text is not such a fault; the message says why.
 */
export function parseFault(text: string): Fault {
  const fields = faultFields(text);
  return checkFault(fields, String(fields.kind));
}

/**
 * The fields of one `--fault` flag's text (see {@linkcode parseFault}), as
 * a spec's entry has them, checked.
 *
 * @throws {TypeError} the text is not such a fault; the message says why.
 */
export function faultFields(text: string): Record<string, unknown> {
  const colon = text.indexOf(":");
  const kind = colon === -1 ? text : text.slice(0, colon);
  const fields: Record<string, unknown> = { kind };
  if (colon !== -1) {
    for (const pair of text.slice(colon + 1).split(",")) {
      const eq = pair.indexOf("=");
      if (eq < 1) {
        throw optionError(
          "faults",
          `${kind}: expected PARAM=VALUE, got ${JSON.stringify(pair)}`,
          TypeError,
        );
      }
      const field = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      fields[field] = field === "clients"
        ? value.split("+")
        : /^-?\d+(\.\d+)?$/.test(value)
        ? Number(value)
        : value;
    }
  }
  checkFault(fields, kind);
  return fields;
}
