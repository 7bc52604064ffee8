/**
 * The engine's state and its adapters' side: the rules in force with their adaptive signals
 * (./rules-in-force.ts: compiled, indexed, swapped whole), live keys and their eviction, and
 * what the adapters do with the counter stores (drain changes for persistence and replication,
 * merge remote cells, restore rows, sweep idle keys). Decisions are made by
 * `Engine` (src/engine/engine.ts), which extends it.
 *
 * No I/O, no clock: time is a parameter.
 */
import { NodeTable, type DrainResult, type ScopeId, type SlotEntry, type SlotWindowStore } from '../../crdt/index.ts';
import type { SignalState } from './adaptive.ts';
import type { CompiledLimit, CompiledRule } from './compile.ts';
import type { Degradation } from './degradation.ts';
import { Pulse } from './pulse.ts';
import { RulesInForce, type AdaptiveStatus } from './rules-in-force.ts';
import { NearLimitSharing, type SharingView } from './sharing.ts';
import { Signal } from './signal.ts';
import type { Decision, RulesConfig } from './types.ts';

export interface EngineOptions {
  /** This node's id (index 0 in the node table; the only node whose cells this engine raises). */
  nodeId: string;
  rules: RulesConfig;
  /** Cap on live keys (summed over all limits). Default 1 000 000. */
  maxKeys?: number;
  /** Random source for eviction sampling (injectable for tests). Default Math.random. */
  random?: () => number;
  /** How many slots ahead of the local clock a remote cell may be before it is held back. Default 1. */
  maxFutureSlots?: number;
}

export interface EngineStats {
  liveKeys: number;
  /** Keys evicted because the key cap was reached. */
  capEvictions: number;
  /** Checks of new keys denied because their rule held its `maxKeys`. */
  ruleKeyCapDenials: number;
  /** Checks denied by a rule in `share` mode (this node's share used) or `closed` mode while degraded. */
  degradedShareDenials: number;
  degradedClosedDenials: number;
  /** Checks denied by a rule's priority reserve (their priority is below it). */
  priorityReservedDenials: number;
  /** Checks a rule let through uncounted because of their priority (`bypass`). */
  priorityBypasses: number;
  /** Keys dropped because every slot had expired. */
  idleEvictions: number;
  /** Remote cells for scopes this node does not know (e.g. during a rules rollout). */
  unknownScopeCells: number;
  /** Remote cells held back because their slot is ahead of the local clock. */
  futureCellsHeld: number;
  /** Remote cells dropped because the hold-back buffer was full. */
  futureCellsDropped: number;
  /** Remote cells refused as impossible for an honest node, by reason. */
  refusedCells: Record<RemoteCellRefusal, number>;
  scopes: number;
}

const EVICTION_SAMPLES = 5;
const EVICTION_MAX_SAMPLES = 64;
const MAX_FUTURE_BUFFER = 100_000;
/** Keys near their limit, held until the shipper takes them (beyond this, they ship with the rest). */
const MAX_URGENT = 1024;

/**
 * Why a replicated cell is impossible for an honest node (so refused, counted, never merged):
 * - CELL_REFUND_EXCEEDS_ADMITTED: it gives back more than it admitted (n > p), which would
 *   lower the key's usage below what the others admitted;
 * - CELL_OVER_CAPACITY: its net count (p − n) is more than one node can admit in one slot;
 * - CELL_SLOT_AHEAD: its slot starts more than one window after this node's clock (held
 *   cells are only those within a window: a far-future cell would deny the key until then).
 * Since merging takes each component's maximum, accepted cells keep every merged cell within
 * the same bounds (CONSISTENCY.md §10).
 */
export const REMOTE_CELL_REFUSALS = {
  CELL_REFUND_EXCEEDS_ADMITTED: 'a replicated cell refunds more than it admitted (n > p)',
  CELL_OVER_CAPACITY: "a replicated cell's net count is more than one node can admit in one slot",
  CELL_SLOT_AHEAD: 'a replicated cell is for a slot more than one window ahead of this clock',
} as const;
export type RemoteCellRefusal = keyof typeof REMOTE_CELL_REFUSALS;

