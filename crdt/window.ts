/**
 * Slot windows of PN-counters, for many keys of one scope (one rule limit).
 *
 * For each key the store keeps a ring of `ringSlots` slots ending at the key's head slot.
 * Each slot holds one PN-counter: per node a `p` (admitted cost) and an `n` (refunded cost).
 * The store also keeps, per slot, the total Σ over nodes of (p − n), and per key the running
 * sum of those totals over the ring, so reading a key's usage is O(1) in keys, nodes and slots.
 *
 * Layout: keys are mapped to dense entry indices; per-entry numbers live in typed arrays
 * (a "slab"), so a key with only local contributions costs a few dozen bytes besides its
 * Map entry. Keys that receive remote contributions or refunds get an extension record.
 *
 * Merge rule: cell-wise maximum of `p` and of `n` per (key, slot, node); the head is the
 * maximum slot seen; cells older than `head − ringSlots + 1` are dropped. That is a join
 * (commutative, associative, idempotent), so deltas may arrive twice, late or out of order.
 *
 * Pure: no I/O and no clock reads; every time-dependent call takes a slot id computed by the
 * caller from an explicit `now`.
 */
import type { NodeTable } from './nodes.ts';
import type { ScopeGeometry, ScopeId, SlotEntry } from './types.ts';

const F_USED = 1;
const F_EXT = 2;
/** The local node's cells changed since the last drainOwn (to ship). */
const F_OWN_DIRTY = 4;
/** Some cell changed since the last drainRows (to persist). */
const F_DIRTY = 8;

/** Extension of an entry that has remote contributions or refunds. */
interface Ext {
  /** Per ring position: Σ over nodes of (p − n). */
  tot: Float64Array;
  /** Per ring position: the local node's refunded cost. */
  ownN: Float64Array;
  /** Per remote node index: [p at ring positions 0..R-1, n at ring positions 0..R-1]. */
  remote: Map<number, Float64Array>;
}

/** Rows drained from a store: every changed cell (for persistence) and the local node's changed cells (for replication). */
export interface DrainResult {
  rows: SlotEntry[];
  own: SlotEntry[];
}

const INITIAL_CAPACITY = 64;
/** Shared zero-length arrays: a store holds them until its first key (grow replaces them). */
const EMPTY_F64 = new Float64Array(0);
const EMPTY_U8 = new Uint8Array(0);
const EMPTY_U32 = new Uint32Array(0);

export class SlotWindowStore {
  readonly scope: ScopeId;
  readonly slotMs: number;
  readonly ringSlots: number;
  private readonly nodes: NodeTable;

  private readonly index = new Map<string, number>();
  private keys: (string | undefined)[] = [];
  private capacity = 0;
  private readonly initialCapacity: number;
  private highWater = 0;
  private live = 0;
  private readonly freeList: number[] = [];

  // Empty until the first key arrives (a store of a rule nobody uses allocates no arrays).
  private heads = EMPTY_F64;
  private sums = EMPTY_F64;
  private dirtyFrom = EMPTY_F64;
  private ownDirtyFrom = EMPTY_F64;
  private flags = EMPTY_U8;
  /** Local node's admitted cost, R cells per entry. Own p per slot never exceeds a limit (< 2^31). */
  private own = EMPTY_U32;
  private readonly exts = new Map<number, Ext>();

  /** Total cost the local node has admitted into this store (for admission-rate estimates). */
  ownAdmitted = 0;

  /** Increase of `p` made by the last mergeCell call that changed state (for admission-rate estimates). */
  lastMergeIncreaseP = 0;

  private dirtyList: number[] = [];
  private ownDirtyList: number[] = [];
  private pendingRows: SlotEntry[] = [];
  private pendingOwn: SlotEntry[] = [];
  private sweepCursor = 0;

  constructor(scope: ScopeId, geometry: ScopeGeometry, nodes: NodeTable, initialCapacity = INITIAL_CAPACITY) {
    if (!(geometry.slotMs > 0) || !Number.isInteger(geometry.ringSlots) || geometry.ringSlots < 1) {
      throw new RangeError(`invalid geometry for ${scope}: slotMs=${geometry.slotMs} ringSlots=${geometry.ringSlots}`);
    }
    this.scope = scope;
    this.slotMs = geometry.slotMs;
    this.ringSlots = geometry.ringSlots;
    this.nodes = nodes;
    this.initialCapacity = Math.max(1, initialCapacity);
  }

  /** Number of live keys. */
  get size(): number {
    return this.live;
  }

