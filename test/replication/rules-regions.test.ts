/**
 * Rules at run time across real regions: three nats-servers joined in a supercluster (each
 * node with its own NATS user and permissions), one limiter process per region. A change made
 * in one region is enforced in the other two; a refused change leaves every node's rules as
 * they were; a node that was down gets the latest rules when it comes back. The propagation
 * time is printed with a `[figure]` prefix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { max, percentileSorted } from '../../support/stats.ts';
import { getRules, measurePropagation, putRules, waitForVersion } from '../../support/rules-admin.ts';
import { startSupercluster, type Supercluster } from '../../support/supercluster.ts';
import { Fleet, ONE_NODE_PER_REGION, figure, postCheck } from '../helpers/regions.ts';

const TOKEN = 'rules-admin-token-0123456789';
const NODES = ONE_NODE_PER_REGION;
const doc = (limit: number) => ({ version: 1, rules: [{ id: 'api', key: 'k:*', limits: [{ limit, window: '1h', algorithm: 'fixed-window' }] }, { id: 'other', key: '*', limits: [{ limit: 1_000_000, window: '1h' }] }] });

let sc: Supercluster;
let fleet: Fleet;
const urls = () => fleet.nodes.map((n) => n.url);

beforeAll(async () => {
  sc = await startSupercluster({ nodes: NODES });
  fleet = await Fleet.start({ cluster: sc, nodes: NODES, rules: JSON.stringify(doc(100)), extraArgs: ['--admin-token', TOKEN] });
}, 120_000);

afterAll(async () => {
  await fleet?.stopAll();
  await sc?.stopAll();
}, 60_000);

describe('rules across real regions', () => {
  it('a change made in one region is enforced in the other two', async () => {
    const put = await putRules(fleet.nodes[0]!.url, TOKEN, doc(2));
    expect(put.status).toBe(200);
    const took = await waitForVersion(urls(), TOKEN, put.body.version!);
    figure('rules: first change in force on every node', `${Math.round(Math.max(...took))} ms`);
    for (const n of fleet.nodes.slice(1)) {
      const got = await getRules(n.url, TOKEN);
      expect(got.body.rules).toEqual(doc(2));
      const key = `k:${n.id}`;
      expect([await postCheck(n.url, key), await postCheck(n.url, key), await postCheck(n.url, key)]).toEqual([200, 200, 429]);
    }
  }, 60_000);

  it('a refused change leaves the rules in force unchanged on every node', async () => {
    const before = await Promise.all(urls().map((u) => getRules(u, TOKEN)));
    const bad = await putRules(fleet.nodes[1]!.url, TOKEN, { version: 1, rules: [{ id: 'api', key: 'k:*', limits: [{ limit: 0, window: 'soon' }] }] });
    expect([bad.status, bad.body.error]).toEqual([400, 'RULES_INVALID']);
    expect(bad.body.problems!.length).toBeGreaterThanOrEqual(2);
    // A valid change made after it reaches everyone: the refused one was never sent.
    const next = await putRules(fleet.nodes[2]!.url, TOKEN, doc(3));
    await waitForVersion(urls(), TOKEN, next.body.version!);
    const after = await Promise.all(urls().map((u) => getRules(u, TOKEN)));
    for (const [i, a] of after.entries()) {
      expect(a.body.rules).toEqual(doc(3));
      expect(a.body.version).not.toBe(before[i]!.body.version);
    }
  }, 60_000);

  it('a node that was down gets the latest rules when it comes back', async () => {
    const down = fleet.nodes[2]!;
    await down.stop();
    const put = await putRules(fleet.nodes[0]!.url, TOKEN, doc(4));
    await waitForVersion(urls().slice(0, 2), TOKEN, put.body.version!);
    await down.start();
    await waitForVersion([down.url], TOKEN, put.body.version!);
    expect((await getRules(down.url, TOKEN)).body.rules).toEqual(doc(4));
  }, 90_000);

  it('propagation: a change made on one node is in force on every node of the three regions within 1 s (p99)', async () => {
    const rounds = await measurePropagation(urls(), TOKEN, 30, (i) => doc(10 + i));
    const sorted = [...rounds].sort((a, b) => a - b);
    const p99 = percentileSorted(sorted, 99);
    figure('rules: propagation to every node (30 changes)', `p50 ${Math.round(percentileSorted(sorted, 50))} ms, p99 ${Math.round(p99)} ms, max ${Math.round(max(rounds))} ms`);
    expect(p99).toBeLessThanOrEqual(1000);
  }, 120_000);
});
