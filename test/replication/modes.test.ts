/**
 * Degradation modes on the simulated network (src/replication/memory-bus.ts): when peers go
 * silent a node applies each rule's mode — `share` keeps every side of a partition within its
 * share of the limit (all sides together within the limit), `open` lets each side admit a
 * whole limit, `closed` denies — shares follow the last complete window's demand, and a node
 * leaves the mode as soon as its peers are heard again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { validateRules } from '../../src/engine/rules.ts';
import { DegradationMonitor } from '../../src/replication/modes.ts';
import { Peers } from '../../src/replication/peers.ts';
import { waitFor } from '../../support/wait.ts';
import { Sim, type SimNode } from '../helpers/sim.ts';

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

const LIMIT = 100;
const rules = (window: string) =>
  validateRules({
    version: 1,
    rules: [
      { id: 'shared', key: 'sh:*', limits: [{ limit: LIMIT, window, algorithm: 'fixed-window' }] },
      { id: 'open', key: 'op:*', degraded: 'open', limits: [{ limit: LIMIT, window, algorithm: 'fixed-window' }] },
      { id: 'closed', key: 'cl:*', degraded: 'closed', limits: [{ limit: LIMIT, window, algorithm: 'fixed-window' }] },
    ],
  });
const MODES = { staleAfterMs: 400 };
const degraded = (nodes: SimNode[]) => () => nodes.every((n) => n.engine.degraded !== null);
const healthy = (nodes: SimNode[]) => () => nodes.every((n) => n.engine.degraded === null);

function hammer(n: SimNode, key: string, times: number): number {
  let admitted = 0;
  for (let i = 0; i < times; i++) if (n.check(key)) admitted++;
  return admitted;
}

async function partitionAll(s: Sim): Promise<void> {
  for (const r of ['a', 'b', 'c']) s.bus.isolate(r);
  await waitFor('every node to notice its peers are silent', degraded(s.nodes), { timeoutMs: 3000, intervalMs: 10 });
}

describe('degradation modes', () => {
  it('healthy nodes with heartbeats are not degraded; a full partition degrades every node, with the reason', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules: rules('1h'), heartbeatMs: 100, modes: { staleAfterMs: 1000 } });
    for (const n of sim.nodes) n.check('sh:warm');
    await waitFor('every node to hear every other', () => sim!.nodes.every((n) => n.replicator.peers.size === 2), { timeoutMs: 3000, intervalMs: 5 });
    // Several heartbeat intervals later (idle nodes send one every 100 ms), nobody is degraded.
    const heartbeats = () => Math.min(...sim!.nodes.flatMap((n) => n.replicator.peers.stats(Date.now()).map((p) => p.heartbeats)));
    const before = heartbeats();
    await waitFor('a few heartbeats from every peer', () => heartbeats() >= before + 5, { timeoutMs: 3000, intervalMs: 10 });
    expect(sim.nodes.every((n) => n.engine.degraded === null)).toBe(true);
    await partitionAll(sim);
    const st = sim.nodes[0]!.replicator.status().degradation as { degraded: boolean; reason: string; stalePeers: string[] };
    expect(st.degraded).toBe(true);
    expect(st.stalePeers.sort()).toEqual(['b-0', 'c-0']);
    expect(st.reason).toMatch(/peers b-0, c-0 silent for more than 1000 ms/);
  });

  it('share: under a full partition, every side admits at most its share and all sides together stay within the limit; open admits a limit per side; closed denies', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules: rules('1h'), heartbeatMs: 100, modes: MODES });
    for (const n of sim.nodes) n.check('warm');
    await waitFor('every node to hear every other', () => sim!.nodes.every((n) => n.replicator.peers.size === 2), { timeoutMs: 3000, intervalMs: 5 });
    await partitionAll(sim);
    // No demand in a previous window yet: equal shares of 0.98 / 3 each.
    const shared = sim.nodes.map((n) => hammer(n, 'sh:k', 5 * LIMIT));
    for (const a of shared) expect(a).toBe(Math.floor((0.98 / 3) * LIMIT));
    expect(shared.reduce((x, y) => x + y, 0)).toBeLessThanOrEqual(LIMIT);
    const denial = sim.nodes[0]!.decide('sh:k');
    expect(denial.allowed).toBe(false);
    expect(denial.code).toBe('DEGRADED_SHARE');
    const open = sim.nodes.map((n) => hammer(n, 'op:k', 5 * LIMIT));
    expect(open).toEqual([LIMIT, LIMIT, LIMIT]);
    const closed = sim.nodes.map((n) => n.decide('cl:k'));
    expect(closed.every((d) => !d.allowed && d.code === 'DEGRADED_CLOSED')).toBe(true);
    expect(sim.nodes[0]!.engine.stats().degradedShareDenials).toBeGreaterThan(0);
  });

  it('on heal, nodes leave the mode within a second and the limit is global again', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 }, rules: rules('1h'), heartbeatMs: 100, modes: MODES });
    for (const n of sim.nodes) n.check('warm');
    await waitFor('every node to hear every other', () => sim!.nodes.every((n) => n.replicator.peers.size === 2), { timeoutMs: 3000, intervalMs: 5 });
    await partitionAll(sim);
    const admitted = sim.nodes.map((n) => hammer(n, 'sh:k', LIMIT)).reduce((x, y) => x + y, 0);
    for (const r of ['a', 'b', 'c']) sim.bus.rejoin(r);
    const healedAt = performance.now();
    await waitFor('every node to leave the mode', healthy(sim.nodes), { timeoutMs: 1000, intervalMs: 5 });
    const left = performance.now() - healedAt;
    await waitFor('the counts to converge', () => sim!.usages('sh:k').every((u) => u === admitted), { timeoutMs: 2000, intervalMs: 5 });
    // Healthy again: the rest of the limit is there to take, globally (near the limit, in
    // grants that each wait for the peers' counts), and not one more.
    let more = 0;
    await waitFor('the rest of the limit to be admitted', () => {
      for (const n of sim!.nodes) more += hammer(n, 'sh:k', 1);
      return admitted + more >= LIMIT;
    }, { timeoutMs: 5000, intervalMs: 5 });
    expect(admitted + more).toBe(LIMIT);
    expect(left).toBeLessThan(1000);
  });

  it("share: shares follow the last complete window's demand, with a floor (monitor on an injected clock)", () => {
    const windowMs = 3000;
    const engine = new Engine({ nodeId: 'a-0', rules: rules(`${windowMs}ms`) });
    const peers = new Peers();
    const monitor = new DegradationMonitor(engine, peers, 'a-0', () => true, { staleAfterMs: 400 });
    const cl = [...engine.allScopes()].find((c) => c.ruleId === 'shared')!;
    const t0 = Math.ceil(Date.now() / windowMs) * windowMs; // start of a window
    peers.record('b-0', 1, 0, t0);
    monitor.tick(t0);
    // In this window a admits 45, b 5 (its admissions arrive as merged increases).
    for (let i = 0; i < 45; i++) expect(engine.decide({ key: `sh:warm${i % 5}` }, t0 + 10).allowed).toBe(true);
    monitor.countRemote(cl.scope, windowMs, 'b-0', t0, 5);
    peers.record('b-0', 1, 0, t0 + 200);
    monitor.tick(t0 + 250);
    // Next window: still healthy at its first tick (shares from the window that ended), then b goes silent.
    peers.record('b-0', 1, 0, t0 + windowMs + 10);
    monitor.tick(t0 + windowMs + 20);
    expect(engine.degraded).toBeNull();
    monitor.tick(t0 + windowMs + 500);
    const d = engine.degraded!;
    expect(d.reason).toMatch(/peer b-0 silent for more than 400 ms/);
    // share_a = 0.98 · (0.2 / 2 + 0.8 · 45 / 50) = 0.8036: 80 of 100.
    expect(d.shares.get(cl.scope)).toBeCloseTo(0.98 * (0.1 + 0.8 * 0.9), 6);
    let admitted = 0;
    for (let i = 0; i < 5 * LIMIT; i++) if (engine.decide({ key: 'sh:k' }, t0 + windowMs + 600).allowed) admitted++;
    expect(admitted).toBe(80);
    expect(engine.decide({ key: 'sh:k' }, t0 + windowMs + 600).code).toBe('DEGRADED_SHARE');
    // b's side, from the same numbers, gets 0.98 · (0.1 + 0.08) = 0.1764: 17. Together 97 ≤ 100.
    expect(Math.floor(0.98 * (0.1 + 0.8 * 0.1) * LIMIT)).toBe(17);
    // Heard again: the mode ends at the next tick.
    peers.record('b-0', 1, 0, t0 + windowMs + 700);
    monitor.tick(t0 + windowMs + 750);
    expect(engine.degraded).toBeNull();
  });
});