function remoteCellRefusal(cl: CompiledLimit, c: SlotEntry, current: number): RemoteCellRefusal | null {
  if (c.n > c.p) return 'CELL_REFUND_EXCEEDS_ADMITTED';
  if (c.p - c.n > cl.bound.maxSlotNet) return 'CELL_OVER_CAPACITY';
  if (c.slot > current + cl.store.ringSlots) return 'CELL_SLOT_AHEAD';
  return null;
}

/** Rules, counter stores, keys and signals; the adapters' side. `Engine` decides on top of it. */
export class EngineState {
  readonly nodeId: string;
  readonly nodes: NodeTable;
  /** The rules in force, compiled (./rules-in-force.ts). */
  protected readonly rules: RulesInForce;
  private readonly maxKeys: number;
  private readonly random: () => number;
  private readonly maxFutureSlots: number;
  protected liveKeys = 0;
  protected degradation: Degradation | null = null;
  protected sharing: NearLimitSharing | null = null;
  private syncWanted = false;
  private future: SlotEntry[] = [];
  /** Fired when own cells change (admission, refund): the shipper waits on it. */
  readonly ownChanged = new Signal();
  /** Fired by the replication room when it has handled a batch: checks waiting for their share decide again. */
  readonly peersProgress = new Pulse();
  /** Fired when an admission leaves a key at half its limit or more: shipped ahead of everything else. */
  readonly urgent = new Signal();
  private urgentKeys: { store: SlotWindowStore; key: string }[] = [];
  /** Per scope: the largest usage above the limit seen after merging remote cells, and until when it counts. */
  private readonly excess = new Map<ScopeId, { value: number; untilMs: number }>();
  readonly counters = {
    capEvictions: 0,
    ruleKeyCapDenials: 0,
    degradedShareDenials: 0,
    degradedClosedDenials: 0,
    /** Checks denied because only a rule's reserve was left and their priority is below it. */
    priorityReservedDenials: 0,
    /** Checks a rule let through uncounted because of their priority. */
    priorityBypasses: 0,
    idleEvictions: 0,
    unknownScopeCells: 0,
    futureCellsHeld: 0,
    futureCellsDropped: 0,
    /** Replicated cells refused as impossible for an honest node, by reason (see {@link REMOTE_CELL_REFUSALS}). */
    refusedCells: { CELL_REFUND_EXCEEDS_ADMITTED: 0, CELL_OVER_CAPACITY: 0, CELL_SLOT_AHEAD: 0 } as Record<RemoteCellRefusal, number>,
  };

  constructor(opts: EngineOptions) {
    this.nodeId = opts.nodeId;
    this.nodes = new NodeTable(opts.nodeId);
    this.maxKeys = opts.maxKeys ?? 1_000_000;
    this.random = opts.random ?? Math.random;
    this.maxFutureSlots = opts.maxFutureSlots ?? 1;
    this.rules = new RulesInForce(this.nodes, opts.rules, (keys) => (this.liveKeys -= keys));
  }

  /** The rules in force. */
  get rulesConfig(): RulesConfig {
    return this.rules.config;
  }

  /**
   * Replace the rules. Limits whose scope (rule id, algorithm, window, slot width) is unchanged
   * keep their counters; a changed `limit` value applies at once to the existing counts.
   */
  setRules(config: RulesConfig): void {
    this.rules.set(config);
  }

  /**
   * `setRules` that does not hold the event loop: compiled in slices while checks go on, then
   * swapped in at once; a compile overtaken by a later change is dropped.
   */
  setRulesAsync(config: RulesConfig): Promise<void> {
    return this.rules.setAsync(config);
  }

  /**
   * A load signal's new health in [0, 1] (1 healthy): the adaptive rules that follow it move
   * their factor (./adaptive.ts). Counts are kept; the new limits apply at once.
   */
  setSignal(name: string, health: number, now: number): SignalState {
    return this.rules.setSignal(name, health, now);
  }

  /** Every signal received, and each adaptive rule's factor and effective limits (for /v1/status). */
  adaptiveStatus(): AdaptiveStatus {
    return this.rules.adaptiveStatus();
  }

