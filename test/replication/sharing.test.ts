/**
 * Near-limit sharing on the simulated network (src/replication/memory-bus.ts): a burst that
 * hits every node at once admits about the limit, not one limit per node; the rest of the limit
 * is still there to take once the counts have crossed; the demand-weighted shares follow
 * where a key's traffic comes from.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { validateRules } from '../../src/engine/rules.ts';
import { mulberry32 } from '../../support/random.ts';
import { waitFor } from '../../support/wait.ts';
import { Sim, type SimNode } from '../helpers/sim.ts';

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

const rules = validateRules({
  version: 1,
  rules: [
    { id: 'l10', key: 'ten:*', limits: [{ limit: 10, window: '1h', algorithm: 'fixed-window' }] },
    { id: 'l100', key: 'hundred:*', limits: [{ limit: 100, window: '1h', algorithm: 'sliding-window' }] },
  ],
});

const macrotask = () => new Promise<void>((r) => setTimeout(r, 0));

async function connected(s: Sim): Promise<void> {
  for (const n of s.nodes) n.check('warm');
  await waitFor('every node to hear every other', () => s.nodes.every((n) => n.replicator.peers.size === s.nodes.length - 1), { timeoutMs: 3000, intervalMs: 5 });
  for (const n of s.nodes) n.replicator.sharing?.refresh(Date.now());
}

/** `total` checks of `key`, one per node in turn, with a macrotask (deliveries interleave) every `perTurn` rounds. */
async function burst(nodes: SimNode[], key: string, total: number, perTurn: number): Promise<number> {
  let admitted = 0;
  for (let sent = 0, round = 0; sent < total; round++) {
    for (const n of nodes) if (sent++ < total && n.check(key)) admitted++;
    if ((round + 1) % perTurn === 0) await macrotask();
  }
  return admitted;
}

async function converged(s: Sim, key: string, admitted: number): Promise<void> {
  await waitFor(`every node to count ${admitted} on ${key}`, () => s.usages(key).every((u) => u === admitted), { timeoutMs: 3000, intervalMs: 5 });
}

describe('near-limit sharing', () => {
  it('a burst of 5 × L sent to every node at once, before any count crosses, admits within the limit (L = 100 and L = 10)', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules, heartbeatMs: 100 });
    await connected(sim);
    // Synchronous: no replication at all between the checks. Each node takes its escrow, floor(0.98 / 3 × L).
    const hundred = await burst(sim.nodes, 'hundred:sync', 500, 500);
    expect(hundred).toBe(3 * 32);
    const ten = await burst(sim.nodes, 'ten:sync', 50, 50);
    expect(ten).toBe(3 * 3);
    await converged(sim, 'hundred:sync', hundred);
  });

  it('bursts interleaved with replication stay within 1.1 × L + 1, and every count converges (20 seeded runs)', async () => {
    const worst = { hundred: 0, ten: 0 };
    for (let seed = 1; seed <= 20; seed++) {
      sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules, heartbeatMs: 100, random: mulberry32(seed) });
      await connected(sim);
      const hundred = await burst(sim.nodes, `hundred:${seed}`, 500, 1 + (seed % 7));
      const ten = await burst(sim.nodes, `ten:${seed}`, 50, 1 + (seed % 3));
      await converged(sim, `hundred:${seed}`, hundred);
      await converged(sim, `ten:${seed}`, ten);
      worst.hundred = Math.max(worst.hundred, hundred);
      worst.ten = Math.max(worst.ten, ten);
      await sim.stop();
      sim = undefined;
    }
    console.log(`[figure] simulated interleaved bursts of 5 × L over 3 nodes, worst of 20: L=100 → ${worst.hundred}, L=10 → ${worst.ten}`);
    expect(worst.hundred).toBeLessThanOrEqual(111);
    expect(worst.ten).toBeLessThanOrEqual(12);
  });

  it('without sharing (nearLimitSharing: false), the same synchronous burst admits a whole limit on every node', async () => {
    const off = validateRules({ version: 1, rules: [{ id: 'off', key: '*', nearLimitSharing: false, limits: [{ limit: 100, window: '1h', algorithm: 'fixed-window' }] }] });
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules: off, heartbeatMs: 100 });
    await connected(sim);
    expect(await burst(sim.nodes, 'k', 500, 500)).toBe(300);
  });

  it('after the burst, the rest of the limit is admitted once the counts cross, and never more than the limit', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules, heartbeatMs: 50 });
    await connected(sim);
    let admitted = await burst(sim.nodes, 'hundred:rest', 500, 500);
    await waitFor('the whole limit to be admitted', async () => {
      admitted += await burst(sim!.nodes, 'hundred:rest', 3, 1);
      return admitted >= 100;
    }, { timeoutMs: 5000, intervalMs: 1 });
    await converged(sim, 'hundred:rest', admitted);
    expect(admitted).toBe(100);
  });

  it('one node alone sending a key: escrow first, then a grant once its peers have heartbeat; it reaches the whole limit and not more', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules, heartbeatMs: 50 });
    await connected(sim);
    const a = sim.nodes[0]!;
    let admitted = 0;
    const start = performance.now();
    await waitFor('node a to reach the limit', async () => {
      admitted += await burst([a], 'hundred:alone', 10, 10);
      return admitted >= 100;
    }, { timeoutMs: 5000, intervalMs: 1 });
    console.log(`[figure] one node alone on a fresh key (3 nodes, L = 100): ${admitted} admitted after ${Math.round(performance.now() - start)} ms`);
    expect(admitted).toBe(100);
    expect(a.decide('hundred:alone').allowed).toBe(false);
  });
});
