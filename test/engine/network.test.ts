/**
 * A simulated network of 3–5 Engine replicas (yjs-style: random delivery order, duplicates,
 * drops, partitions), exchanging state-based deltas through the real codec. Once every message
 * is delivered (and one anti-entropy round of full snapshots recovers whatever was dropped),
 * every replica holds the same cells and reports, for every key and limit, the oracle usage:
 * Σ of all cost admitted anywhere minus Σ of all cost refunded anywhere.
 *
 * Time: all replicas share one `now` schedule that stays within the first 50 s after an hour
 * boundary, so nothing expires and the oldest slot of a 1 min sliding window is never weighted:
 * usage is then exactly the sum the oracle keeps.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeDelta, encodeDelta, type SlotEntry } from '../../crdt/index.ts';
import { Engine } from '../../src/engine/engine.ts';
import { validateRules } from '../../src/engine/rules.ts';
import { check } from '../helpers/fc.ts';

const T0 = Date.UTC(2030, 0, 1, 5);
const MAX_ELAPSED = 50_000;

const RULES = validateRules({
  version: 1,
  rules: [
    { id: 'multi', key: 'm:*', limits: [{ limit: 8, window: '1m' }, { limit: 20, window: '1h', algorithm: 'fixed-window' }] },
    { id: 'fixed', key: 'f:*', limits: [{ limit: 5, window: '1h', algorithm: 'fixed-window' }] },
    { id: 'single', key: '*', limits: [{ limit: 6, window: '1m' }] },
  ],
});
const KEYS = ['m:a', 'm:b', 'f:a', 'a', 'b'];
/** Keys whose rule has one limit: the oracle can follow refunds there exactly (RefundResult reports one amount). */
const REFUNDABLE = ['f:a', 'a', 'b'];

type Op =
  | { kind: 'decide'; r: number; key: string; cost: number }
  | { kind: 'refund'; r: number; key: string; cost: number }
  | { kind: 'flush'; r: number }
  | { kind: 'antiEntropy'; r: number }
  | { kind: 'deliver'; pick: number; duplicate: boolean }
  | { kind: 'drop'; pick: number }
  | { kind: 'partition'; a: number; b: number }
  | { kind: 'tick'; dt: number };