  /** The slot id that contains time `now` (ms since the Unix epoch). */
  slotOf(now: number): number {
    return Math.floor(now / this.slotMs);
  }

  /** Entry index of `key`, or −1. */
  find(key: string): number {
    const e = this.index.get(key);
    return e === undefined ? -1 : e;
  }

  /** Entry index of `key`, creating an empty entry with head `slot` if absent. */
  ensure(key: string, slot: number): number {
    const found = this.index.get(key);
    if (found !== undefined) return found;
    return this.create(key, slot);
  }

  keyOf(e: number): string {
    const k = this.keys[e];
    if (k === undefined) throw new RangeError(`entry ${e} is not live`);
    return k;
  }

  isLive(e: number): boolean {
    return e >= 0 && e < this.highWater && (this.flags[e] & F_USED) !== 0;
  }

  /** Head slot of an entry: the newest slot it holds (and, for local keys, its last activity). */
  headOf(e: number): number {
    return this.heads[e];
  }

  /** Σ over the ring of the per-slot totals. */
  sumOf(e: number): number {
    return this.sums[e];
  }

  /** Total Σ nodes (p − n) held for `slot`, 0 outside the ring. */
  total(e: number, slot: number): number {
    const head = this.heads[e];
    const R = this.ringSlots;
    if (slot > head || slot <= head - R) return 0;
    const pos = mod(slot, R);
    if ((this.flags[e] & F_EXT) !== 0) return this.exts.get(e)!.tot[pos];
    return this.own[e * R + pos];
  }

  /** This node's own net count (p − n) over the whole ring (every slot the entry holds). */
  ownSumOf(e: number): number {
    const R = this.ringSlots;
    const base = e * R;
    const ext = (this.flags[e] & F_EXT) !== 0 ? this.exts.get(e)! : undefined;
    let sum = 0;
    for (let pos = 0; pos < R; pos++) sum += this.own[base + pos] - (ext ? ext.ownN[pos] : 0);
    return sum;
  }

  /** Move the entry's head forward to `slot`, dropping cells that leave the ring. No-op if `slot` ≤ head. */
  advance(e: number, slot: number): void {
    const head = this.heads[e];
    if (slot <= head) return;
    const R = this.ringSlots;
    const base = e * R;
    const ext = (this.flags[e] & F_EXT) !== 0 ? this.exts.get(e)! : undefined;
    if (slot - head >= R) {
      this.own.fill(0, base, base + R);
      if (ext) clearExt(ext);
      this.sums[e] = 0;
    } else {
      let sum = this.sums[e];
      for (let s = head + 1; s <= slot; s++) {
        const pos = mod(s, R);
        if (ext) {
          sum -= ext.tot[pos];
          ext.tot[pos] = 0;
          ext.ownN[pos] = 0;
          for (const cells of ext.remote.values()) {
            cells[pos] = 0;
            cells[R + pos] = 0;
          }
        } else {
          sum -= this.own[base + pos];
        }
        this.own[base + pos] = 0;
      }
      // Values are integers, so there is no drift to guard against; only snap -0 to 0. A negative
      // sum is legitimate (a refund's n can arrive before the p it refunds) and must be kept, or
      // the running sum would no longer equal Σ of the slot totals.
      this.sums[e] = sum === 0 ? 0 : sum;
    }
    this.heads[e] = slot;
  }

  /** Count `cost` admitted by the local node in `slot` (which must be within the ring). */
  addOwn(e: number, slot: number, cost: number): void {
    const R = this.ringSlots;
    const head = this.heads[e];
    if (slot > head) this.advance(e, slot);
    else if (slot <= head - R) return;
    const pos = mod(slot, R);
    this.own[e * R + pos] += cost;
    if ((this.flags[e] & F_EXT) !== 0) this.exts.get(e)!.tot[pos] += cost;
    this.sums[e] += cost;
    this.ownAdmitted += cost;
    this.markDirty(e, slot, true);
  }

  /**
   * Refund up to `amount` of the local node's own contribution (what it admitted and has not
   * refunded), newest slot first, never driving a slot's total below zero. Returns the amount
   * refunded.
   */
  refundOwn(e: number, slot: number, amount: number): number {
    const R = this.ringSlots;
    const ext = this.ensureExt(e);
    let left = amount;
    const head = this.heads[e];
    const newest = Math.min(slot, head);
    for (let s = newest; s > head - R && left > 0; s--) {
      const pos = mod(s, R);
      // Only what this node itself admitted and has not refunded yet: a node's contribution
      // per slot never goes below zero, so refunds made concurrently in several regions can
      // never give back more than was counted.
      const own = this.own[e * R + pos] - ext.ownN[pos];
      const tot = ext.tot[pos];
      const avail = own < tot ? own : tot;
      if (avail <= 0) continue;
      const take = avail < left ? avail : left;
      ext.ownN[pos] += take;
      ext.tot[pos] -= take;
      this.sums[e] -= take;
      left -= take;
      this.markDirty(e, s, true);
    }
    return amount - left;
  }

