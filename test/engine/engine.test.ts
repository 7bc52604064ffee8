/**
 * Engine unit tests with injected time: rule matching, multi-limit rules, refunds, the key cap,
 * idle sweeps, restore from drained rows, remote cells ahead of the clock, and rule updates.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SlotEntry } from '../../crdt/index.ts';
import { Engine, scopeIdOf, type EngineOptions } from '../../src/engine/engine.ts';
import { validateRules } from '../../src/engine/rules.ts';
import type { RulesConfig } from '../../src/engine/types.ts';
import { check, mulberry32 } from '../helpers/fc.ts';

/** 2030-01-01T00:00:00Z: a boundary of every window used here. */
const T0 = Date.UTC(2030, 0, 1);

type RawLimit = { limit: number; window: string | number; algorithm?: string; burst?: number; slotsPerWindow?: number };
type RawRule = { id: string; key: string; priority?: number; metadata?: Record<string, string | string[]>; limits: RawLimit[] };

const rulesOf = (rules: RawRule[]): RulesConfig => validateRules({ version: 1, rules });
const engineOf = (rules: RawRule[], opts: Partial<EngineOptions> = {}) => new Engine({ nodeId: 'n0', rules: rulesOf(rules), ...opts });

function hit(engine: Engine, key: string, now: number, times = 1, cost = 1, metadata?: Record<string, string>): number {
  let ok = 0;
  for (let i = 0; i < times; i++) if (engine.decide({ key, cost, metadata }, now).allowed) ok++;
  return ok;
}

const usages = (engine: Engine, key: string, now: number) => engine.inspect(key, undefined, now).limits.map((l) => l.usage);

/** Σ of live store sizes: what liveKeys must equal. */
const storeKeys = (engine: Engine) => [...engine.allScopes()].reduce((n, cl) => n + cl.store.size, 0);

/** Every store's running sums equal the Σ of the cells it reports. */
function assertConsistent(engine: Engine): void {
  expect(engine.stats().liveKeys).toBe(storeKeys(engine));
  for (const cl of engine.allScopes()) {
    const perKey = new Map<string, number>();
    for (const c of cl.store.snapshot()) perKey.set(c.key, (perKey.get(c.key) ?? 0) + c.p - c.n);
    for (const [key, sum] of perKey) {
      const e = cl.store.find(key);
      expect(e, `cells for a key that is not live: ${key}`).toBeGreaterThanOrEqual(0);
      expect(cl.store.sumOf(e)).toBe(sum);
    }
  }
}

// ---------------------------------------------------------------------------------------------

