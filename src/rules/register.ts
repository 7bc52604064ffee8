/**
 * The rules register of one node: the rules document in force as a last-writer-wins register
 * (crdt/register.ts), changed by the admin API and the watched file, kept in the state store,
 * and replicated through the transport port as rules messages (crdt/codec.ts, kind 2).
 *
 * - A change (`change`) is validated as a whole and installed (./apply.ts), then gets a version
 *   greater than every version this node has seen, is stored, and is published.
 * - A received state (`receive`) greater than the current one is validated the same way and
 *   installed; an invalid one is refused (REPLICATION_RULES_INVALID) and the rules stay.
 * - Anti-entropy: every `beaconMs` the node publishes a small `have` message with its version.
 *   A node that sees a peer behind it publishes its whole state again; one that sees a peer
 *   ahead publishes its `have` at once (the peer then re-publishes). Both at most once per
 *   `minGapMs`. So a node that was away longer than the streams keep messages still gets the
 *   latest rules.
 *
 * Every change and every received state is applied in turn (one queue), so concurrent changes
 * never interleave between validation and installation. The hybrid clock's floor (`seen`) is
 * raised only by states this node installed, and a state more than MAX_AHEAD_MS ahead of this
 * node's clock is refused: a peer cannot push every later change out of the timestamp range.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  CodecError,
  compareStates,
  encodeRules,
  formatVersion,
  isLocalVersion,
  nextVersion,
  parseVersion,
  compareVersions,
  type RegisterState,
  type RegisterVersion,
  type RulesMessage,
} from '../../crdt/index.ts';
import type { Engine } from '../engine/engine.ts';
import { ConfigError, LimiterError, type ConfigProblem } from '../engine/errors.ts';
import type { RulesStore, StoredRules } from '../storage/ports.ts';
import { applyRules } from './apply.ts';
import { documentText, sha256 } from './document.ts';

/** How far ahead of this node's clock a replicated version may be (clock skew and hybrid increments stay far below). */
export const MAX_AHEAD_MS = 3_600_000;

export interface RulesRegisterOptions {
  engine: Engine;
  store: RulesStore;
  nodeId: string;
  now: () => number;
  logger: Logger;
  /** The state in force at start-up (./startup.ts), already installed in the engine. */
  initial: StoredRules;
  /** The parsed document of `initial`. */
  document: unknown;
  /** Publish the initial state when replication starts (a rules file edited since it was last applied). */
  publishInitial?: boolean;
  /** How often a `have` beacon is published (ms). Default 5000. */
  beaconMs?: number;
  /** Least time between two reactions to peers' beacons (ms). Default 1000. */
  minGapMs?: number;
}

/** Where rules messages are published (the transport, once replication is on). */
export interface RulesPublisher {
  publish(bytes: Uint8Array, msgId: string): Promise<void>;
  readonly connected: boolean;
}

export interface RulesStatus {
  version: string;
  /** When this node installed the current version (ms since epoch). */
  appliedAt: number;
  /** The hybrid clock's floor: the greatest version this node has installed (its own included). */
  seen: string;
  stats: RulesRegister['stats'];
  refusedByCode: Record<string, number>;
  lastRefused: string | null;
}

/** How a change names where it comes from (logs, problem `file`). */
export type ChangeSource = 'PUT /v1/rules' | 'PUT /v1/rules/:id' | 'DELETE /v1/rules/:id' | 'rules file' | 'API';

export class RulesRegister {
  private state: RegisterState<string>;
  private doc: unknown;
  private fileHash: string | null;
  private seen: RegisterVersion;
  private appliedAt: number;
  private queue: Promise<unknown> = Promise.resolve();
  private publisher: RulesPublisher | undefined;
  private unpublished: boolean;
  private timer: NodeJS.Timeout | undefined;
  private lastReaction = -Infinity;
  private seq = 0;
  private readonly bootId = randomBytes(6).toString('hex');
  private readonly beaconMs: number;
  private readonly minGapMs: number;
  private readonly o: RulesRegisterOptions;
  private lastRefused: string | null = null;
  private readonly refusedByCode: Record<string, number> = {};
  /** Listeners told of every installed version (metrics, tests). */
  private readonly listeners = new Set<(version: string) => void>();
  readonly stats = { changes: 0, received: 0, applied: 0, stale: 0, refused: 0, published: 0, republished: 0, beacons: 0, publishErrors: 0, storeErrors: 0 };

  constructor(opts: RulesRegisterOptions) {
    this.o = opts;
    const i = opts.initial;
    this.state = { version: i.version, digest: i.digest, value: i.document };
    this.doc = opts.document;
    this.fileHash = i.fileHash;
    this.seen = i.version;
    this.appliedAt = opts.now();
    this.unpublished = opts.publishInitial === true;
    this.beaconMs = opts.beaconMs ?? 5000;
    this.minGapMs = opts.minGapMs ?? 1000;
    this.save();
  }

