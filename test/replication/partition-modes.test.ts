/**
 * Degradation modes with real processes: three regions (one nats-server and one limiter node
 * each, the servers requiring credentials), one region cut off from the other two by
 * blackholing every gateway link (TCP proxies), load at 5 × the limit on every node:
 * - `share`: all sides together admit at most 1.05 × the limit + 1 in the window;
 * - `open`: at most regions × the limit (one limit per side, plus the healthy overshoot within a side);
 * - `closed`: nothing;
 * then the heal: every node leaves the mode and the counts converge exactly.
 * Figures are printed with a `[figure]` prefix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSupercluster, type Supercluster } from '../../support/supercluster.ts';
import { waitFor } from '../../support/wait.ts';
import { Fleet, figure, postCheck, status, usage, ONE_NODE_PER_REGION, modeRules } from '../helpers/regions.ts';

const LIMIT = 100;
const NODES = ONE_NODE_PER_REGION;
const RULES = modeRules(LIMIT);

let sc: Supercluster;
let fleet: Fleet;

beforeAll(async () => {
  sc = await startSupercluster({ nodes: NODES, gatewayProxies: true, pingInterval: '2s' });
  fleet = await Fleet.start({ cluster: sc, nodes: NODES, rules: RULES, extraArgs: ['--stale-after', '1s'] });
  await postCheck(fleet.nodes[0]!.url, 'warm');
  await waitFor('every node to hear the others', async () => (await Promise.all(fleet.nodes.map((n) => status(n.url)))).every((s) => s.replication.peers.length === 2), { timeoutMs: 30_000, intervalMs: 100 });
}, 120_000);

afterAll(async () => {
  await fleet?.stopAll();
  await sc?.stopAll();
}, 60_000);

async function admittedOf(key: string, perNode: number): Promise<number[]> {
  return Promise.all(
    fleet.nodes.map(async (n) => {
      let ok = 0;
      for (let i = 0; i < perNode; i++) if ((await postCheck(n.url, key)) === 200) ok++;
      return ok;
    }),
  );
}

describe('degradation modes across real regions', () => {
  it('one region cut off: share keeps all sides within 1.05 × the limit + 1, open within regions × the limit, closed admits nothing; after the heal every node leaves the mode and the counts agree', async () => {
    sc.region('us-east').cut('blackhole');
    const cutAt = performance.now();
    await waitFor('every node to be degraded', async () => (await Promise.all(fleet.nodes.map((n) => status(n.url)))).every((s) => s.replication.degradation.degraded), { timeoutMs: 15_000, intervalMs: 50 });
    figure('partition: degraded after the cut', `${Math.round(performance.now() - cutAt)} ms (--stale-after 1s)`);
    const shared = await admittedOf('sh:k', 5 * LIMIT);
    const open = await admittedOf('op:k', 5 * LIMIT);
    const closed = await admittedOf('cl:k', 20);
    figure('partition: admitted per node (us-east, eu-west, ap-south)', `share ${shared.join(' + ')} = ${shared.reduce((a, b) => a + b, 0)}; open ${open.join(' + ')} = ${open.reduce((a, b) => a + b, 0)}; closed ${closed.join(' + ')}`);
    expect(shared.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1.05 * LIMIT + 1);
    // Two sides, and the two connected regions may overshoot between themselves as when healthy (§8):
    // the bound for open is regions × limit.
    expect(open.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(NODES.length * LIMIT);
    expect(open[0]).toBe(LIMIT); // the cut-off side admits its whole limit alone
    expect(closed).toEqual([0, 0, 0]);

    // The metrics say it too.
    const metrics = await (await fetch(`${fleet.nodes[1]!.url}/metrics`)).text();
    expect(metrics).toMatch(/^regionlimit_degradation_active(\{[^}]*\})? 1$/m);
    expect(Number(/^regionlimit_degraded_denials_total\{[^}]*mode="share"[^}]*\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    expect(Number(/^regionlimit_degraded_denials_total\{[^}]*mode="closed"[^}]*\} (\d+)$/m.exec(metrics)?.[1])).toBe(20);

    sc.region('us-east').heal();
    const healedAt = performance.now();
    await waitFor('every node to leave the mode', async () => (await Promise.all(fleet.nodes.map((n) => status(n.url)))).every((s) => !s.replication.degradation.degraded), { timeoutMs: 30_000, intervalMs: 50 });
    const left = performance.now() - healedAt;
    const total = shared.reduce((a, b) => a + b, 0);
    await waitFor('the counts to agree', async () => (await Promise.all(fleet.nodes.map((n) => usage(n.url, 'sh:k')))).every((u) => u === total), { timeoutMs: 30_000, intervalMs: 100 });
    figure('partition: left the mode after the heal', `${Math.round(left)} ms; converged ${Math.round(performance.now() - healedAt)} ms after the heal`);
  }, 180_000);
});