describe('rule matching', () => {
  const one = (limit = 100): RawLimit[] => [{ limit, window: '1m' }];
  const engine = engineOf([
    { id: 'admin-exact', key: 'admin', priority: 10, limits: one() },
    { id: 'users', key: 'user:*', priority: 5, limits: one() },
    { id: 'vip-users', key: 'user:vip:*', priority: 5, metadata: { tier: ['gold', 'platinum'] }, limits: one() },
    { id: 'vip-users-high', key: 'user:vip:*', priority: 6, metadata: { tier: 'platinum', region: ['eu', 'us'] }, limits: one() },
    { id: 'api-free', key: 'api:*', priority: 1, metadata: { tier: 'free' }, limits: one() },
    { id: 'api-any', key: 'api:*', priority: 1, limits: one() },
    { id: 'api-late', key: 'api:*', priority: 1, metadata: { tier: 'paid' }, limits: one() },
    { id: 'catch-all', key: '*', priority: 0, limits: one() },
    { id: 'admin-low', key: 'admin', priority: -1, limits: one() },
  ]);
  const rule = (key: string, metadata?: Record<string, string>) => engine.decide({ key, metadata }, T0).ruleId;

  it('exact keys match only themselves', () => {
    expect(rule('admin')).toBe('admin-exact');
    expect(rule('admin2')).toBe('catch-all');
    expect(rule('Admin')).toBe('catch-all');
  });

  it('prefix patterns match every key that starts with the prefix, including the prefix itself', () => {
    expect(rule('user:1')).toBe('users');
    expect(rule('user:')).toBe('users');
    expect(rule('user')).toBe('catch-all');
  });

  it('"*" matches any key', () => {
    expect(rule('anything at all')).toBe('catch-all');
    expect(rule('x')).toBe('catch-all');
  });

  it('metadata: every constraint must match, a list allows any of its values', () => {
    expect(rule('user:vip:1', { tier: 'platinum', region: 'eu' })).toBe('vip-users-high');
    expect(rule('user:vip:1', { tier: 'platinum', region: 'us' })).toBe('vip-users-high');
    expect(rule('user:vip:1', { tier: 'platinum', region: 'ap' })).toBe('users'); // region fails; tie → file order
    expect(rule('user:vip:1', { tier: 'platinum' })).toBe('users'); // region missing
    expect(rule('user:vip:1', { tier: 'gold', region: 'eu' })).toBe('users');
    expect(rule('api:1', { tier: 'free' })).toBe('api-free');
    expect(rule('api:1', { tier: 'FREE' })).toBe('api-any');
    expect(rule('api:1')).toBe('api-any');
    // A rule without constraints ignores metadata.
    expect(rule('user:1', { anything: 'x' })).toBe('users');
  });

  it('the highest priority wins; ties keep file order', () => {
    expect(rule('admin')).toBe('admin-exact'); // not admin-low
    // users (5) and vip-users (5) both match: users comes first in the file.
    expect(rule('user:vip:1', { tier: 'gold' })).toBe('users');
    // api-any precedes api-late at the same priority, so api-late is never reached.
    expect(rule('api:1', { tier: 'paid' })).toBe('api-any');
  });

  it('no matching rule is a defined outcome: allowed, ruleId null, nothing counted', () => {
    const e = engineOf([{ id: 'only', key: 'k:*', limits: [{ limit: 1, window: '1m' }] }]);
    for (let i = 0; i < 5; i++) {
      expect(e.decide({ key: 'other' }, T0)).toEqual({ allowed: true, limit: 0, remaining: 0, resetMs: 0, retryAfterMs: 0, ruleId: null, policy: null });
    }
    expect(e.refund({ key: 'other', cost: 1 }, T0)).toEqual({ ruleId: null, refunded: 0 });
    expect(e.inspect('other', undefined, T0)).toEqual({ ruleId: null, limits: [] });
    expect(e.policies(null)).toEqual([]);
    expect(e.stats().liveKeys).toBe(0);
  });

  it('policies are named per rule and limit', () => {
    const e = engineOf([
      { id: 'single', key: 's', limits: [{ limit: 3, window: '10s' }] },
      { id: 'multi', key: 'm', limits: [{ limit: 3, window: '10s', algorithm: 'fixed-window' }, { limit: 10, window: '1m' }, { limit: 100, window: '1m', algorithm: 'fixed-window' }] },
    ]);
    expect(e.policies('single')).toEqual([{ name: 'single', limit: 3, windowSeconds: 10 }]);
    expect(e.policies('multi').map((p) => p.name)).toEqual(['multi/10s', 'multi/1m', 'multi/1m-2']);
    expect(e.policies('nope')).toEqual([]);
  });
});

