/**
 * A last-writer-wins register, the CRDT of the rules document (CONSISTENCY.md §13).
 *
 * Every accepted state carries a version (timestamp, node). States are ordered by timestamp,
 * then node id, then the digest of their value: a total order, so `mergeRegister` (keep the
 * greater) is commutative, associative and idempotent, and every replica that has seen the
 * same states holds the same one, whatever the order, duplication or delay of delivery.
 *
 * The timestamp follows a hybrid-clock rule (`nextVersion`): a node's next version is greater
 * than every version it has seen, its own included, even when its clock is behind. A version
 * with timestamp 0 is a node's local starting point (its rules file, never replicated): any
 * replicated version is greater.
 *
 * Pure: the clock reading and the digest are the caller's parameters.
 */

/** Version of a register state. */
export interface RegisterVersion {
  /** Milliseconds since the epoch (hybrid: never below a version already seen). 0: local start. */
  ts: number;
  /** Node that made the change. */
  node: string;
}

/** One state of the register: a value with its version and the digest of its value. */
export interface RegisterState<T> {
  version: RegisterVersion;
  /** Digest of `value` (tie-break between equal versions, and a cheap equality check). */
  digest: string;
  value: T;
}

/** Total order of versions: timestamp, then node id (code-unit order). */
export function compareVersions(a: RegisterVersion, b: RegisterVersion): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1;
  if (a.node === b.node) return 0;
  return a.node < b.node ? -1 : 1;
}

/** Total order of states: version, then digest. Equal only for the same version and value. */
export function compareStates(a: Pick<RegisterState<unknown>, 'version' | 'digest'>, b: Pick<RegisterState<unknown>, 'version' | 'digest'>): number {
  const c = compareVersions(a.version, b.version);
  if (c !== 0) return c;
  if (a.digest === b.digest) return 0;
  return a.digest < b.digest ? -1 : 1;
}

/** The merge of two states: the greater one (commutative, associative, idempotent). */
export function mergeRegister<T>(a: RegisterState<T>, b: RegisterState<T>): RegisterState<T> {
  return compareStates(a, b) >= 0 ? a : b;
}

/**
 * The version of a change made by `node` at clock reading `now`, after having seen `seen`:
 * greater than `seen` even if the clock is behind it (hybrid logical clock).
 */
export function nextVersion(seen: RegisterVersion | undefined, now: number, node: string): RegisterVersion {
  const floor = seen === undefined ? 1 : seen.ts + 1;
  return { ts: Math.max(Math.floor(now), floor, 1), node };
}

/** Whether a version is a node's local starting point (never replicated). */
export function isLocalVersion(v: RegisterVersion): boolean {
  return v.ts === 0;
}

/** A version as an opaque string (`<ts>.<node>`), usable as an HTTP entity tag. */
export function formatVersion(v: RegisterVersion): string {
  return `${v.ts}.${v.node}`;
}

/** Reads `formatVersion`'s output; undefined for anything else. */
export function parseVersion(s: string): RegisterVersion | undefined {
  const dot = s.indexOf('.');
  if (dot <= 0) return undefined;
  const digits = s.slice(0, dot);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(digits)) return undefined;
  const ts = Number(digits);
  if (!Number.isSafeInteger(ts)) return undefined;
  return { ts, node: s.slice(dot + 1) };
}