  /** The rule that applies to a request, or undefined. Highest priority match wins. */
  matchRule(key: string, metadata?: Readonly<Record<string, string>>): CompiledRule | undefined {
    return this.rules.match(key, metadata);
  }

  /**
   * Peers are stale or NATS is unreachable: rules apply their degradation mode with these
   * shares (src/engine/degradation.ts); null when every peer is fresh again. Set by the
   * replication room.
   */
  setDegradation(d: Degradation | null): void {
    this.degradation = d;
  }

  /** The degradation in force, or null. */
  get degraded(): Degradation | null {
    return this.degradation;
  }

  /**
   * While healthy, limits share their headroom near the limit using this view of the peers
   * (./sharing.ts); null (alone, or turned off) admits up to the limit as seen locally. Set by
   * the replication room.
   */
  setSharing(view: SharingView | null): void {
    this.sharing = view === null ? null : new NearLimitSharing(view, this.nodes);
  }

  /** Near-limit sharing counters (null when off). */
  get sharingCounters(): { waits: number; grants: number; keys: number } | null {
    return this.sharing === null ? null : { ...this.sharing.counters, keys: this.sharing.size };
  }

  /** A SHARE_WAIT: ask the shipper for a heartbeat, so the peers waiting too learn how far this node's counts go. */
  protected shareWait(d: Decision): Decision {
    this.syncWanted = true;
    this.ownChanged.fire();
    return d;
  }

  /** Whether a heartbeat was asked for since the last call (see shareWait). */
  takeSyncWanted(): boolean {
    const w = this.syncWanted;
    this.syncWanted = false;
    return w;
  }

  /** The compiled limit of a scope, if this node knows it. */
  scope(scope: ScopeId): CompiledLimit | undefined {
    return this.rules.scopes.get(scope);
  }

  // ---- adapters' side ----

  /** Take every change since the last drain, for both consumers (tests and tools). */
  drain(): DrainResult {
    const out: DrainResult = { rows: [], own: [] };
    for (const cl of this.rules.scopes.values()) if (cl.store.hasChanges) cl.store.drain(out);
    return out;
  }

  /** Every cell changed since the last drainRows (every node's): what persistence writes. */
  drainRows(): SlotEntry[] {
    const rows: SlotEntry[] = [];
    for (const cl of this.rules.scopes.values()) if (cl.store.hasRowChanges) cl.store.drainRows(rows);
    return rows;
  }

  /**
   * This node's own cells changed since the last drainOwn (admissions and refunds): what
   * replication ships. Keys near their limit that are still waiting come first.
   */
  drainOwn(): SlotEntry[] {
    const own = this.drainUrgent();
    for (const cl of this.rules.scopes.values()) if (cl.store.hasOwnChanges) cl.store.drainOwn(own);
    return own;
  }

  /** Own cells of the keys that reached half their limit or more since the last call (shipped with priority). */
  drainUrgent(): SlotEntry[] {
    const own: SlotEntry[] = [];
    if (this.urgentKeys.length === 0) return own;
    const keys = this.urgentKeys;
    this.urgentKeys = [];
    for (const { store, key } of keys) store.drainOwnKey(key, own);
    return own;
  }

  /** Ship these own cells again (their publish failed): the next drainOwn takes their keys' current values. */
  requeueOwn(cells: readonly SlotEntry[]): void {
    for (const c of cells) this.rules.scopes.get(c.scope)?.store.requeueOwn(c);
    if (cells.length > 0) this.ownChanged.fire();
  }

  /** Mark every own cell held to be shipped (after a restart from storage). Returns keys marked. */
  shipAllOwn(): number {
    let n = 0;
    for (const cl of this.rules.scopes.values()) n += cl.store.markAllOwnDirty();
    if (n > 0) this.ownChanged.fire();
    return n;
  }

  protected noteUrgent(store: SlotWindowStore, key: string): void {
    const last = this.urgentKeys.length > 0 ? this.urgentKeys[this.urgentKeys.length - 1] : undefined;
    // A hot key repeats: once in the list is enough (its cells are drained with their values then).
    if ((last === undefined || last.key !== key || last.store !== store) && this.urgentKeys.length < MAX_URGENT) this.urgentKeys.push({ store, key });
    this.urgent.fire();
  }