  /** The rules in force: their version (opaque, an entity tag) and the document. */
  current(): { version: string; document: unknown } {
    return { version: formatVersion(this.state.version), document: structuredClone(this.doc) };
  }

  get version(): string {
    return formatVersion(this.state.version);
  }

  /** Told of every version installed from now on. Returns a function that stops it. */
  onChange(listener: (version: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Change the rules on this node: `mutate` gets a copy of the document in force and returns the
   * new one. Refused (rules unchanged) with RULES_VERSION_STALE when `ifMatch` is not the current
   * version, RULES_INVALID listing every problem, or whatever `mutate` throws.
   */
  change(mutate: (doc: unknown) => unknown, opts: { ifMatch?: string; source: ChangeSource; fileHash?: string }): Promise<{ version: string }> {
    return this.serial(async () => {
      if (opts.ifMatch !== undefined && !matches(opts.ifMatch, this.state.version)) {
        throw new LimiterError('RULES_VERSION_STALE', `If-Match ${opts.ifMatch} is not the current rules version ${this.version}`, { details: { version: this.version } });
      }
      let next: unknown;
      let text: string;
      try {
        next = mutate(structuredClone(this.doc));
        text = documentText(next, opts.source);
        await applyRules(this.o.engine, next, opts.source);
      } catch (err) {
        throw err instanceof ConfigError ? rulesInvalid(err.problems) : err;
      }
      const version = nextVersion(compareVersions(this.seen, this.state.version) >= 0 ? this.seen : this.state.version, this.o.now(), this.o.nodeId);
      if (opts.fileHash !== undefined) this.fileHash = opts.fileHash;
      this.install({ version, digest: sha256(text), value: text }, next);
      this.stats.changes++;
      this.o.logger.info({ version: this.version, source: opts.source, rules: ruleCount(next) }, 'rules changed');
      this.unpublished = true;
      void this.publishState();
      return { version: this.version };
    });
  }

  /** A rules message from the transport (decoded and checked against its channel). Never throws for a bad document: it is refused and counted. */
  receive(msg: RulesMessage): void {
    if (msg.what === 'have') {
      if (msg.origin !== this.o.nodeId) this.react(msg);
      return;
    }
    this.stats.received++;
    const incoming: RegisterState<string> = { version: msg.version, digest: msg.digest, value: msg.document! };
    void this.serial(async () => {
      if (compareStates(incoming, this.state) <= 0) {
        this.stats.stale++;
        return;
      }
      const file = `rules ${formatVersion(msg.version)} from ${msg.origin}`;
      try {
        // A version far ahead of this clock would hold every later change behind it.
        if (msg.version.ts > this.o.now() + MAX_AHEAD_MS) {
          throw new ConfigError([{ code: 'RULE_INVALID', file, path: '', message: `version timestamp ${msg.version.ts} is more than ${MAX_AHEAD_MS / 60_000} minutes ahead of this node's clock` }]);
        }
        if (sha256(incoming.value) !== incoming.digest) throw new ConfigError([{ code: 'RULE_INVALID', file, path: '', message: 'the document does not match its digest' }]);
        let doc: unknown;
        try {
          doc = JSON.parse(incoming.value);
        } catch {
          throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file, path: '', message: 'the document is not JSON' }], 'CONFIG_UNREADABLE');
        }
        await applyRules(this.o.engine, doc, file);
        this.install(incoming, doc);
        this.o.logger.info({ version: this.version, from: msg.origin, rules: ruleCount(doc) }, 'rules replicated from a peer applied');
      } catch (err) {
        this.refuse(err, msg);
      }
    }).catch((err: unknown) => this.o.logger.error({ err }, 'applying replicated rules failed'));
  }

  /** Publish through `publisher` from now on, and beacon every `beaconMs`. */
  start(publisher: RulesPublisher): void {
    this.publisher = publisher;
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.tick(), this.beaconMs).unref();
    void this.tick();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.publisher = undefined;
  }

  /** Resolves once every change and received state queued so far has been handled. */
  async settled(): Promise<void> {
    await this.queue.catch(() => {});
  }

  status(): RulesStatus {
    return {
      version: this.version,
      appliedAt: this.appliedAt,
      seen: formatVersion(this.seen),
      stats: { ...this.stats },
      refusedByCode: { ...this.refusedByCode },
      lastRefused: this.lastRefused,
    };
  }

  /** The rules file's content hash as last applied (start-up, watch). */
  get appliedFileHash(): string | null {
    return this.fileHash;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private install(state: RegisterState<string>, doc: unknown): void {
    this.state = state;
    this.doc = doc;
    if (compareVersions(state.version, this.seen) > 0) this.seen = state.version;
    this.appliedAt = this.o.now();
    this.stats.applied++;
    this.save();
    for (const l of this.listeners) l(this.version);
  }

  private save(): void {
    try {
      this.o.store.saveRules({ version: this.state.version, digest: this.state.digest, document: this.state.value, fileHash: this.fileHash });
    } catch (err) {
      // The rules are in force in memory and replicated; the next change or restart tries again.
      this.stats.storeErrors++;
      this.o.logger.error({ err }, 'cannot store the rules; they are in force but a restart would come back to the stored ones until a peer sends them again');
    }
  }

  private refuse(err: unknown, msg: RulesMessage): void {
    const code = 'REPLICATION_RULES_INVALID';
    this.stats.refused++;
    this.refusedByCode[code] = (this.refusedByCode[code] ?? 0) + 1;
    const problems = err instanceof ConfigError ? err.problems.map((p) => `${p.code} ${p.path}: ${p.message}`) : [String(err)];
    this.lastRefused = `${code}: ${formatVersion(msg.version)} from ${msg.origin}: ${problems.join('; ')}`;
    this.o.logger.warn({ code, origin: msg.origin, version: formatVersion(msg.version), problems }, 'refused replicated rules; the rules in force stay');
  }

  /** Anti-entropy: a peer's beacon. */
  private react(msg: RulesMessage): void {
    const at = this.o.now();
    // Beacons read back from the past (a catch-up) say nothing about the peer now; one from the
    // far future is not believed.
    if (at - msg.sentAt > 3 * this.beaconMs || msg.version.ts > at + MAX_AHEAD_MS) return;
    const c = compareStates({ version: msg.version, digest: msg.digest }, this.state);
    if (c === 0 || (c > 0 && isLocalVersion(msg.version)) || at - this.lastReaction < this.minGapMs) return;
    if (c < 0 && isLocalVersion(this.state.version)) return; // nothing replicated to offer
    this.lastReaction = at;
    if (c < 0) {
      this.stats.republished++;
      this.unpublished = true;
      void this.publishState();
    } else void this.publishHave();
  }

  private async tick(): Promise<void> {
    if (this.publisher?.connected !== true) return;
    if (this.unpublished) await this.publishState();
    else await this.publishHave();
  }

  private async publishState(): Promise<void> {
    if (isLocalVersion(this.state.version)) {
      this.unpublished = false;
      return;
    }
    const s = this.state;
    const ok = await this.send({ origin: this.o.nodeId, sentAt: this.o.now(), what: 'state', version: s.version, digest: s.digest, document: s.value });
    if (ok && this.state === s) this.unpublished = false;
    if (ok) this.stats.published++;
  }

  private async publishHave(): Promise<void> {
    const s = this.state;
    if (await this.send({ origin: this.o.nodeId, sentAt: this.o.now(), what: 'have', version: s.version, digest: s.digest, document: null })) this.stats.beacons++;
  }

  /** Publish one message; false (counted, retried by the next beacon) when it could not be. */
  private async send(m: RulesMessage): Promise<boolean> {
    const p = this.publisher;
    if (p === undefined || !p.connected) return false;
    try {
      await p.publish(encodeRules(m), `${this.o.nodeId}:rules:${this.bootId}:${++this.seq}`);
      return true;
    } catch (err) {
      this.stats.publishErrors++;
      if (!(err instanceof CodecError)) this.o.logger.warn({ err }, 'publishing the rules failed; retried with the next beacon');
      return false;
    }
  }
}

/** Whether an If-Match value names `version` (quoted or not, weak or not, or `*`). */
function matches(ifMatch: string, version: RegisterVersion): boolean {
  return ifMatch
    .split(',')
    .map((t) => t.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1'))
    .some((t) => {
      if (t === '*') return true;
      const v = parseVersion(t);
      return v !== undefined && compareVersions(v, version) === 0;
    });
}

/** RULES_INVALID carrying every problem as {code, path, message}. */
export function rulesInvalid(problems: readonly ConfigProblem[]): LimiterError {
  const list = problems.map((p) => ({ code: p.code, path: p.path, message: p.message }));
  return new LimiterError('RULES_INVALID', `the rules change was refused (${list.length} problem${list.length === 1 ? '' : 's'}); the rules in force are unchanged`, { details: { problems: list } });
}

function ruleCount(doc: unknown): number | undefined {
  const rules = (doc as { rules?: unknown } | null)?.rules;
  return Array.isArray(rules) ? rules.length : undefined;
}
