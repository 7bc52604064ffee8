/**
 * The replicator's logic on a simulated network (src/replication/memory-bus.ts): eager
 * shipping and coalescing, the exhaustion signal, heartbeats and staleness, catch-up after
 * partitions with random delays and duplicated batches, recovery of what a crashed node had
 * shipped, and an overshoot estimate that never reads below what happened.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { sleep, waitFor } from '../../support/wait.ts';
import { Sim } from '../helpers/sim.ts';

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

const converged = (s: Sim, key: string, expected: number) => () => s.usages(key).every((u) => u === expected);

describe('shipping', () => {
  it('ships a change at once, with no flush timer involved (persistence flushes hourly here)', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 } });
    const [a] = sim.nodes;
    expect(a.check('k1')).toBe(true);
    await waitFor('b and c to see the admission', converged(sim, 'k1', 1), { timeoutMs: 2000, intervalMs: 1 });
    expect(a.persistence.stats.flushes).toBe(0);
    expect(a.replicator.shipper.stats.rounds).toBeGreaterThanOrEqual(1);
  });

  it('while a publish is in flight, later changes accumulate and go out together', async () => {
    let delay = 0;
    sim = await Sim.start({ nodes: { a: 1, b: 1 }, delayMs: () => delay });
    const [a] = sim.nodes;
    delay = 50;
    a.check('k0');
    await waitFor('the first publish to be in flight', () => a.replicator.shipper.inFlight > 0, { timeoutMs: 1000, intervalMs: 1 });
    for (let i = 0; i < 200; i++) {
      a.check(`k${i % 50}`);
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    delay = 0;
    await waitFor('b to see all 201 admissions', () => sim!.nodes[1].engine.inspect('k0', undefined, Date.now()).limits[0].usage === 5 && sim!.usages('k49')[1] === 4, { timeoutMs: 3000, intervalMs: 2 });
    const st = a.replicator.shipper.stats;
    // 201 admissions in at most a handful of rounds: the first alone, the rest while it was in flight.
    expect(st.rounds).toBeLessThanOrEqual(4);
    expect(st.largestRound).toBeGreaterThanOrEqual(49);
  });

  it('a key nearing its limit ships ahead of a batch still in flight (exhaustion signal)', async () => {
    let delay = 0;
    sim = await Sim.start({ nodes: { a: 1, b: 1 }, delayMs: () => delay });
    const [a, b] = sim.nodes;
    delay = 400; // the next ordinary batch takes 400 ms
    a.check('other');
    await waitFor('a batch in flight', () => a.replicator.shipper.inFlight > 0, { timeoutMs: 1000, intervalMs: 1 });
    delay = 1;
    for (let i = 0; i < 10; i++) expect(a.check('s:hot')).toBe(true); // limit 10: from the fifth on, each is urgent
    await waitFor('b to see s:hot at its limit', () => b.usage('s:hot') === 10, { timeoutMs: 300, intervalMs: 1 });
    expect(b.usage('other')).toBe(0); // the ordinary batch is still travelling
    expect(b.check('s:hot')).toBe(false);
    expect(a.replicator.shipper.stats.priority).toBeGreaterThanOrEqual(1);
  });

  it('when the process is busy, ordinary batches linger (rounds at least lingerMs apart) while keys near their limit still go at once', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1 }, lingerMs: 300, busyUtilization: -1 });
    const [a, b] = sim.nodes;
    a.check('warm');
    await waitFor('the first round', () => a.replicator.shipper.stats.rounds === 1, { timeoutMs: 1000, intervalMs: 1 });
    const t0 = performance.now();
    for (let i = 0; i < 40; i++) {
      a.check(`far${i % 4}`); // limit 1 000 000: far from it
      await sleep(5);
    }
    // 40 admissions over ~200 ms ship in one or two rounds, not forty.
    await waitFor('b to see all of them', () => b.usage('far3') === 10, { timeoutMs: 2000, intervalMs: 2 });
    expect(a.replicator.shipper.stats.rounds).toBeLessThanOrEqual(1 + Math.ceil((performance.now() - t0) / 300) + 1);
    expect(a.replicator.shipper.stats.lingered).toBeGreaterThan(0);
    // A key past half its limit is not held back by the linger.
    for (let i = 0; i < 6; i++) a.check('s:near');
    await waitFor('b to see s:near within far less than the linger', () => b.usage('s:near') === 6, { timeoutMs: 150, intervalMs: 1 });
  });

  it('a publish that fails (server lost) loses nothing: its cells ship again on reconnect', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1 } });
    const [a, b] = sim.nodes;
    sim.bus.disconnect(a.id);
    for (let i = 0; i < 30; i++) a.check(`d${i % 3}`);
    await sleep(30);
    expect(b.usage('d0')).toBe(0);
    sim.bus.reconnect(a.id);
    await waitFor('b to see every admission', () => ['d0', 'd1', 'd2'].every((k) => b.usage(k) === 10), { timeoutMs: 3000, intervalMs: 2 });
  });

  it('an idle node sends heartbeats; its staleness grows while it is cut off and drops on heal', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1 }, heartbeatMs: 40 });
    const [a, b] = sim.nodes;
    const staleness = () => (b.replicator.status().peers as { node: string; stalenessMs: number; heartbeats: number }[]).find((p) => p.node === a.id);
    await waitFor('heartbeats from a', () => (staleness()?.heartbeats ?? 0) >= 2, { timeoutMs: 2000, intervalMs: 5 });
    sim.bus.isolate('a');
    await waitFor('a to look stale', () => (staleness()?.stalenessMs ?? 0) > 300, { timeoutMs: 2000, intervalMs: 10 });
    sim.bus.rejoin('a');
    await waitFor('a to be fresh again', () => (staleness()?.stalenessMs ?? Infinity) < 100, { timeoutMs: 2000, intervalMs: 5 });
  });
});

describe('convergence', () => {
  it('after partitions, random delays, interleaving and duplicated batches, every node holds the exact total', async () => {
    sim = await Sim.start({ nodes: { a: 2, b: 1, c: 1 }, duplicateRate: 0.3, delayMs: () => Math.floor(Math.random() * 5) });
    const keys = ['x', 'y', 'z'];
    const admitted = new Map<string, number>(keys.map((k) => [k, 0]));
    const round = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const node = sim!.nodes[Math.floor(Math.random() * sim!.nodes.length)];
        const key = keys[i % keys.length];
        if (node.check(key)) admitted.set(key, admitted.get(key)! + 1);
        if (i % 7 === 0) await sleep(1);
      }
    };
    await round(300);
    sim.bus.isolate('b');
    sim.bus.cut('a', 'c');
    await round(300);
    sim.bus.rejoin('b');
    await round(100);
    sim.bus.heal('a', 'c');
    for (const k of keys) {
      await waitFor(`every node to agree on ${k}`, converged(sim, k, admitted.get(k)!), { timeoutMs: 5000, intervalMs: 5, describe: () => `${k}: ${sim!.usages(k).join(', ')} want ${admitted.get(k)}` });
    }
  });

  it('a node that crashed after shipping but before writing to disk gets its own counts back before it counts on', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1 } });
    const a = sim.node('a-0');
    for (let i = 0; i < 7; i++) a.check('own');
    await waitFor('b to see 7', () => sim!.node('b-0').usage('own') === 7, { timeoutMs: 2000, intervalMs: 2 });
    const store = await sim.crash('a-0'); // nothing was flushed: the store is empty
    expect(store.positions()).toEqual({});
    const again = await sim.add('a', 'a-0', store);
    await waitFor('a-0 to get its own 7 back', () => again.usage('own') === 7, { timeoutMs: 2000, intervalMs: 2 });
    again.check('own');
    await waitFor('b to see 8', () => sim!.node('b-0').usage('own') === 8, { timeoutMs: 2000, intervalMs: 2 });
  });
});

describe('overshoot estimate', () => {
  it('never reads below the overshoot that happened, right after a burst on every node', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, delayMs: () => 3 });
    // Every node admits its whole limit before hearing from the others.
    let admitted = 0;
    for (const n of sim.nodes) for (let i = 0; i < 12; i++) if (n.check('s:burst')) admitted++;
    await waitFor('convergence', converged(sim, 's:burst', admitted), { timeoutMs: 2000, intervalMs: 2 });
    const over = admitted - 10;
    expect(over).toBeGreaterThan(0);
    for (const n of sim.nodes) {
      const est = n.replicator.overshoot().find((o) => o.ruleId === 'small')!;
      expect(est.observed).toBe(over);
      expect(est.bound).toBeGreaterThanOrEqual(over);
    }
  });
});

describe('limits on peers', () => {
  it('refuses batches from a new node once it tracks the most peers it accepts, and keeps merging the known ones', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1, d: 1 }, maxPeers: 2 });
    const a = sim.node('a-0');
    for (const n of sim.nodes.slice(1)) n.check('k');
    const refused = () => ((a.replicator.status().refusedByCode as Record<string, number>).REPLICATION_TOO_MANY_PEERS ?? 0);
    await waitFor('a to refuse the third peer', () => refused() >= 1, { timeoutMs: 3000, intervalMs: 2 });
    expect(a.replicator.peers.size).toBe(2);
    expect(a.usage('k')).toBe(2);
    expect(a.replicator.status().lastRefused).toMatch(/^REPLICATION_TOO_MANY_PEERS/);
    // A known peer's next batch is still merged.
    const known = sim.nodes.find((n) => n !== a && a.replicator.peers.has(n.id))!;
    known.check('k2');
    await waitFor('a to merge the known peer', () => a.usage('k2') === 1, { timeoutMs: 3000, intervalMs: 2 });
  });
});