  /**
   * Merge cells received from other nodes (or replayed from a stream). Idempotent. Cells for
   * unknown scopes are counted and skipped; cells ahead of the local clock are held until it
   * catches up. Returns the number of cells that changed state.
   */
  applyRemote(cells: readonly SlotEntry[], now: number, onAdmitted?: (cl: CompiledLimit, node: string, increase: number, slot: number) => void): number {
    let changed = 0;
    for (let i = 0; i < cells.length; i++) {
      const c = cells[i];
      const cl = this.rules.scopes.get(c.scope);
      if (cl === undefined) {
        this.counters.unknownScopeCells++;
        continue;
      }
      const current = Math.floor(now / cl.math.slotMs);
      const refusal = remoteCellRefusal(cl, c, current);
      if (refusal !== null) {
        this.counters.refusedCells[refusal]++;
        continue;
      }
      if (c.slot > current + this.maxFutureSlots) {
        if (this.future.length < MAX_FUTURE_BUFFER) {
          this.future.push(c);
          this.counters.futureCellsHeld++;
        } else this.counters.futureCellsDropped++;
        continue;
      }
      const e = this.mergeInto(cl, c, current, now, true);
      if (e >= 0) {
        changed++;
        const increase = cl.store.lastMergeIncreaseP;
        if (increase > 0) {
          if (onAdmitted !== undefined) onAdmitted(cl, c.node, increase, c.slot);
          this.noteExcess(cl, e, now);
        }
      }
    }
    return changed;
  }

  /** Load rows from storage at start-up (not marked for persistence again). */
  restore(rows: Iterable<SlotEntry>, now: number): number {
    let n = 0;
    for (const c of rows) {
      const cl = this.rules.scopes.get(c.scope);
      if (cl === undefined) continue;
      const current = Math.floor(now / cl.math.slotMs);
      if (c.slot <= current - cl.store.ringSlots) continue;
      if (this.mergeInto(cl, c, current, now, false) >= 0) n++;
    }
    return n;
  }

  /** Merge one cell; the entry index when the state changed, else −1. */
  private mergeInto(cl: CompiledLimit, c: SlotEntry, current: number, now: number, markDirty: boolean): number {
    const store = cl.store;
    let e = store.find(c.key);
    if (e < 0) {
      if (c.slot <= current - store.ringSlots) return -1; // already expired here
      e = this.createEntry(cl, c.key, Math.min(c.slot, current), now);
    }
    const node = this.nodes.intern(c.node);
    return store.mergeCell(e, node, c.slot, c.p, c.n, markDirty) ? e : -1;
  }

  /** A merge raised a key's usage: remember how far above its limit it went (the overshoot actually seen). */
  private noteExcess(cl: CompiledLimit, e: number, now: number): void {
    const over = cl.math.usage(cl.store, e, now) - cl.math.capacity;
    if (over <= 0) return;
    const cur = this.excess.get(cl.scope);
    if (cur === undefined || cur.untilMs < now) this.excess.set(cl.scope, { value: over, untilMs: now + cl.spec.windowMs });
    else if (over >= cur.value) {
      cur.value = over;
      cur.untilMs = now + cl.spec.windowMs;
    }
  }

  /**
   * The largest usage above the limit that merging other nodes' counts revealed for any key of
   * `scope` within the last window (0 if none): the overshoot that actually happened.
   */
  observedExcess(scope: ScopeId, now: number): number {
    const cur = this.excess.get(scope);
    return cur === undefined || cur.untilMs < now ? 0 : cur.value;
  }

  /**
   * Periodic maintenance: drop keys whose slots have all expired (up to `budget` entries
   * scanned per limit) and apply held-back remote cells whose time has come.
   */
  sweep(now: number, budget = 10_000): number {
    let evicted = 0;
    for (const cl of this.rules.scopes.values()) {
      const n = cl.store.sweepIdle(Math.floor(now / cl.math.slotMs), budget);
      evicted += n;
    }
    this.liveKeys -= evicted;
    this.counters.idleEvictions += evicted;
    this.sharing?.sweep(now, (scope) => this.rules.scopes.get(scope)?.spec.windowMs);
    if (this.future.length > 0) {
      const held = this.future;
      this.future = [];
      this.applyRemote(held, now);
      this.counters.futureCellsHeld -= held.length - this.future.length;
    }
    return evicted;
  }