  /**
   * Merge one cell (cell-wise max). Returns true if the state changed.
   * `markDirty` says whether the change must be persisted (false when restoring from storage).
   */
  mergeCell(e: number, nodeIndex: number, slot: number, p: number, n: number, markDirty = true): boolean {
    const R = this.ringSlots;
    if (slot <= this.heads[e] - R) return false;
    if (slot > this.heads[e]) this.advance(e, slot);
    const pos = mod(slot, R);
    let oldP: number;
    let oldN: number;
    let newP: number;
    let newN: number;
    if (nodeIndex === 0) {
      const i = e * R + pos;
      oldP = this.own[i];
      oldN = (this.flags[e] & F_EXT) !== 0 ? this.exts.get(e)!.ownN[pos] : 0;
      newP = p > oldP ? p : oldP;
      newN = n > oldN ? n : oldN;
      if (newP === oldP && newN === oldN) return false;
      if (newN !== oldN || (this.flags[e] & F_EXT) !== 0) {
        // ensureExt copies the pre-change own values into tot; the difference is applied here.
        const ext = this.ensureExt(e);
        ext.ownN[pos] = newN;
        ext.tot[pos] += newP - oldP - (newN - oldN);
      }
      this.own[i] = newP;
    } else {
      const ext = this.ensureExt(e);
      let cells = ext.remote.get(nodeIndex);
      if (cells === undefined) {
        cells = new Float64Array(2 * R);
        ext.remote.set(nodeIndex, cells);
      }
      oldP = cells[pos];
      oldN = cells[R + pos];
      newP = p > oldP ? p : oldP;
      newN = n > oldN ? n : oldN;
      if (newP === oldP && newN === oldN) return false;
      cells[pos] = newP;
      cells[R + pos] = newN;
      ext.tot[pos] += newP - oldP - (newN - oldN);
    }
    this.sums[e] += newP - oldP - (newN - oldN);
    this.lastMergeIncreaseP = newP - oldP;
    if (markDirty) this.markDirty(e, slot, false);
    return true;
  }

  /** Visit every non-zero cell of an entry. */
  forEachCell(e: number, visit: (slot: number, node: number, p: number, n: number) => void, fromSlot = -Infinity): void {
    const R = this.ringSlots;
    const head = this.heads[e];
    const ext = (this.flags[e] & F_EXT) !== 0 ? this.exts.get(e)! : undefined;
    const start = Math.max(head - R + 1, fromSlot);
    for (let s = start; s <= head; s++) {
      const pos = mod(s, R);
      const p = this.own[e * R + pos];
      const n = ext ? ext.ownN[pos] : 0;
      if (p !== 0 || n !== 0) visit(s, 0, p, n);
    }
    if (ext) {
      for (const [node, cells] of ext.remote) {
        for (let s = start; s <= head; s++) {
          const pos = mod(s, R);
          const p = cells[pos];
          const n = cells[R + pos];
          if (p !== 0 || n !== 0) visit(s, node, p, n);
        }
      }
    }
  }

  /** All non-zero cells of the store as entries (full state), in a deterministic order. */
  snapshot(): SlotEntry[] {
    const out: SlotEntry[] = [];
    for (let e = 0; e < this.highWater; e++) {
      if ((this.flags[e] & F_USED) === 0) continue;
      this.pushCells(e, out, false, -Infinity);
    }
    return out;
  }

  /**
   * Take every change since the last drain, for both consumers: all changed cells (every node)
   * and the local node's changed cells. Equivalent to drainRows then drainOwn.
   */
  drain(out: DrainResult): void {
    this.drainRows(out.rows);
    this.drainOwn(out.own);
  }

  /** Take every changed cell (every node) since the last drainRows: what persistence writes. */
  drainRows(rows: SlotEntry[]): void {
    if (this.pendingRows.length > 0) {
      for (const r of this.pendingRows) rows.push(r);
      this.pendingRows = [];
    }
    const list = this.dirtyList;
    if (list.length === 0) return;
    this.dirtyList = [];
    for (const e of list) {
      const f = this.flags[e];
      if ((f & F_USED) === 0 || (f & F_DIRTY) === 0) continue;
      this.pushCells(e, rows, false, this.dirtyFrom[e]);
      this.flags[e] = f & ~F_DIRTY;
    }
  }