describe('multi-limit rules', () => {
  const make = () =>
    engineOf([
      { id: 'm', key: '*', limits: [{ limit: 3, window: '10s', algorithm: 'fixed-window' }, { limit: 5, window: '1m' }] },
    ]);

  it('all limits must pass, and nothing is counted in any limit when one denies', () => {
    const e = make();
    expect(hit(e, 'k', T0, 3)).toBe(3);
    expect(usages(e, 'k', T0)).toEqual([3, 3]);
    const d = e.decide({ key: 'k' }, T0);
    expect(d).toMatchObject({ allowed: false, policy: 'm/10s', limit: 3, remaining: 0, retryAfterMs: 10_000 });
    expect(usages(e, 'k', T0)).toEqual([3, 3]); // the minute limit had room but counted nothing
    // Next 10 s window: the minute limit binds after 2 more.
    expect(hit(e, 'k', T0 + 10_000, 3)).toBe(2);
    expect(usages(e, 'k', T0 + 10_000)).toEqual([2, 5]);
    const d2 = e.decide({ key: 'k' }, T0 + 20_000);
    expect(d2).toMatchObject({ allowed: false, policy: 'm/1m', limit: 5 });
    expect(usages(e, 'k', T0 + 20_000)).toEqual([0, 5]); // the 10 s limit had room but counted nothing
  });

  it('an allowed decision reports the binding (fewest remaining) limit', () => {
    const e = make();
    expect(e.decide({ key: 'k' }, T0)).toMatchObject({ allowed: true, policy: 'm/10s', remaining: 2, limit: 3 });
    hit(e, 'k', T0, 2);
    hit(e, 'k', T0 + 10_000, 1); // 10s: 1 of 3, 1m: 4 of 5
    expect(e.decide({ key: 'k' }, T0 + 10_000)).toMatchObject({ allowed: true, policy: 'm/1m', remaining: 0, limit: 5 });
  });

  it('a denial reports the limit with the longest wait', () => {
    const e = engineOf([{ id: 'm', key: '*', limits: [{ limit: 3, window: '10s', algorithm: 'fixed-window' }, { limit: 4, window: '1m' }] }]);
    hit(e, 'k', T0, 3);
    // Cost 2 at T0 + 5 s: the 10 s window is full until T0 + 10 s; the minute needs the first
    // slot (3) to fade to 2, i.e. a third of the way through T0 + 60..66 s.
    const d = e.decide({ key: 'k', cost: 2 }, T0 + 5000);
    expect(d).toMatchObject({ allowed: false, policy: 'm/1m', limit: 4, retryAfterMs: 57_000 });
    // Cost 1 at the same time: only the 10 s limit denies.
    expect(e.decide({ key: 'k', cost: 1 }, T0 + 5000)).toMatchObject({ allowed: false, policy: 'm/10s', retryAfterMs: 5000 });
    expect(usages(e, 'k', T0 + 5000)).toEqual([3, 3]);
  });
});