  stats(): EngineStats {
    return {
      liveKeys: this.liveKeys,
      capEvictions: this.counters.capEvictions,
      ruleKeyCapDenials: this.counters.ruleKeyCapDenials,
      degradedShareDenials: this.counters.degradedShareDenials,
      degradedClosedDenials: this.counters.degradedClosedDenials,
      priorityReservedDenials: this.counters.priorityReservedDenials,
      priorityBypasses: this.counters.priorityBypasses,
      idleEvictions: this.counters.idleEvictions,
      unknownScopeCells: this.counters.unknownScopeCells,
      futureCellsHeld: this.future.length,
      futureCellsDropped: this.counters.futureCellsDropped,
      refusedCells: { ...this.counters.refusedCells },
      scopes: this.rules.scopes.size,
    };
  }

  /** Every non-zero cell of every scope (full state; for tests, snapshots and rebuilds). */
  snapshot(): SlotEntry[] {
    const out: SlotEntry[] = [];
    for (const cl of this.rules.scopes.values()) for (const c of cl.store.snapshot()) out.push(c);
    return out;
  }

  /** All scopes (for storage expiry and metrics). */
  allScopes(): IterableIterator<CompiledLimit> {
    return this.rules.scopes.values();
  }

  // ---- keys and eviction ----

  protected createEntry(lim: CompiledLimit, key: string, slot: number, now: number, protect?: string): number {
    if (this.liveKeys >= this.maxKeys) this.evictOne(now, protect);
    this.liveKeys++;
    return lim.store.ensure(key, slot);
  }

  /**
   * Evict the least useful key: sample a few keys (like Redis' approximated LRU) and drop the
   * one with the lowest usage relative to its limit, breaking ties by the oldest activity. A
   * key at or over its limit is never chosen while a sampled key under its limit exists; the
   * sample grows up to 64 keys to find one.
   */
  private evictOne(now: number, protect?: string): void {
    const scopes = [...this.rules.scopes.values()].filter((s) => s.store.size > 0);
    if (scopes.length === 0) return;
    let best: CompiledLimit | undefined;
    let bestE = -1;
    let bestScore = Infinity;
    for (let i = 0; i < EVICTION_MAX_SAMPLES; i++) {
      const cl = pickWeighted(scopes, this.random);
      const e = cl.store.sampleLive(this.random);
      if (e < 0) continue;
      if (protect !== undefined && cl.store.keyOf(e) === protect) continue;
      const current = Math.floor(now / cl.math.slotMs);
      const lastActive = cl.store.headOf(e);
      cl.store.advance(e, current);
      const usage = cl.math.usage(cl.store, e, now);
      const ratio = usage / cl.math.capacity;
      const limited = ratio >= 1;
      // Lower is less useful: under-limit keys score in [0, 1), limited keys ≥ 2; older activity lowers the score slightly.
      const age = current - lastActive;
      const score = (limited ? 2 : ratio) - Math.min(age, 1000) * 1e-6;
      if (score < bestScore) {
        bestScore = score;
        best = cl;
        bestE = e;
      }
      // Under-limit keys score below 1, limited ones above 1.99 (age only breaks ties within a class).
      if (i + 1 >= EVICTION_SAMPLES && bestScore < 1.5) break;
    }
    if (best === undefined || bestE < 0) return;
    best.store.evict(bestE);
    this.liveKeys--;
    this.counters.capEvictions++;
  }
}


function pickWeighted(scopes: readonly CompiledLimit[], random: () => number): CompiledLimit {
  if (scopes.length === 1) return scopes[0];
  let total = 0;
  for (const s of scopes) total += s.store.size;
  let r = random() * total;
  for (const s of scopes) {
    r -= s.store.size;
    if (r < 0) return s;
  }
  return scopes[scopes.length - 1];
}

/** Let the event loop run (timers, I/O) before going on. */
