/**
 * Near-limit sharing in the engine (src/engine/sharing.ts), with the view of the peers injected:
 * escrow first, then grants that wait for the peers' counts and keep their unused escrows.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { validateRules } from '../../src/engine/rules.ts';
import type { SharingView } from '../../src/engine/sharing.ts';

const rules = validateRules({
  version: 1,
  rules: [
    { id: 'shared', key: 's:*', limits: [{ limit: 100, window: '1h', algorithm: 'fixed-window' }] },
    { id: 'unshared', key: 'u:*', nearLimitSharing: false, limits: [{ limit: 100, window: '1h', algorithm: 'fixed-window' }] },
  ],
});

/** A view of two peers, b-0 and c-0, whose counts this node has merged up to `caughtUp`. */
class FakeView implements SharingView {
  caughtUp = 0;
  shares: Record<string, number> = { 'a-0': 0.3, 'b-0': 0.3, 'c-0': 0.3 };
  caughtUpTo(_now: number): number {
    return this.caughtUp;
  }
  peers(): readonly string[] {
    return ['b-0', 'c-0'];
  }
  share(_scope: string, node: string): number {
    return this.shares[node] ?? 0;
  }
  lagMs(): number {
    return 7;
  }
  margin(): number {
    return 0.1;
  }
  floor(): number {
    return 0.05;
  }
}

const T0 = Date.UTC(2026, 0, 1);

function setup() {
  const engine = new Engine({ nodeId: 'a-0', rules });
  const view = new FakeView();
  engine.setSharing(view);
  const scope = [...engine.allScopes()].find((c) => c.ruleId === 'shared')!.scope;
  return { engine, view, scope };
}

/** Merge `n` admissions of `node` on s:k (in T0's slot). */
function admittedBy(engine: Engine, scope: string, node: string, n: number): void {
  engine.applyRemote([{ scope, key: 's:k', slot: Math.floor(T0 / 3_600_000), node, p: n, n: 0 }], T0 + 1);
}

function hammer(engine: Engine, key: string, n: number, now: number): number {
  let admitted = 0;
  for (let i = 0; i < n; i++) if (engine.decide({ key }, now).allowed) admitted++;
  return admitted;
}

describe('near-limit sharing (engine)', () => {
  it('admits up to its escrow (floor(share × limit)) without waiting, then denies with SHARE_WAIT and the lag as retry hint', () => {
    const { engine } = setup();
    expect(hammer(engine, 's:k', 500, T0)).toBe(30);
    const d = engine.decide({ key: 's:k' }, T0);
    expect(d).toMatchObject({ allowed: false, code: 'SHARE_WAIT', retryAfterMs: 7, remaining: 70 });
    expect(engine.sharingCounters!.waits).toBeGreaterThan(0);
  });

  it("grants only once the peers' counts up to the ask are merged, following the key's demand and keeping the unused part of the peers that admitted on it", () => {
    const { engine, view, scope } = setup();
    expect(hammer(engine, 's:k', 500, T0)).toBe(30);
    // b-0 admitted 10 (merged): its unused escrow is 20. c-0 admitted nothing on the key: no reserve.
    admittedBy(engine, scope, 'b-0', 10);
    // Not caught up to the moment a-0 asked (T0): still waiting.
    view.caughtUp = T0 - 1;
    expect(engine.decide({ key: 's:k' }, T0 + 2).code).toBe('SHARE_WAIT');
    // Caught up. Shares follow the key's demand (30 : 10, margin 0.1, floor 0.05 over 3 nodes):
    // a-0 0.9 · (0.05 / 3 + 0.95 · 0.75) = 0.656, b-0 0.229. b-0 keeps ⌊22.9⌋ − 10 = 12 reserved;
    // free = 100 − 40 − 12 = 48 for a-0 and b-0: one unit each, then 46 by their shares,
    // a-0 0.741 · 46 = 34.1 → 34, b-0 11.9 → 11, the last unit to the larger remainder (b-0):
    // a-0's grant is 1 + 34 = 35.
    view.caughtUp = T0 + 2;
    expect(hammer(engine, 's:k', 50, T0 + 3)).toBe(35);
    expect(engine.sharingCounters!.grants).toBe(1);
  });

  it('nodes holding the same counts split the free units between them exactly: never the same unit twice', () => {
    // Three nodes, each after its escrow of 32 with the others' 32 merged: 4 units free.
    const ids = ['a-0', 'b-0', 'c-0'];
    const grants = ids.map((self) => {
      const engine = new Engine({ nodeId: self, rules });
      const view = new FakeView();
      view.shares = { 'a-0': 0.327, 'b-0': 0.327, 'c-0': 0.327 };
      view.peers = () => ids.filter((id) => id !== self);
      engine.setSharing(view);
      const scope = [...engine.allScopes()].find((c) => c.ruleId === 'shared')!.scope;
      expect(hammer(engine, 's:k', 500, T0)).toBe(32);
      for (const other of ids) if (other !== self) admittedBy(engine, scope, other, 32);
      // Caught up to the ask (T0), not beyond: one grant each.
      view.caughtUp = T0 + 1;
      return hammer(engine, 's:k', 500, T0 + 2);
    });
    expect(grants.reduce((x, y) => x + y, 0)).toBe(4);
    expect([...grants].sort()).toEqual([1, 1, 2]);
  });

  it('alone with the whole share, a node reaches the exact limit', () => {
    const { engine, view } = setup();
    view.shares = { 'a-0': 1 };
    view.peers = () => [];
    view.caughtUp = Infinity;
    expect(hammer(engine, 's:k', 500, T0)).toBe(100);
  });

  it('a rule with nearLimitSharing: false admits up to the limit as seen locally', () => {
    const { engine } = setup();
    expect(hammer(engine, 'u:k', 500, T0)).toBe(100);
  });

  it('grants expire with their window: a new window starts from the escrow again', () => {
    const { engine } = setup();
    expect(hammer(engine, 's:k', 500, T0)).toBe(30);
    expect(hammer(engine, 's:k', 500, T0 + 3_600_000)).toBe(30);
  });
});