describe('refunds', () => {
  it('restore capacity, and never refund more than was counted', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 5, window: '1m' }] }]);
    expect(hit(e, 'k', T0, 10)).toBe(5);
    expect(e.refund({ key: 'k', cost: 2 }, T0 + 1)).toEqual({ ruleId: 'r', refunded: 2 });
    expect(usages(e, 'k', T0 + 1)).toEqual([3]);
    expect(hit(e, 'k', T0 + 2, 10)).toBe(2);
    expect(e.refund({ key: 'k', cost: 100 }, T0 + 3)).toEqual({ ruleId: 'r', refunded: 5 });
    expect(usages(e, 'k', T0 + 3)).toEqual([0]);
    expect(e.refund({ key: 'k', cost: 1 }, T0 + 4)).toEqual({ ruleId: 'r', refunded: 0 });
    expect(usages(e, 'k', T0 + 4)).toEqual([0]); // never negative
    expect(hit(e, 'k', T0 + 5, 10)).toBe(5); // and never more than the limit after refunds
    expect(e.refund({ key: 'never-seen', cost: 1 }, T0)).toEqual({ ruleId: 'r', refunded: 0 });
  });

  it('refund only what is still inside the window', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 5, window: '10s', algorithm: 'fixed-window' }] }]);
    hit(e, 'k', T0, 5);
    expect(e.refund({ key: 'k', cost: 5 }, T0 + 10_000).refunded).toBe(0); // the window has reset
    hit(e, 'k', T0 + 10_000, 2);
    expect(e.refund({ key: 'k', cost: 5 }, T0 + 10_000).refunded).toBe(2);
  });

  it('refund in every limit of a multi-limit rule', () => {
    const e = engineOf([{ id: 'm', key: '*', limits: [{ limit: 3, window: '10s', algorithm: 'fixed-window' }, { limit: 5, window: '1m' }] }]);
    hit(e, 'k', T0, 3);
    expect(e.refund({ key: 'k', cost: 1 }, T0).refunded).toBe(1);
    expect(usages(e, 'k', T0)).toEqual([2, 2]);
  });

  it('refunds go through n: own p never decreases, and the refund replicates', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 5, window: '1m' }] }]);
    hit(e, 'k', T0, 3);
    e.drain();
    e.refund({ key: 'k', cost: 2 }, T0);
    const { own } = e.drain();
    expect(own).toEqual([expect.objectContaining({ key: 'k', node: 'n0', p: 3, n: 2 })]);
  });

  it('property: usage is always Σ admitted − Σ refunded, within [0, limit]', () => {
    const opArb = fc.record({ refund: fc.boolean(), cost: fc.integer({ min: 1, max: 4 }), dt: fc.integer({ min: 0, max: 400 }) });
    check(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(opArb, { maxLength: 60, size: 'max' }), (limit, ops) => {
        // Everything happens within 30 s of a 1 h sliding window: nothing expires or fades.
        const e = engineOf([{ id: 'r', key: '*', limits: [{ limit, window: '1h' }] }]);
        let now = T0;
        let net = 0;
        for (const op of ops) {
          now += op.dt;
          if (op.refund) {
            const { refunded } = e.refund({ key: 'k', cost: op.cost }, now);
            expect(refunded).toBeGreaterThanOrEqual(0);
            expect(refunded).toBe(Math.min(op.cost, net));
            net -= refunded;
          } else {
            const d = e.decide({ key: 'k', cost: op.cost }, now);
            expect(d.allowed).toBe(net + op.cost <= limit);
            if (d.allowed) net += op.cost;
          }
          expect(usages(e, 'k', now)).toEqual(e.stats().liveKeys > 0 ? [net] : [0]);
          expect(net).toBeGreaterThanOrEqual(0);
          expect(net).toBeLessThanOrEqual(limit);
        }
      }),
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('key cap', () => {
  it('with maxKeys = 100, 10 000 keys never hold more than 100 live; evictions are counted; limited keys survive', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 3, window: '1m' }] }], { maxKeys: 100, random: mulberry32(42) });
    // 20 keys at their limit.
    for (let i = 0; i < 20; i++) expect(hit(e, `hot${i}`, T0, 3)).toBe(3);
    for (let i = 0; i < 10_000; i++) {
      e.decide({ key: `cold${i}` }, T0 + i);
      if (i % 97 === 0) expect(e.stats().liveKeys).toBeLessThanOrEqual(100);
    }
    const stats = e.stats();
    expect(stats.liveKeys).toBe(100);
    expect(storeKeys(e)).toBe(100);
    expect(stats.capEvictions).toBe(20 + 10_000 - 100);
    // None of the limited keys was evicted: each is still denied.
    for (let i = 0; i < 20; i++) {
      expect(usages(e, `hot${i}`, T0 + 10_000)).toEqual([3]);
      expect(e.decide({ key: `hot${i}` }, T0 + 10_000).allowed).toBe(false);
    }
    assertConsistent(e);
  });

  it('among keys equally far from their limit, the one idle longest is evicted', () => {
    // `random` alternates so that the recently active key is sampled first.
    for (const seq of [[0.9, 0.1], [0.1, 0.9]]) {
      let i = 0;
      const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 10, window: '1m' }] }], { maxKeys: 2, random: () => seq[i++ % 2] });
      hit(e, 'old', T0);
      e.refund({ key: 'old', cost: 1 }, T0); // usage 0
      hit(e, 'new', T0 + 30_000);
      e.refund({ key: 'new', cost: 1 }, T0 + 30_000); // usage 0, active 5 slots later
      hit(e, 'third', T0 + 30_000);
      expect(e.stats().capEvictions).toBe(1);
      expect(usages(e, 'new', T0 + 30_000)).toEqual([0]);
      const store = [...e.allScopes()][0].store;
      expect(store.find('old')).toBe(-1);
      expect(store.find('new')).toBeGreaterThanOrEqual(0);
    }
  });

  it('the cap is hard: when every key is limited, one is evicted anyway', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 1, window: '1m' }] }], { maxKeys: 10, random: mulberry32(7) });
    for (let i = 0; i < 10; i++) hit(e, `k${i}`, T0);
    hit(e, 'new', T0);
    expect(e.stats()).toMatchObject({ liveKeys: 10, capEvictions: 1 });
    assertConsistent(e);
  });

  it('is summed over all limits and rules', () => {
    const e = engineOf(
      [
        { id: 'm', key: 'm:*', limits: [{ limit: 5, window: '10s' }, { limit: 50, window: '1h' }] },
        { id: 'r', key: '*', limits: [{ limit: 5, window: '1m' }] },
      ],
      { maxKeys: 50, random: mulberry32(1) },
    );
    for (let i = 0; i < 500; i++) {
      hit(e, i % 2 ? `m:${i}` : `x${i}`, T0 + i);
      expect(e.stats().liveKeys).toBeLessThanOrEqual(50);
    }
    expect(storeKeys(e)).toBe(e.stats().liveKeys);
    assertConsistent(e);
  });

  it('a multi-limit decision never counts into an entry evicted while it creates another', () => {
    // Key x lives only in the hour limit (its 1 s entry was swept); the cap is full. Deciding x
    // creates its 1 s entry, which evicts the least useful key: possibly x's own hour entry.
    const e = engineOf(
      [
        { id: 'm', key: 'm:*', limits: [{ limit: 5, window: '1s' }, { limit: 1000, window: '1h' }] },
        { id: 'o', key: 'o:*', limits: [{ limit: 2, window: '1h' }] },
      ],
      { maxKeys: 2, random: mulberry32(3) },
    );
    hit(e, 'm:x', T0);
    e.sweep(T0 + 5000); // drops m:x from the 1 s limit only
    expect(e.stats().liveKeys).toBe(1);
    hit(e, 'o:z', T0 + 5000); // o:z at 1 of 2: more useful than m:x at 1 of 1000
    expect(e.stats().liveKeys).toBe(2);
    expect(e.decide({ key: 'm:x' }, T0 + 5000).allowed).toBe(true);
    assertConsistent(e);
    // A new key must start from nothing in both limits.
    expect(e.decide({ key: 'm:w' }, T0 + 5000).allowed).toBe(true);
    expect(usages(e, 'm:w', T0 + 5000)).toEqual([1, 1]);
    assertConsistent(e);
    expect(e.stats().liveKeys).toBeLessThanOrEqual(2);
  });

  it('property: under any cap and traffic, live keys ≤ cap, bookkeeping is consistent, and no key inherits counts', () => {
    const opArb = fc.record({ key: fc.integer({ min: 0, max: 30 }), dt: fc.integer({ min: 0, max: 1500 }), sweep: fc.boolean() });
    check(
      // The cap must hold at least one key in every limit of a rule (2 here).
      fc.property(fc.integer({ min: 2, max: 8 }), fc.nat(), fc.array(opArb, { maxLength: 50, size: 'max' }), (maxKeys, seed, ops) => {
        const e = engineOf(
          [
            { id: 'm', key: 'm*', limits: [{ limit: 3, window: '1s' }, { limit: 100, window: '1h' }] },
            { id: 'o', key: '*', limits: [{ limit: 2, window: '1h', algorithm: 'fixed-window' }] },
          ],
          { maxKeys, random: mulberry32(seed) },
        );
        const admitted = new Map<string, number>();
        let now = T0;
        for (const op of ops) {
          now += op.dt;
          const key = op.key % 2 ? `m${op.key}` : `o${op.key}`;
          if (e.decide({ key }, now).allowed) admitted.set(key, (admitted.get(key) ?? 0) + 1);
          if (op.sweep) e.sweep(now);
          expect(e.stats().liveKeys).toBeLessThanOrEqual(maxKeys);
        }
        assertConsistent(e);
        // Counted cells never exceed what was admitted for that key (no stale counts inherited).
        const counted = new Map<string, number>();
        for (const c of e.snapshot()) if (c.scope.startsWith('m|sw|3600000')) counted.set(c.key, (counted.get(c.key) ?? 0) + c.p);
        for (const [key, p] of counted) expect(p).toBeLessThanOrEqual(admitted.get(key) ?? 0);
      }),
    );
  });
});

