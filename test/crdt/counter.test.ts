/**
 * Laws of the reference PN-counter (crdt/counter.ts): merge is a join (commutative,
 * associative, idempotent), every input is below the merge, operations only move a counter up
 * in the merge order, and the value is Σ (p − n).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_COUNTER,
  counterLeq,
  counterValue,
  countersEqual,
  decrement,
  increment,
  mergeCounters,
  type PNCounter,
} from '../../crdt/index.ts';
import { check } from '../helpers/fc.ts';

const NODES = ['us-east-1', 'eu-west-1', 'ap-south-1', 'sa-east-1'];

const pnArb = fc.record({ p: fc.nat(1_000_000), n: fc.nat(1_000_000) });
const counterArb: fc.Arbitrary<PNCounter> = fc
  .uniqueArray(fc.tuple(fc.constantFrom(...NODES), pnArb), { selector: ([node]) => node, maxLength: NODES.length })
  .map((entries) => new Map(entries));

type Op = { kind: 'inc' | 'dec'; node: string; amount: number };
const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('inc' as const, 'dec' as const),
  node: fc.constantFrom(...NODES),
  amount: fc.integer({ min: 1, max: 1000 }),
});
const apply = (c: PNCounter, op: Op): PNCounter => (op.kind === 'inc' ? increment(c, op.node, op.amount) : decrement(c, op.node, op.amount));

/** Plain form for deep equality (order-insensitive, absent = {0,0} is not assumed). */
const plain = (c: PNCounter) => Object.fromEntries([...c].sort(([a], [b]) => a.localeCompare(b)));

describe('PN-counter laws', () => {
  it('merge is commutative', () => {
    check(
      fc.property(counterArb, counterArb, (a, b) => {
        expect(plain(mergeCounters(a, b))).toEqual(plain(mergeCounters(b, a)));
      }),
    );
  });

  it('merge is associative', () => {
    check(
      fc.property(counterArb, counterArb, counterArb, (a, b, c) => {
        expect(plain(mergeCounters(mergeCounters(a, b), c))).toEqual(plain(mergeCounters(a, mergeCounters(b, c))));
      }),
    );
  });

  it('merge is idempotent and EMPTY_COUNTER is its identity', () => {
    check(
      fc.property(counterArb, (a) => {
        expect(plain(mergeCounters(a, a))).toEqual(plain(a));
        expect(plain(mergeCounters(a, EMPTY_COUNTER))).toEqual(plain(a));
        expect(plain(mergeCounters(EMPTY_COUNTER, a))).toEqual(plain(a));
      }),
    );
  });

  it('merge is monotone: each input is ≤ the merge, and the merge is the least upper bound', () => {
    check(
      fc.property(counterArb, counterArb, counterArb, (a, b, c) => {
        const m = mergeCounters(a, b);
        expect(counterLeq(a, m)).toBe(true);
        expect(counterLeq(b, m)).toBe(true);
        // Least: any common upper bound c' = c ⊔ a ⊔ b is above the merge.
        const upper = mergeCounters(c, m);
        expect(counterLeq(m, upper)).toBe(true);
        // If a ≤ b then a ⊔ b = b.
        if (counterLeq(a, b)) expect(countersEqual(m, b)).toBe(true);
      }),
    );
  });

  it('operations are inflations, and merging replicas of one history gives that history', () => {
    check(
      fc.property(counterArb, fc.array(opArb, { maxLength: 30, size: 'max' }), (start, ops) => {
        let c = start;
        let expected = counterValue(start);
        for (const op of ops) {
          const next = apply(c, op);
          expect(counterLeq(c, next)).toBe(true);
          expected += op.kind === 'inc' ? op.amount : -op.amount;
          c = next;
        }
        expect(counterValue(c)).toBe(expected);
        // A replica that saw a prefix of the history merges into the full one without changing it.
        let prefix = start;
        for (const op of ops.slice(0, Math.floor(ops.length / 2))) prefix = apply(prefix, op);
        expect(countersEqual(mergeCounters(c, prefix), c)).toBe(true);
      }),
    );
  });

  it('replicas that each raise only their own entries converge to Σ of all operations', () => {
    check(
      fc.property(fc.array(opArb, { maxLength: 40, size: 'max' }), fc.array(fc.nat(), { minLength: 8, maxLength: 8 }), (ops, order) => {
        // Node i applies only its own ops; then states are merged in an arbitrary order.
        const states = new Map<string, PNCounter>(NODES.map((n) => [n, EMPTY_COUNTER]));
        let sum = 0;
        for (const op of ops) {
          states.set(op.node, apply(states.get(op.node)!, op));
          sum += op.kind === 'inc' ? op.amount : -op.amount;
        }
        const list = [...states.values()];
        const perm = list.map((s, i) => [order[i] ?? 0, s] as const).sort((x, y) => x[0] - y[0]);
        let merged: PNCounter = EMPTY_COUNTER;
        for (const [, s] of perm) merged = mergeCounters(merged, s);
        expect(counterValue(merged)).toBe(sum);
      }),
    );
  });

  it('counterLeq treats a missing node as {p:0,n:0}', () => {
    const a: PNCounter = new Map([['x', { p: 0, n: 0 }]]);
    expect(counterLeq(a, EMPTY_COUNTER)).toBe(true);
    expect(counterLeq(new Map([['x', { p: 1, n: 0 }]]), EMPTY_COUNTER)).toBe(false);
    expect(countersEqual(a, EMPTY_COUNTER)).toBe(true);
  });

  it('increment and decrement do not mutate their input', () => {
    const a: PNCounter = new Map([['x', { p: 1, n: 0 }]]);
    increment(a, 'x', 5);
    decrement(a, 'x', 5);
    expect(plain(a)).toEqual({ x: { p: 1, n: 0 } });
  });
});