  /**
   * Take the local node's cells of every key it changed itself (admission, refund) since the
   * last drainOwn: what replication ships. Values are absolute, so shipping a cell again is
   * always harmless.
   */
  drainOwn(own: SlotEntry[]): void {
    if (this.pendingOwn.length > 0) {
      for (const r of this.pendingOwn) own.push(r);
      this.pendingOwn = [];
    }
    const list = this.ownDirtyList;
    if (list.length === 0) return;
    this.ownDirtyList = [];
    for (const e of list) this.drainOwnEntry(e, own);
  }

  /** Take one key's own changed cells now (a key that reached its limit ships ahead of the rest). */
  drainOwnKey(key: string, own: SlotEntry[]): void {
    const e = this.index.get(key);
    if (e !== undefined) this.drainOwnEntry(e, own);
  }

  private drainOwnEntry(e: number, own: SlotEntry[]): void {
    const f = this.flags[e];
    if ((f & F_USED) === 0 || (f & F_OWN_DIRTY) === 0) return;
    this.pushCells(e, own, true, this.ownDirtyFrom[e]);
    this.flags[e] = f & ~F_OWN_DIRTY;
  }

  /**
   * Ship `slot` of `key` again (a publish that failed): the key's own cells from that slot on
   * are drained by the next drainOwn, with their values then. A key no longer held keeps the
   * given cell as it is.
   */
  requeueOwn(cell: SlotEntry): void {
    const e = this.index.get(cell.key);
    if (e === undefined) this.pendingOwn.push(cell);
    else this.markOwnDirty(e, cell.slot);
  }

  /**
   * Mark every own cell of every key to be shipped (after a restart: cells persisted but
   * perhaps never shipped). Returns the number of keys marked.
   */
  markAllOwnDirty(): number {
    let n = 0;
    const R = this.ringSlots;
    for (let e = 0; e < this.highWater; e++) {
      if ((this.flags[e] & F_USED) === 0) continue;
      this.markOwnDirty(e, this.heads[e] - R + 1);
      n++;
    }
    return n;
  }

  /** Whether anything is waiting to be drained (by either consumer). */
  get hasChanges(): boolean {
    return this.hasRowChanges || this.hasOwnChanges;
  }

  /** Whether drainRows has anything to take. */
  get hasRowChanges(): boolean {
    return this.dirtyList.length > 0 || this.pendingRows.length > 0;
  }

  /** Whether drainOwn has anything to take. */
  get hasOwnChanges(): boolean {
    return this.ownDirtyList.length > 0 || this.pendingOwn.length > 0;
  }

  /** Drop an entry. Its undrained changes are kept for the next drain. */
  evict(e: number): void {
    const f = this.flags[e];
    if ((f & F_USED) === 0) return;
    if ((f & F_DIRTY) !== 0) this.pushCells(e, this.pendingRows, false, this.dirtyFrom[e]);
    if ((f & F_OWN_DIRTY) !== 0) this.pushCells(e, this.pendingOwn, true, this.ownDirtyFrom[e]);
    const key = this.keys[e]!;
    this.index.delete(key);
    this.keys[e] = undefined;
    this.flags[e] = 0;
    this.exts.delete(e);
    const R = this.ringSlots;
    this.own.fill(0, e * R, e * R + R);
    this.sums[e] = 0;
    this.freeList.push(e);
    this.live--;
  }

  /**
   * Evict up to `budget` entries whose every slot has expired at `currentSlot`, scanning from
   * where the previous call stopped. Returns the number evicted.
   */
  sweepIdle(currentSlot: number, budget: number): number {
    let evicted = 0;
    let scanned = 0;
    const hw = this.highWater;
    if (hw === 0) return 0;
    let e = this.sweepCursor % hw;
    while (scanned < hw && scanned < budget) {
      if ((this.flags[e] & F_USED) !== 0 && this.heads[e] <= currentSlot - this.ringSlots) {
        this.evict(e);
        evicted++;
      }
      scanned++;
      e = e + 1 === hw ? 0 : e + 1;
    }
    this.sweepCursor = e;
    return evicted;
  }