describe('idle sweep', () => {
  it('drops keys whose every slot has expired, and only those', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 5, window: '10s' }] }]);
    hit(e, 'old', T0);
    hit(e, 'recent', T0 + 9000);
    expect(e.sweep(T0 + 10_999)).toBe(0); // 10 slots of 1 s + the fading one: 'old' still has its slot
    expect(e.sweep(T0 + 11_000)).toBe(1);
    expect(e.stats()).toMatchObject({ liveKeys: 1, idleEvictions: 1 });
    expect(e.scope(scopeIdOf('r', e.rulesConfig.rules[0].limits[0], 10))!.store.find('old')).toBe(-1);
    expect(e.sweep(T0 + 19_999)).toBe(0);
    expect(e.sweep(T0 + 20_000)).toBe(1);
    expect(e.stats()).toMatchObject({ liveKeys: 0, idleEvictions: 2 });
    // A swept key starts afresh.
    expect(hit(e, 'old', T0 + 20_000, 10)).toBe(5);
  });

  it('a read is activity: a key read at t is kept until its head slot has left the window', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 5, window: '10s' }] }]);
    hit(e, 'k', T0, 5);
    expect(e.decide({ key: 'k' }, T0 + 5000).allowed).toBe(false); // denied, but the key is active
    expect(e.sweep(T0 + 11_000)).toBe(0);
    expect(e.sweep(T0 + 16_000)).toBe(1);
  });

  it('scans at most `budget` entries per limit per call', () => {
    const e = engineOf([{ id: 'r', key: '*', limits: [{ limit: 5, window: '1s' }] }]);
    for (let i = 0; i < 100; i++) hit(e, `k${i}`, T0);
    expect(e.sweep(T0 + 5000, 30)).toBe(30);
    expect(e.sweep(T0 + 5000, 30)).toBe(30);
    expect(e.sweep(T0 + 5000)).toBe(40);
    expect(e.stats().liveKeys).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------

const MIXED: RawRule[] = [
  { id: 'sw', key: 'sw:*', limits: [{ limit: 10, window: '1m' }] },
  { id: 'fw', key: 'fw:*', limits: [{ limit: 10, window: '1m', algorithm: 'fixed-window' }] },
  { id: 'tb', key: 'tb:*', limits: [{ limit: 60, window: '1m', algorithm: 'token-bucket', burst: 10 }] },
  { id: 'multi', key: 'm:*', limits: [{ limit: 4, window: '10s' }, { limit: 10, window: '1h', algorithm: 'fixed-window' }] },
];

describe('restore', () => {
  it('a fresh engine restored from drained rows answers the same', () => {
    const a = engineOf(MIXED);
    const rows: SlotEntry[] = [];
    const keys = ['sw:a', 'sw:b', 'fw:a', 'tb:a', 'm:a', 'm:b'];
    let now = T0 + 1234;
    for (let round = 0; round < 6; round++) {
      for (const [i, key] of keys.entries()) hit(a, key, now, (i + round) % 7);
      a.refund({ key: 'sw:a', cost: 1 }, now);
      // Remote contributions are persisted (and so restored) as well.
      a.applyRemote([{ scope: a.inspect('sw:b', undefined, now).limits[0].scope, key: 'sw:b', slot: Math.floor(now / 6000), node: 'eu-west-1', p: round + 1, n: 0 }], now);
      rows.push(...a.drain().rows);
      now += 2345;
    }
    const b = new Engine({ nodeId: 'n0', rules: rulesOf(MIXED) });
    expect(b.restore(rows, now)).toBeGreaterThan(0);
    expect(b.drain()).toEqual({ rows: [], own: [] }); // restored rows are not written back
    for (const key of keys) {
      expect(b.inspect(key, undefined, now)).toEqual(a.inspect(key, undefined, now));
    }
    for (const key of keys) {
      for (let i = 0; i < 12; i++) expect(b.decide({ key }, now + i * 100)).toEqual(a.decide({ key }, now + i * 100));
    }
  });

  it('skips rows that expired while the node was down, and rows of unknown scopes', () => {
    const a = engineOf(MIXED);
    hit(a, 'sw:a', T0, 10);
    hit(a, 'fw:a', T0, 10);
    const { rows } = a.drain();
    const b = new Engine({ nodeId: 'n0', rules: rulesOf(MIXED) });
    expect(b.restore([...rows, { scope: 'gone|sw|1|1', key: 'x', slot: 1, node: 'n0', p: 1, n: 0 }], T0 + 3_600_000)).toBe(0);
    expect(b.stats().liveKeys).toBe(0);
    const c = new Engine({ nodeId: 'n0', rules: rulesOf(MIXED) });
    c.restore(rows, T0 + 59_000);
    expect(c.decide({ key: 'sw:a' }, T0 + 59_000).allowed).toBe(false); // a limited key stays limited
    expect(c.decide({ key: 'fw:a' }, T0 + 59_000).allowed).toBe(false);
    expect(c.decide({ key: 'fw:a' }, T0 + 60_000).allowed).toBe(true);
  });
});

describe('remote cells', () => {
  const make = () => engineOf([{ id: 'r', key: '*', limits: [{ limit: 10, window: '1m' }] }]);
  const scopeOf = (e: Engine) => e.inspect('k', undefined, T0).limits[0].scope;

  it('count towards usage and replicate nothing back as own', () => {
    const e = make();
    const slot = Math.floor(T0 / 6000);
    expect(e.applyRemote([{ scope: scopeOf(e), key: 'k', slot, node: 'n1', p: 7, n: 1 }], T0)).toBe(1);
    expect(usages(e, 'k', T0)).toEqual([6]);
    expect(hit(e, 'k', T0, 10)).toBe(4);
    // Idempotent: a duplicate changes nothing.
    expect(e.applyRemote([{ scope: scopeOf(e), key: 'k', slot, node: 'n1', p: 7, n: 1 }], T0)).toBe(0);
    const { rows, own } = e.drain();
    expect(own.every((c) => c.node === 'n0')).toBe(true);
    expect(rows.some((c) => c.node === 'n1')).toBe(true);
  });

  it('for unknown scopes are counted and skipped', () => {
    const e = make();
    expect(e.applyRemote([{ scope: 'other|sw|60000|6000', key: 'k', slot: 1, node: 'n1', p: 1, n: 0 }], T0)).toBe(0);
    expect(e.stats().unknownScopeCells).toBe(1);
    expect(e.stats().liveKeys).toBe(0);
  });

  it('ahead of the local clock are held, then applied by sweep() once time arrives', () => {
    const e = make();
    const scope = scopeOf(e);
    const slot = Math.floor(T0 / 6000);
    // One slot ahead is merged at once.
    expect(e.applyRemote([{ scope, key: 'k', slot: slot + 1, node: 'n1', p: 2, n: 0 }], T0)).toBe(1);
    // Five slots ahead (30 s) is held.
    expect(e.applyRemote([{ scope, key: 'k', slot: slot + 5, node: 'n2', p: 5, n: 0 }], T0)).toBe(0);
    expect(e.stats().futureCellsHeld).toBe(1);
    expect(usages(e, 'k', T0)).toEqual([2]);
    e.sweep(T0 + 6000 * 3); // still 2 slots ahead
    expect(e.stats().futureCellsHeld).toBe(1);
    expect(usages(e, 'k', T0 + 6000 * 3)).toEqual([2]);
    e.sweep(T0 + 6000 * 4); // one slot ahead: applied
    expect(e.stats().futureCellsHeld).toBe(0);
    expect(usages(e, 'k', T0 + 6000 * 4)).toEqual([7]);
    e.sweep(T0 + 6000 * 5);
    expect(usages(e, 'k', T0 + 6000 * 5)).toEqual([7]);
  });
});

describe('setRules', () => {
  const rules = (limit: number, window = '1m', algorithm = 'sliding-window'): RulesConfig =>
    rulesOf([
      { id: 'r', key: 'r:*', limits: [{ limit, window, algorithm }] },
      { id: 'keep', key: '*', limits: [{ limit: 5, window: '1m' }] },
    ]);

  it('keeps counters for unchanged scopes and applies a new limit value at once', () => {
    const e = new Engine({ nodeId: 'n0', rules: rules(10) });
    expect(hit(e, 'r:a', T0, 6)).toBe(6);
    expect(hit(e, 'other', T0, 3)).toBe(3);
    e.setRules(rules(8));
    expect(usages(e, 'r:a', T0)).toEqual([6]);
    expect(e.decide({ key: 'r:a' }, T0)).toMatchObject({ allowed: true, limit: 8, remaining: 1 });
    expect(hit(e, 'r:a', T0, 5)).toBe(1);
    e.setRules(rules(5)); // now over the new limit: denied at once
    expect(e.decide({ key: 'r:a' }, T0)).toMatchObject({ allowed: false, limit: 5, remaining: 0 });
    e.setRules(rules(20));
    expect(hit(e, 'r:a', T0, 20)).toBe(12);
    // The untouched rule kept its counts throughout.
    expect(usages(e, 'other', T0)).toEqual([3]);
    expect(e.stats().liveKeys).toBe(2);
  });

  it('a changed window or algorithm is a new scope that starts from zero, and dropped scopes release their keys', () => {
    const e = new Engine({ nodeId: 'n0', rules: rules(10) });
    hit(e, 'r:a', T0, 10);
    hit(e, 'other', T0, 1);
    e.setRules(rules(10, '2m'));
    expect(usages(e, 'r:a', T0)).toEqual([0]);
    expect(e.stats().liveKeys).toBe(1);
    hit(e, 'r:a', T0, 1);
    e.setRules(rules(10, '2m', 'fixed-window'));
    expect(usages(e, 'r:a', T0)).toEqual([0]);
    expect(e.stats()).toMatchObject({ liveKeys: 1, scopes: 2 });
    expect(storeKeys(e)).toBe(1);
  });
});
