/**
 * Rules replication on the simulated network (test/helpers/sim.ts: real engines, registers and
 * replicators over the in-memory bus): a change reaches every node, concurrent changes in
 * partitioned regions converge after the heal, reordering and duplication are harmless, a node
 * that missed every rules message catches up through anti-entropy, and a bad replicated
 * document is refused everywhere with the rules unchanged.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeRules } from '../../crdt/index.ts';
import { sha256 } from '../../src/rules/document.ts';
import { MemoryStore } from '../../src/storage/memory.ts';
import { waitFor } from '../../support/wait.ts';
import { SIM_RULES_DOCUMENT, Sim, type SimNode } from '../helpers/sim.ts';

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

/** The rules document with rule `small` at `limit`. */
function withSmallLimit(limit: number): object {
  const doc = structuredClone(SIM_RULES_DOCUMENT);
  doc.rules[0].limits[0].limit = limit;
  return doc;
}

const smallLimit = (n: SimNode) => n.engine.rulesConfig.rules.find((r) => r.id === 'small')!.limits[0].limit;
const versions = (s: Sim) => s.nodes.map((n) => n.rules.version);
const converged = (s: Sim) => new Set(versions(s)).size === 1 && !versions(s)[0].startsWith('0.');

describe('rules replication (simulated network)', () => {
  it('a change on one node is enforced on every node of every region', async () => {
    sim = await Sim.start({ nodes: { a: 2, b: 2, c: 2 } });
    const { version } = await sim.node('a-0').rules.change(() => withSmallLimit(3), { source: 'API' });
    await waitFor('every node on the new version', () => sim!.nodes.every((n) => n.rules.version === version));
    for (const n of sim.nodes) expect(smallLimit(n)).toBe(3);
    const c1 = sim.node('c-1');
    expect([1, 2, 3, 4].map(() => c1.check('s:fresh'))).toEqual([true, true, true, false]);
  });

  it('concurrent changes in two partitioned regions apply at once where they are made, and converge on one version after the heal', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 } });
    sim.bus.isolate('a');
    const [ca, cb] = await Promise.all([
      sim.node('a-0').rules.change(() => withSmallLimit(5), { source: 'API' }),
      sim.node('b-0').rules.change(() => withSmallLimit(7), { source: 'API' }),
    ]);
    // Each side enforces its own change at once.
    expect(smallLimit(sim.node('a-0'))).toBe(5);
    expect(smallLimit(sim.node('b-0'))).toBe(7);
    await waitFor('c follows b while a is cut off', () => sim!.node('c-0').rules.version === cb.version);
    expect(sim.node('a-0').rules.version).toBe(ca.version);

    sim.bus.rejoin('a');
    await waitFor('one version everywhere', () => converged(sim!));
    // The winner is the greater (timestamp, node) version, and its document is in force everywhere.
    const winner = [ca, cb].map((c) => c.version).sort((x, y) => compareFormatted(x, y)).at(-1)!;
    expect(versions(sim)).toEqual([winner, winner, winner]);
    const limit = winner === ca.version ? 5 : 7;
    for (const n of sim.nodes) expect(smallLimit(n)).toBe(limit);
  });

  it('reordered, delayed and duplicated messages change nothing: every node ends on the last change', async () => {
    sim = await Sim.start({ nodes: { a: 2, b: 1, c: 1 }, duplicateRate: 0.5, delayMs: () => Math.floor(Math.random() * 8) });
    let last = '';
    for (let i = 1; i <= 6; i++) {
      const n = sim.nodes[i % sim.nodes.length];
      // Each change is made after its node has seen the previous one (sequential edits).
      await waitFor(`node ${n.id} has seen change ${i - 1}`, () => last === '' || n.rules.version === last);
      last = (await n.rules.change(() => withSmallLimit(10 + i), { source: 'API' })).version;
    }
    await waitFor('every node on the last change', () => sim!.nodes.every((n) => n.rules.version === last));
    for (const n of sim.nodes) expect(smallLimit(n)).toBe(16);
  });

  it('a node that never received the rules messages (expired from the streams) catches up through anti-entropy', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1 }, rulesBeaconMs: 100 });
    const { version } = await sim.node('a-0').rules.change(() => withSmallLimit(4), { source: 'API' });
    await waitFor('b-0 has the change', () => sim!.node('b-0').rules.version === version);
    // A node whose stream positions are past every message carrying the change: what a node
    // away longer than the streams keep messages resumes from.
    const store = new MemoryStore();
    store.write({ cells: [], positions: Object.fromEntries(['b', 'b:agg'].map((s) => [s, sim!.bus.stream(s).msgs.length])) });
    const late = await sim.add('b', 'b-late', store);
    expect(late.rules.version.startsWith('0.')).toBe(true);
    await waitFor('the late node has the change', () => late.rules.version === version);
    expect(smallLimit(late)).toBe(4);
    expect(sim.nodes.reduce((s, n) => s + n.rules.stats.republished, 0)).toBeGreaterThan(0);
  });

  it('a bad replicated document (invalid, not JSON, wrong digest, far-future version) is refused on every node with a code, and the rules in force stay', async () => {
    sim = await Sim.start({ nodes: { a: 1, b: 1, c: 1 } });
    const { version } = await sim.node('a-0').rules.change(() => withSmallLimit(6), { source: 'API' });
    await waitFor('converged', () => sim!.nodes.every((n) => n.rules.version === version));
    // A compromised (or mismatched) peer publishes on its own channel.
    const rogue = sim.bus.transport('c', 'rogue');
    await rogue.start();
    const bad = (document: string, digest = sha256(document), ts = Date.now() + 60_000) =>
      encodeRules({ origin: 'rogue', sentAt: Date.now(), what: 'state', version: { ts, node: 'rogue' }, digest, document });
    await rogue.publish(bad(JSON.stringify({ rules: [{ id: 'x', key: '*', limits: [{ limit: 0, window: '1s' }] }] })), 'r1');
    await rogue.publish(bad('not json'), 'r2');
    await rogue.publish(bad(JSON.stringify(withSmallLimit(1)), 'f'.repeat(64)), 'r3'); // digest does not match
    const valid = JSON.stringify(withSmallLimit(1));
    await rogue.publish(bad(valid, sha256(valid), Date.now() + 2 * 3_600_000), 'r5'); // valid, but two hours ahead
    await waitFor('every node refused all four', () => sim!.nodes.every((n) => n.rules.status().refusedByCode.REPLICATION_RULES_INVALID === 4));
    for (const n of sim.nodes) {
      expect(n.rules.version).toBe(version);
      expect(smallLimit(n)).toBe(6);
      expect(n.rules.status().lastRefused).toMatch(/^REPLICATION_RULES_INVALID: /);
    }
    // A rules message claiming another origin than its channel is refused by the replicator.
    await rogue.publish(encodeRules({ origin: 'a-0', sentAt: Date.now(), what: 'have', version: { ts: 1, node: 'a-0' }, digest: 'd', document: null }), 'r4');
    await waitFor('forged origin refused', () => sim!.nodes.every((n) => n.replicator.refusedCounts().REPLICATION_FORGED === 1));
    await rogue.close();
  });
});

function compareFormatted(x: string, y: string): number {
  const [tx, nx] = [Number(x.slice(0, x.indexOf('.'))), x.slice(x.indexOf('.') + 1)];
  const [ty, ny] = [Number(y.slice(0, y.indexOf('.'))), y.slice(y.indexOf('.') + 1)];
  return tx - ty || (nx < ny ? -1 : nx > ny ? 1 : 0);
}
