/**
 * Clock skew between nodes (R21), injected through each node's clock, on the simulated
 * network: a node estimates each peer's clock offset from the batches' timestamps and reports
 * it; with ±1 s and ±5 s of skew the nodes still converge on the same counts and still hold a
 * shared key's limit; a cell more than a window ahead is refused (test/replication/refusal.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { validateRules } from '../../src/engine/rules.ts';
import { waitFor } from '../../support/wait.ts';
import { Sim, type SimNode } from '../helpers/sim.ts';

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

const RULES = validateRules({
  version: 1,
  rules: [
    { id: 'sliding', key: 'sw:*', limits: [{ limit: 10, window: '1m' }] },
    { id: 'fixed', key: 'fw:*', limits: [{ limit: 10, window: '1h', algorithm: 'fixed-window' }] },
  ],
});

const offsetOf = (n: SimNode, peer: string) => n.replicator.peers.stats(Date.now()).find((p) => p.node === peer)?.minOffsetMs;

describe('clock skew', () => {
  for (const skewMs of [1000, -1000, 5000, -5000]) {
    it(`a peer ${skewMs > 0 ? 'ahead' : 'behind'} by ${Math.abs(skewMs) / 1000} s: its offset is estimated and reported, counts converge and the limit holds`, async () => {
      sim = new Sim({ nodes: { a: 1, b: 1 }, rules: RULES, heartbeatMs: 100 });
      const a = await sim.add('a', 'a-0');
      const b = await sim.add('b', 'b-0', undefined, skewMs);
      await waitFor('a to hear b', () => offsetOf(a, 'b-0') !== undefined, { timeoutMs: 3000, intervalMs: 5 });
      await waitFor('b to hear a', () => offsetOf(b, 'a-0') !== undefined, { timeoutMs: 3000, intervalMs: 5 });
      // receive − sentAt: a peer ahead shows as a negative offset, one behind as a positive one.
      expect(Math.abs(offsetOf(a, 'b-0')! + skewMs)).toBeLessThan(200);
      expect(Math.abs(offsetOf(b, 'a-0')! - skewMs)).toBeLessThan(200);
      for (const key of ['sw:k', 'fw:k']) {
        let admitted = 0;
        for (let i = 0; i < 20; i++) {
          const [here, there] = i % 2 === 0 ? [a, b] : [b, a];
          // Near the limit a node may answer SHARE_WAIT until the other's counts are known: retry as told.
          let d = here.decide(key);
          if (d.code === 'SHARE_WAIT') await waitFor('the share wait to end', () => (d = here.decide(key)).code !== 'SHARE_WAIT', { timeoutMs: 2000, intervalMs: 1 });
          if (d.allowed) admitted++;
          // Each admission reaches the other before the next one: the shared limit holds.
          await waitFor('the other node to see it', () => there.usage(key) === here.usage(key), { timeoutMs: 2000, intervalMs: 1 });
        }
        expect(admitted, key).toBe(10);
        expect(a.usage(key)).toBe(10);
        expect(b.usage(key)).toBe(10);
      }
    });
  }
});
