/**
 * SlotWindowStore (crdt/window.ts): the compact store must behave exactly like the obvious
 * model (a map of (key, slot, node) → {p, n} per key plus a head slot), its merge must be a
 * join, and state-based deltas must be as good as full states.
 *
 * Merge of two stores = a fresh store of the same geometry that receives the other stores'
 * snapshot() cells through mergeCell (what replication and restore do).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NodeTable, SlotWindowStore, type DrainResult, type ScopeGeometry, type SlotEntry } from '../../crdt/index.ts';
import { check } from '../helpers/fc.ts';

const SCOPE = 'rule|sw|4000|1000';
const GEOM: ScopeGeometry = { slotMs: 1000, ringSlots: 4 };
const R = GEOM.ringSlots;
/** A realistic slot id (ms since epoch / 1000) so offsets, not small numbers, are exercised. */
const BASE = 1_893_456_000;
const KEYS = ['a', 'b', 'c', 'ключ'];
const NODES = ['n0', 'n1', 'n2', 'n3'];

interface Replica {
  nodes: NodeTable;
  store: SlotWindowStore;
}

const replica = (self: string, capacity?: number): Replica => {
  const nodes = new NodeTable(self);
  return { nodes, store: new SlotWindowStore(SCOPE, GEOM, nodes, capacity) };
};

/** Merge one received cell the way an adapter does (create the key at the cell's slot if absent). */
function mergeEntry(r: Replica, c: Pick<SlotEntry, 'key' | 'slot' | 'node' | 'p' | 'n'>): boolean {
  const e = r.store.ensure(c.key, c.slot);
  return r.store.mergeCell(e, r.nodes.intern(c.node), c.slot, c.p, c.n);
}

/** Fresh store (local node `self`) holding the join of the given stores' snapshots, in order. */
function mergeAll(stores: Replica[], self = 'n0'): Replica {
  const out = replica(self);
  for (const s of stores) for (const c of s.store.snapshot()) mergeEntry(out, c);
  return out;
}

const cellId = (c: { key: string; slot: number; node: string }) => `${c.key}\u0000${c.slot}\u0000${c.node}`;

/** Snapshot in a canonical order, as plain tuples. */
function canon(r: Replica): string[] {
  return r.store
    .snapshot()
    .map((c) => `${cellId(c)}\u0000${c.p}\u0000${c.n}`)
    .sort();
}

