/**
 * Time to converge per stream (src/replication/catch-up.ts): a backlog of 10 batches or more
 * starts an episode, the first batch with none waiting ends it; short queues are not episodes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CatchUp } from '../../src/replication/catch-up.ts';
import { waitFor } from '../../support/wait.ts';
import { Sim } from '../helpers/sim.ts';

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

describe('catch-up episodes', () => {
  it('a backlog of 10 or more starts an episode that ends when none wait; short queues do not count', () => {
    const c = new CatchUp();
    c.note('S', 3, 1000);
    c.note('S', 0, 1001);
    expect(c.stats().S).toMatchObject({ episodes: 0, lastMs: null, since: null });
    c.note('S', 40, 2000);
    expect(c.stats().S!.since).toBe(2000);
    c.note('S', 12, 2100);
    c.note('S', 0, 2350);
    expect(c.stats().S).toEqual({ episodes: 1, lastMs: 350, lastBacklog: 41, lastAt: 2350, since: null });
  });

  it('after a region is cut off and rejoins, the nodes record how long they took to work through its backlog', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1 }, heartbeatMs: 50 });
    const [a, b] = sim.nodes as [NonNullable<Sim['nodes'][number]>, NonNullable<Sim['nodes'][number]>];
    await waitFor('the nodes to hear each other', () => a.replicator.peers.size === 1 && b.replicator.peers.size === 1, { timeoutMs: 3000, intervalMs: 5 });
    sim.bus.isolate('b');
    // b admits on 200 keys while cut off, one batch per macrotask.
    for (let i = 0; i < 200; i++) {
      b.check(`cut:${i}`);
      await new Promise((r) => setTimeout(r, 0));
    }
    sim.bus.rejoin('b');
    await waitFor('a to have merged every one of b\'s admissions', () => a.usage('cut:199') === 1 && a.usage('cut:0') === 1, { timeoutMs: 5000, intervalMs: 5 });
    const episodes = () => Object.values(a.replicator.catchUp.stats()).filter((s) => s.episodes > 0);
    await waitFor('a to record the end of the backlog', () => episodes().length > 0, { timeoutMs: 5000, intervalMs: 5 });
    expect(episodes()[0]!.lastBacklog).toBeGreaterThanOrEqual(10);
    expect(episodes()[0]!.lastMs).toBeGreaterThanOrEqual(0);
    expect((a.replicator.status() as { catchUp: object }).catchUp).toEqual(a.replicator.catchUp.stats());
  });
});