  /** A uniformly random live entry index chosen with `rand` in [0,1), or −1 after a few misses. */
  sampleLive(rand: () => number): number {
    for (let tries = 0; tries < 8; tries++) {
      const e = Math.floor(rand() * this.highWater);
      if ((this.flags[e] & F_USED) !== 0) return e;
    }
    for (let e = 0; e < this.highWater; e++) if ((this.flags[e] & F_USED) !== 0) return e;
    return -1;
  }

  // ---- internals ----

  private create(key: string, slot: number): number {
    let e: number;
    if (this.freeList.length > 0) {
      e = this.freeList.pop()!;
    } else {
      if (this.highWater === this.capacity) this.grow(this.capacity === 0 ? this.initialCapacity : this.capacity * 2);
      e = this.highWater++;
    }
    this.index.set(key, e);
    this.keys[e] = key;
    this.heads[e] = slot;
    this.sums[e] = 0;
    this.flags[e] = F_USED;
    this.live++;
    return e;
  }

  private grow(capacity: number): void {
    const R = this.ringSlots;
    const heads = new Float64Array(capacity);
    heads.set(this.heads);
    const sums = new Float64Array(capacity);
    sums.set(this.sums);
    const dirtyFrom = new Float64Array(capacity);
    dirtyFrom.set(this.dirtyFrom);
    const ownDirtyFrom = new Float64Array(capacity);
    ownDirtyFrom.set(this.ownDirtyFrom);
    const flags = new Uint8Array(capacity);
    flags.set(this.flags);
    const own = new Uint32Array(capacity * R);
    own.set(this.own);
    this.heads = heads;
    this.sums = sums;
    this.dirtyFrom = dirtyFrom;
    this.ownDirtyFrom = ownDirtyFrom;
    this.flags = flags;
    this.own = own;
    this.capacity = capacity;
  }

  private ensureExt(e: number): Ext {
    if ((this.flags[e] & F_EXT) !== 0) return this.exts.get(e)!;
    const R = this.ringSlots;
    const tot = new Float64Array(R);
    for (let i = 0; i < R; i++) tot[i] = this.own[e * R + i];
    const ext: Ext = { tot, ownN: new Float64Array(R), remote: new Map() };
    this.exts.set(e, ext);
    this.flags[e] |= F_EXT;
    return ext;
  }

  /** A cell changed: persist it; if the local node changed it itself, ship it too. */
  private markDirty(e: number, slot: number, own: boolean): void {
    const f = this.flags[e];
    if ((f & F_DIRTY) === 0) {
      this.dirtyFrom[e] = slot;
      this.dirtyList.push(e);
      this.flags[e] = f | F_DIRTY;
    } else if (slot < this.dirtyFrom[e]) this.dirtyFrom[e] = slot;
    if (own) this.markOwnDirty(e, slot);
  }

  private markOwnDirty(e: number, slot: number): void {
    const f = this.flags[e];
    if ((f & F_OWN_DIRTY) === 0) {
      this.ownDirtyFrom[e] = slot;
      this.ownDirtyList.push(e);
      this.flags[e] = f | F_OWN_DIRTY;
    } else if (slot < this.ownDirtyFrom[e]) this.ownDirtyFrom[e] = slot;
  }

  /** Push the entry's cells from `fromSlot` on: every node's, or only the local node's. */
  private pushCells(e: number, out: SlotEntry[], ownOnly: boolean, fromSlot: number): void {
    const key = this.keys[e]!;
    const scope = this.scope;
    const nodes = this.nodes;
    if (ownOnly) {
      const R = this.ringSlots;
      const head = this.heads[e];
      const ext = (this.flags[e] & F_EXT) !== 0 ? this.exts.get(e)! : undefined;
      const self = nodes.name(0);
      for (let s = Math.max(head - R + 1, fromSlot); s <= head; s++) {
        const pos = mod(s, R);
        const p = this.own[e * R + pos];
        const n = ext ? ext.ownN[pos] : 0;
        if (p !== 0 || n !== 0) out.push({ scope, key, slot: s, node: self, p, n });
      }
      return;
    }
    this.forEachCell(e, (slot, node, p, n) => out.push({ scope, key, slot, node: nodes.name(node), p, n }), fromSlot);
  }
}

function clearExt(ext: Ext): void {
  ext.tot.fill(0);
  ext.ownN.fill(0);
  for (const cells of ext.remote.values()) cells.fill(0);
}

/** Non-negative modulo (slot ids are non-negative in practice; this keeps negatives safe too). */
function mod(a: number, m: number): number {
  const r = a % m;
  return r < 0 ? r + m : r;
}