/** Running sums and per-slot totals agree with the cells the store reports. */
function assertSumsConsistent(r: Replica): void {
  const perKey = new Map<string, number>();
  const perSlot = new Map<string, number>();
  for (const c of r.store.snapshot()) {
    expect(c.scope).toBe(SCOPE);
    perKey.set(c.key, (perKey.get(c.key) ?? 0) + c.p - c.n);
    const k = `${c.key}\u0000${c.slot}`;
    perSlot.set(k, (perSlot.get(k) ?? 0) + c.p - c.n);
  }
  for (const key of KEYS) {
    const e = r.store.find(key);
    if (e < 0) {
      expect(perKey.has(key)).toBe(false);
      continue;
    }
    expect(r.store.keyOf(e)).toBe(key);
    expect(r.store.sumOf(e)).toBe(perKey.get(key) ?? 0);
    const head = r.store.headOf(e);
    for (let s = head - R - 1; s <= head + 1; s++) {
      const expected = s > head - R && s <= head ? (perSlot.get(`${key}\u0000${s}`) ?? 0) : 0;
      expect(r.store.total(e, s)).toBe(expected);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A reference model of the store, written for clarity rather than speed.

interface ModelKey {
  head: number;
  cells: Map<string, SlotEntry>;
}

class Model {
  readonly keys = new Map<string, ModelKey>();
  constructor(readonly self: string) {}

  private ensure(key: string, slot: number): ModelKey {
    let k = this.keys.get(key);
    if (!k) this.keys.set(key, (k = { head: slot, cells: new Map() }));
    return k;
  }

  advance(key: string, slot: number): void {
    const k = this.keys.get(key);
    if (!k || slot <= k.head) return;
    k.head = slot;
    for (const [id, c] of k.cells) if (c.slot <= slot - R) k.cells.delete(id);
  }

  merge(c: Pick<SlotEntry, 'key' | 'slot' | 'node' | 'p' | 'n'>): void {
    const k = this.ensure(c.key, c.slot);
    if (c.slot <= k.head - R) return;
    this.advance(c.key, c.slot);
    const id = cellId(c);
    const old = k.cells.get(id);
    k.cells.set(id, { scope: SCOPE, key: c.key, slot: c.slot, node: c.node, p: Math.max(old?.p ?? 0, c.p), n: Math.max(old?.n ?? 0, c.n) });
  }

  add(key: string, slot: number, cost: number): void {
    const k = this.ensure(key, slot);
    if (slot <= k.head - R) return;
    this.advance(key, slot);
    const id = cellId({ key, slot, node: this.self });
    const old = k.cells.get(id);
    k.cells.set(id, { scope: SCOPE, key, slot, node: this.self, p: (old?.p ?? 0) + cost, n: old?.n ?? 0 });
  }

  slotTotal(key: string, slot: number): number {
    let t = 0;
    for (const c of this.keys.get(key)!.cells.values()) if (c.slot === slot) t += c.p - c.n;
    return t;
  }

  /**
   * Newest slot first, only this node's own unrefunded cost and never below a zero slot total;
   * returns the amount refunded.
   */
  refund(key: string, slot: number, amount: number): number {
    const k = this.keys.get(key)!;
    let left = amount;
    for (let s = Math.min(slot, k.head); s > k.head - R && left > 0; s--) {
      const id = cellId({ key, slot: s, node: this.self });
      const old = k.cells.get(id);
      const avail = Math.min(this.slotTotal(key, s), (old?.p ?? 0) - (old?.n ?? 0));
      if (avail <= 0) continue;
      const take = Math.min(avail, left);
      k.cells.set(id, { scope: SCOPE, key, slot: s, node: this.self, p: old?.p ?? 0, n: (old?.n ?? 0) + take });
      left -= take;
    }
    return amount - left;
  }

  canon(): string[] {
    const out: string[] = [];
    for (const k of this.keys.values()) for (const c of k.cells.values()) if (c.p !== 0 || c.n !== 0) out.push(`${cellId(c)}\u0000${c.p}\u0000${c.n}`);
    return out.sort();
  }
}

// ---------------------------------------------------------------------------------------------
// Random histories of store operations.

type StoreOp =
  | { kind: 'merge'; key: string; slot: number; node: string; p: number; n: number }
  | { kind: 'add'; key: string; slot: number; cost: number }
  | { kind: 'refund'; key: string; slot: number; amount: number }
  | { kind: 'advance'; key: string; slot: number };

const keyArb = fc.constantFrom(...KEYS);
/** Slots spread over three ring lengths so expiry, wrap-around and full resets all happen. */
const slotArb = fc.integer({ min: BASE, max: BASE + 3 * R });
const storeOpArb: fc.Arbitrary<StoreOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('merge' as const), key: keyArb, slot: slotArb, node: fc.constantFrom(...NODES), p: fc.nat(1000), n: fc.nat(1000) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('add' as const), key: keyArb, slot: slotArb, cost: fc.integer({ min: 1, max: 100 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('refund' as const), key: keyArb, slot: slotArb, amount: fc.integer({ min: 1, max: 150 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), key: keyArb, slot: slotArb }) },
);
const historyArb = fc.array(storeOpArb, { maxLength: 40, size: 'max' });

/** Apply a history to a store (local node = r.nodes.self) and, if given, to the model. */
function run(r: Replica, ops: StoreOp[], model?: Model): void {
  for (const op of ops) {
    switch (op.kind) {
      case 'merge':
        mergeEntry(r, op);
        model?.merge(op);
        break;
      case 'add': {
        const e = r.store.ensure(op.key, op.slot);
        r.store.addOwn(e, op.slot, op.cost);
        model?.add(op.key, op.slot, op.cost);
        break;
      }
      case 'refund': {
        const e = r.store.find(op.key);
        if (e < 0) break;
        const got = r.store.refundOwn(e, op.slot, op.amount);
        if (model) expect(got).toBe(model.refund(op.key, op.slot, op.amount));
        expect(got).toBeGreaterThanOrEqual(0);
        expect(got).toBeLessThanOrEqual(op.amount);
        break;
      }
      case 'advance': {
        const e = r.store.find(op.key);
        if (e < 0) break;
        r.store.advance(e, op.slot);
        model?.advance(op.key, op.slot);
        break;
      }
    }
  }
}

/** A store built from a random history; each input store has its own local node. */
function build(self: string, ops: StoreOp[]): Replica {
  const r = replica(self, 1 + (ops.length % 3)); // tiny initial capacity: growth is exercised too
  run(r, ops);
  return r;
}

// ---------------------------------------------------------------------------------------------

describe('SlotWindowStore against a reference model', () => {
  it('every history leaves the same cells as the model, with consistent running sums', () => {
    check(
      fc.property(historyArb, (ops) => {
        const r = replica('n0', 1);
        const m = new Model('n0');
        run(r, ops, m);
        expect(canon(r)).toEqual(m.canon());
        assertSumsConsistent(r);
        expect(r.store.size).toBe(m.keys.size);
        for (const [key, mk] of m.keys) expect(r.store.headOf(r.store.find(key))).toBe(mk.head);
      }),
    );
  });
});

describe('SlotWindowStore merge laws', () => {
  it('merge is commutative', () => {
    check(
      fc.property(historyArb, historyArb, (ha, hb) => {
        const [a, b] = [build('n0', ha), build('n1', hb)];
        const ab = mergeAll([a, b]);
        const ba = mergeAll([b, a]);
        expect(canon(ab)).toEqual(canon(ba));
        assertSumsConsistent(ab);
        assertSumsConsistent(ba);
      }),
    );
  });

  it('merge is associative', () => {
    check(
      fc.property(historyArb, historyArb, historyArb, (ha, hb, hc) => {
        const [a, b, c] = [build('n0', ha), build('n1', hb), build('n2', hc)];
        const left = mergeAll([mergeAll([a, b]), c]);
        const right = mergeAll([a, mergeAll([b, c])]);
        expect(canon(left)).toEqual(canon(right));
        expect(canon(left)).toEqual(canon(mergeAll([a, b, c])));
        assertSumsConsistent(left);
      }),
    );
  });

  it('merge is idempotent (also merging a store into itself)', () => {
    check(
      fc.property(historyArb, historyArb, (ha, hb) => {
        const [a, b] = [build('n0', ha), build('n1', hb)];
        expect(canon(mergeAll([a, a]))).toEqual(canon(mergeAll([a])));
        expect(canon(mergeAll([a]))).toEqual(canon(a));
        const ab = mergeAll([a, b]);
        // Re-delivering everything changes nothing and reports no change.
        for (const c of [...a.store.snapshot(), ...b.store.snapshot()]) {
          const e = ab.store.find(c.key);
          expect(ab.store.mergeCell(e, ab.nodes.intern(c.node), c.slot, c.p, c.n)).toBe(false);
        }
        expect(canon(ab)).toEqual(canon(mergeAll([a, b])));
        // In place: a store merging its own snapshot is unchanged.
        for (const c of a.store.snapshot()) expect(mergeEntry(a, c)).toBe(false);
      }),
    );
  });

  it('merge is monotone: within the merged window every input cell is ≤ the merged cell', () => {
    check(
      fc.property(historyArb, historyArb, (ha, hb) => {
        const [a, b] = [build('n0', ha), build('n1', hb)];
        const m = mergeAll([a, b]);
        const merged = new Map(m.store.snapshot().map((c) => [cellId(c), c]));
        for (const input of [a, b]) {
          const maxSlot = new Map<string, number>();
          for (const c of input.store.snapshot()) {
            maxSlot.set(c.key, Math.max(maxSlot.get(c.key) ?? -Infinity, c.slot));
            const head = m.store.headOf(m.store.find(c.key));
            if (c.slot <= head - R) continue; // expired by a newer slot of the other input: dropped, as it must be
            const got = merged.get(cellId(c));
            expect(got, `cell ${cellId(c)} missing after merge`).toBeDefined();
            expect(got!.p).toBeGreaterThanOrEqual(c.p);
            expect(got!.n).toBeGreaterThanOrEqual(c.n);
          }
          // Heads never move back.
          for (const [key, s] of maxSlot) expect(m.store.headOf(m.store.find(key))).toBeGreaterThanOrEqual(s);
        }
        // Merging more in never lowers a cell that stays inside the window.
        const mm = mergeAll([m, a, b]);
        expect(canon(mm)).toEqual(canon(m));
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Deltas: what drain() yields is as good as the full state.

type ReplicaOp =
  | { kind: 'add'; r: number; key: string; cost: number }
  | { kind: 'refund'; r: number; key: string; amount: number }
  | { kind: 'drain'; r: number }
  | { kind: 'receive'; r: number; pick: number }
  | { kind: 'tick'; slots: number };

const replicaOpArb = (k: number): fc.Arbitrary<ReplicaOp> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('add' as const), r: fc.nat(k - 1), key: keyArb, cost: fc.integer({ min: 1, max: 20 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('refund' as const), r: fc.nat(k - 1), key: keyArb, amount: fc.integer({ min: 1, max: 30 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('drain' as const), r: fc.nat(k - 1) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('receive' as const), r: fc.nat(k - 1), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), slots: fc.integer({ min: 0, max: 2 }) }) },
  );

const scenarioArb = fc.integer({ min: 2, max: 4 }).chain((k) =>
  fc.record({
    k: fc.constant(k),
    ops: fc.array(replicaOpArb(k), { maxLength: 60, size: 'max' }),
    /** Delivery schedule of the deltas: random order, each delta 1–3 times. */
    order: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 3 })), { maxLength: 200 }),
  }),
);

/** Advance every key to `slot`, the common "now" at which replicas are compared. */
function advanceAll(r: Replica, slot: number): void {
  for (const key of KEYS) {
    const e = r.store.find(key);
    if (e >= 0) r.store.advance(e, slot);
  }
}

describe('state-based deltas', () => {
  it('applying drained deltas in any order with duplicates equals merging the full states', () => {
    check(
      fc.property(scenarioArb, ({ k, ops, order }) => {
        const reps = Array.from({ length: k }, (_, i) => replica(`r${i}`));
        const deltas: SlotEntry[][] = [];
        let slot = BASE;
        const drainOwn = (r: Replica) => {
          const out: DrainResult = { rows: [], own: [] };
          r.store.drain(out);
          expect(r.store.hasChanges).toBe(false);
          for (const c of out.own) expect(c.node).toBe(r.nodes.self);
          if (out.own.length > 0) deltas.push(out.own);
        };
        for (const op of ops) {
          switch (op.kind) {
            case 'add': {
              const st = reps[op.r].store;
              const e = st.ensure(op.key, slot);
              st.addOwn(e, slot, op.cost);
              break;
            }
            case 'refund': {
              const st = reps[op.r].store;
              const e = st.find(op.key);
              if (e >= 0) {
                st.advance(e, slot);
                st.refundOwn(e, slot, op.amount);
              }
              break;
            }
            case 'drain':
              drainOwn(reps[op.r]);
              break;
            case 'receive':
              // Replicas also merge each other's deltas along the way (and re-drain nothing of them as own).
              if (deltas.length > 0) for (const c of deltas[op.pick % deltas.length]) mergeEntry(reps[op.r], c);
              break;
            case 'tick':
              slot += op.slots;
              break;
          }
        }
        for (const r of reps) drainOwn(r);

        const viaDeltas = replica('observer');
        if (deltas.length > 0) {
          const schedule = order.length > 0 ? order : [[0, 1] as [number, number]];
          const delivered = new Set<number>();
          for (const [pick, times] of schedule) {
            const i = pick % deltas.length;
            delivered.add(i);
            for (let t = 0; t < times; t++) for (const c of deltas[i]) mergeEntry(viaDeltas, c);
          }
          // Whatever the schedule missed is delivered last (late, after its successors).
          for (let i = deltas.length - 1; i >= 0; i--) if (!delivered.has(i)) for (const c of deltas[i]) mergeEntry(viaDeltas, c);
        }
        const viaStates = mergeAll(reps, 'observer');
        advanceAll(viaDeltas, slot);
        advanceAll(viaStates, slot);
        expect(canon(viaDeltas)).toEqual(canon(viaStates));
        assertSumsConsistent(viaDeltas);
        // And every replica, once it has merged everything, holds that same state.
        for (const r of reps) {
          for (const d of deltas) for (const c of d) mergeEntry(r, c);
          advanceAll(r, slot);
          expect(canon(r)).toEqual(canon(viaStates));
        }
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Unit behaviour.

describe('SlotWindowStore units', () => {
  it('refuses an invalid geometry', () => {
    const nodes = new NodeTable('n0');
    expect(() => new SlotWindowStore('s', { slotMs: 0, ringSlots: 3 }, nodes)).toThrow(RangeError);
    expect(() => new SlotWindowStore('s', { slotMs: 10, ringSlots: 0 }, nodes)).toThrow(RangeError);
    expect(() => new SlotWindowStore('s', { slotMs: 10, ringSlots: 1.5 }, nodes)).toThrow(RangeError);
  });

  it('slots are aligned to the epoch', () => {
    const r = replica('n0');
    expect(r.store.slotOf(0)).toBe(0);
    expect(r.store.slotOf(999)).toBe(0);
    expect(r.store.slotOf(1000)).toBe(1);
    expect(r.store.slotOf(BASE * 1000 + 1)).toBe(BASE);
  });

  it('advance drops exactly the slots that leave the ring', () => {
    const r = replica('n0');
    const e = r.store.ensure('a', BASE);
    for (let s = BASE; s < BASE + R; s++) r.store.addOwn(e, s, s - BASE + 1); // 1,2,3,4
    expect(r.store.sumOf(e)).toBe(10);
    r.store.advance(e, BASE + R); // drops BASE (1)
    expect(r.store.sumOf(e)).toBe(9);
    expect(r.store.total(e, BASE)).toBe(0);
    r.store.advance(e, BASE + R + 2); // drops BASE+1, BASE+2 (2 + 3)
    expect(r.store.sumOf(e)).toBe(4);
    r.store.advance(e, BASE + 100); // everything
    expect(r.store.sumOf(e)).toBe(0);
    expect(r.store.snapshot()).toEqual([]);
    r.store.advance(e, BASE); // never backwards
    expect(r.store.headOf(e)).toBe(BASE + 100);
  });

  it('addOwn into a slot older than the ring is ignored', () => {
    const r = replica('n0');
    const e = r.store.ensure('a', BASE + 10);
    r.store.addOwn(e, BASE + 10 - R, 5);
    expect(r.store.sumOf(e)).toBe(0);
    r.store.addOwn(e, BASE + 10 - R + 1, 5);
    expect(r.store.sumOf(e)).toBe(5);
  });

  it('refundOwn takes newest slot first and never drives a slot below zero', () => {
    const r = replica('n0');
    const e = r.store.ensure('a', BASE);
    r.store.addOwn(e, BASE, 3);
    r.store.addOwn(e, BASE + 1, 2);
    expect(r.store.refundOwn(e, BASE + 1, 4)).toBe(4);
    expect(r.store.total(e, BASE + 1)).toBe(0);
    expect(r.store.total(e, BASE)).toBe(1);
    expect(r.store.refundOwn(e, BASE + 1, 10)).toBe(1);
    expect(r.store.refundOwn(e, BASE + 1, 10)).toBe(0);
    expect(r.store.sumOf(e)).toBe(0);
    // Refunds raise n (the p of a node never goes down).
    const cells = r.store.snapshot();
    expect(cells.every((c) => c.n === c.p && c.node === 'n0')).toBe(true);
  });

  it('refundOwn gives back only what this node admitted, never another node\'s admissions', () => {
    const r = replica('n0');
    const e = r.store.ensure('a', BASE);
    r.store.addOwn(e, BASE, 2);
    r.store.mergeCell(e, r.nodes.intern('n1'), BASE, 5, 0);
    expect(r.store.sumOf(e)).toBe(7);
    // n1's 5 cannot be refunded here: n1 may refund them itself, and both together would
    // otherwise give back 10 of 7.
    expect(r.store.refundOwn(e, BASE, 7)).toBe(2);
    expect(r.store.sumOf(e)).toBe(5);
    expect(r.store.refundOwn(e, BASE, 1)).toBe(0);
  });

  it('mergeCell of a cell older than the ring changes nothing', () => {
    const r = replica('n0');
    const e = r.store.ensure('a', BASE + 10);
    expect(r.store.mergeCell(e, r.nodes.intern('n1'), BASE + 10 - R, 5, 0)).toBe(false);
    expect(r.store.snapshot()).toEqual([]);
  });

  it('drain reports every changed cell once, own cells separately, and absolute values', () => {
    const r = replica('n0');
    const e = r.store.ensure('a', BASE);
    r.store.addOwn(e, BASE, 2);
    r.store.addOwn(e, BASE, 3);
    r.store.mergeCell(r.store.ensure('b', BASE), r.nodes.intern('n1'), BASE, 7, 1);
    const out: DrainResult = { rows: [], own: [] };
    r.store.drain(out);
    expect(out.own).toEqual([{ scope: SCOPE, key: 'a', slot: BASE, node: 'n0', p: 5, n: 0 }]);
    expect(out.rows).toEqual(
      expect.arrayContaining([
        { scope: SCOPE, key: 'a', slot: BASE, node: 'n0', p: 5, n: 0 },
        { scope: SCOPE, key: 'b', slot: BASE, node: 'n1', p: 7, n: 1 },
      ]),
    );
    expect(out.rows).toHaveLength(2);
    expect(r.store.hasChanges).toBe(false);
    const again: DrainResult = { rows: [], own: [] };
    r.store.drain(again);
    expect(again).toEqual({ rows: [], own: [] });
    // Restoring without marking dirty leaves nothing to drain.
    r.store.mergeCell(e, r.nodes.intern('n2'), BASE, 1, 0, false);
    expect(r.store.hasChanges).toBe(false);
  });

  it('an evicted key keeps its undrained changes for the next drain, and its entry is reused cleanly', () => {
    const r = replica('n0');
    const e = r.store.ensure('a', BASE);
    r.store.addOwn(e, BASE, 4);
    r.store.evict(e);
    expect(r.store.find('a')).toBe(-1);
    expect(r.store.size).toBe(0);
    const out: DrainResult = { rows: [], own: [] };
    r.store.drain(out);
    expect(out.own).toEqual([{ scope: SCOPE, key: 'a', slot: BASE, node: 'n0', p: 4, n: 0 }]);
    const e2 = r.store.ensure('b', BASE);
    expect(e2).toBe(e);
    expect(r.store.sumOf(e2)).toBe(0);
    expect(r.store.total(e2, BASE)).toBe(0);
    expect(r.store.snapshot()).toEqual([]);
    r.store.evict(e2);
    r.store.evict(e2); // twice is harmless
    expect(r.store.size).toBe(0);
  });

  it('sweepIdle evicts exactly the keys whose every slot has expired, within its budget', () => {
    const r = replica('n0');
    for (let i = 0; i < 10; i++) {
      const e = r.store.ensure(`k${i}`, BASE + i);
      r.store.addOwn(e, BASE + i, 1);
    }
    // At slot BASE+9+R-... keys with head ≤ current − R are idle.
    const current = BASE + 5 + R; // heads BASE..BASE+5 are idle
    expect(r.store.sweepIdle(current, 3)).toBe(3); // budget limits the scan
    let total = 3;
    for (let i = 0; i < 10 && total < 6; i++) total += r.store.sweepIdle(current, 100);
    expect(total).toBe(6);
    expect(r.store.size).toBe(4);
    for (let i = 0; i < 10; i++) expect(r.store.find(`k${i}`) >= 0).toBe(i > 5);
  });

  it('sampleLive finds a live entry even when random hits holes', () => {
    const r = replica('n0');
    for (let i = 0; i < 20; i++) r.store.ensure(`k${i}`, BASE);
    for (let i = 0; i < 19; i++) r.store.evict(r.store.find(`k${i}`));
    expect(r.store.keyOf(r.store.sampleLive(() => 0))).toBe('k19');
    r.store.evict(r.store.find('k19'));
    expect(r.store.sampleLive(() => 0.5)).toBe(-1);
  });
});