/** Operations on `keys`; `refundWeight` tunes how often refunds race with the admissions they refund. */
const opArb = (keys: string[], refundable: string[], refundWeight: number): fc.Arbitrary<Op> => fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('decide' as const), r: fc.nat(4), key: fc.constantFrom(...keys), cost: fc.integer({ min: 1, max: 3 }) }) },
  { weight: refundWeight, arbitrary: fc.record({ kind: fc.constant('refund' as const), r: fc.nat(4), key: fc.constantFrom(...refundable), cost: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flush' as const), r: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('antiEntropy' as const), r: fc.nat(4) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat(), duplicate: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('partition' as const), a: fc.nat(4), b: fc.nat(4) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 4000 }) }) },
);

interface Message {
  from: number;
  to: number;
  bytes: Uint8Array;
}

class Network {
  readonly replicas: Engine[];
  readonly seq: number[];
  inFlight: Message[] = [];
  readonly cut = new Set<string>();
  dropped = 0;

  constructor(n: number) {
    this.replicas = Array.from({ length: n }, (_, i) => new Engine({ nodeId: `region-${i}`, rules: RULES }));
    this.seq = this.replicas.map(() => 0);
  }

  private link(a: number, b: number): string {
    return a < b ? `${a}-${b}` : `${b}-${a}`;
  }

  /** Broadcast cells from replica `from` (a delta or a full snapshot) to every other replica. */
  send(from: number, entries: SlotEntry[], now: number): void {
    if (entries.length === 0) return;
    const bytes = encodeDelta({ v: 1, origin: this.replicas[from].nodeId, seq: ++this.seq[from], sentAt: now, entries });
    for (let to = 0; to < this.replicas.length; to++) if (to !== from) this.inFlight.push({ from, to, bytes });
  }

  flush(r: number, now: number): void {
    this.send(r, this.replicas[r].drain().own, now);
  }

  /** Deliver the picked message if its link is up; a duplicate stays in flight to arrive again. */
  deliver(pick: number, duplicate: boolean, now: number): void {
    const open = this.inFlight.filter((m) => !this.cut.has(this.link(m.from, m.to)));
    if (open.length === 0) return;
    const m = open[pick % open.length];
    if (!duplicate) this.inFlight.splice(this.inFlight.indexOf(m), 1);
    const env = decodeDelta(m.bytes);
    expect(env.origin).toBe(this.replicas[m.from].nodeId);
    this.replicas[m.to].applyRemote(env.entries, now);
  }

  drop(pick: number): void {
    if (this.inFlight.length === 0) return;
    this.inFlight.splice(pick % this.inFlight.length, 1);
    this.dropped++;
  }

  togglePartition(a: number, b: number): void {
    if (a === b) return;
    const l = this.link(a, b);
    if (this.cut.has(l)) this.cut.delete(l);
    else this.cut.add(l);
  }
}

/** Canonical form of a replica's full state. */
const canon = (e: Engine) =>
  e
    .snapshot()
    .map((c) => `${c.scope}|${c.key}|${c.slot}|${c.node}|${c.p}|${c.n}`)
    .sort();

describe('simulated network of Engine replicas', () => {
  it.each([
    { traffic: 'mixed keys and rules', keys: KEYS, refundable: REFUNDABLE, refundWeight: 2 },
    // One hot key with many refunds: a replica often merges a refund (n) before the admission
    // (p) it gave back, so slot totals and running sums go negative for a while.
    { traffic: 'one hot key, refund-heavy', keys: ['a'], refundable: ['a'], refundWeight: 6 },
  ])('converges to the oracle Σ(admitted − refunded) after random delivery, duplicates, drops and partitions ($traffic)', ({ keys, refundable, refundWeight }) => {
    check(
      fc.property(fc.integer({ min: 3, max: 5 }), fc.array(opArb(keys, refundable, refundWeight), { maxLength: 120, size: 'max' }), fc.array(fc.nat(), { maxLength: 50 }), (n, ops, finalOrder) => {
        const net = new Network(n);
        /** oracle[scope][key] = Σ admitted − Σ refunded. */
        const oracle = new Map<string, number>();
        const add = (scope: string, key: string, v: number) => oracle.set(`${scope}\u0000${key}`, (oracle.get(`${scope}\u0000${key}`) ?? 0) + v);
        let now = T0;

        for (const op of ops) {
          switch (op.kind) {
            case 'decide': {
              const eng = net.replicas[op.r % n];
              const d = eng.decide({ key: op.key, cost: op.cost }, now);
              if (d.allowed) for (const l of eng.inspect(op.key, undefined, now).limits) add(l.scope, op.key, op.cost);
              break;
            }
            case 'refund': {
              const eng = net.replicas[op.r % n];
              const { refunded } = eng.refund({ key: op.key, cost: op.cost }, now);
              expect(refunded).toBeLessThanOrEqual(op.cost);
              if (refunded > 0) add(eng.inspect(op.key, undefined, now).limits[0].scope, op.key, -refunded);
              break;
            }
            case 'flush':
              net.flush(op.r % n, now);
              break;
            case 'antiEntropy':
              net.send(op.r % n, net.replicas[op.r % n].snapshot(), now);
              break;
            case 'deliver':
              net.deliver(op.pick, op.duplicate, now);
              break;
            case 'drop':
              net.drop(op.pick);
              break;
            case 'partition':
              net.togglePartition(op.a % n, op.b % n);
              break;
            case 'tick':
              now = Math.min(T0 + MAX_ELAPSED, now + op.dt);
              break;
          }
        }

        // Heal, cut the last deltas, and deliver everything in flight in a random order.
        net.cut.clear();
        for (let r = 0; r < n; r++) net.flush(r, now);
        let i = 0;
        while (net.inFlight.length > 0) net.deliver(finalOrder[i++ % Math.max(1, finalOrder.length)] ?? 0, false, now);

        const assertConverged = () => {
          const reference = canon(net.replicas[0]);
          for (const eng of net.replicas) {
            expect(canon(eng)).toEqual(reference);
            expect(eng.stats().futureCellsHeld).toBe(0);
            for (const key of KEYS) {
              for (const l of eng.inspect(key, undefined, now).limits) {
                expect(l.usage, `${eng.nodeId} ${l.scope} ${key}`).toBe(oracle.get(`${l.scope}\u0000${key}`) ?? 0);
              }
            }
          }
        };
        // Without drops, the deltas alone are enough.
        if (net.dropped === 0) assertConverged();
        // One anti-entropy round (each replica sends its full state once) recovers any drop.
        for (let r = 0; r < n; r++) net.send(r, net.replicas[r].snapshot(), now);
        while (net.inFlight.length > 0) net.deliver(0, false, now);
        assertConverged();
        // After convergence nothing is left to replicate but what was merged from others.
        for (const eng of net.replicas) expect(eng.drain().own).toEqual([]);
      }),
    );
  });
});
