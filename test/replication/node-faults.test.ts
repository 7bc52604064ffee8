/**
 * The fast part of the fault suite with real processes (docs/RELIABILITY.md rows 3, 5, 6):
 * three regions, one limiter node each (durability sync), gateway links behind TCP proxies,
 * a key limit of 100 per hour, `--stale-after 2s`:
 *
 * - 100–300 ms latency (200 ± 100 ms, uniform) on every gateway link, 5 × L checks per node
 *   in a few seconds: overshoot within the bound the nodes derive (§8), counts exact after;
 * - a limiter node frozen (SIGSTOP) for 5 s under load: the others go degraded and apply
 *   each rule's mode; after SIGCONT every node holds exactly the admitted counts; again for
 *   3 s with its clients' requests waiting at the frozen node;
 * - two kill -9 of limiter nodes under load, each restarted on its data directory: the
 *   converged count is the admitted requests, plus only those whose answer the kill lost.
 *
 * The long variants are in test/faults/node-faults-long.test.ts. Figures: `[figure]` lines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectKillLoopAccounting, expectLatencyBounds, expectSigstopBounds, killLoopFigures, latencyFigures, sigstopFigures } from '../helpers/node-fault-bounds.ts';
import { killLoopUnderLoad, latencyUnderLoad, sigstopUnderLoad, startRig, stopRig, type Rig } from '../helpers/node-faults.ts';

const L = 100;
let rig: Rig;

beforeAll(async () => {
  rig = await startRig({ limit: L, staleAfter: '2s', durability: 'sync' });
}, 120_000);

afterAll(() => stopRig(rig), 60_000);

describe('faults with real processes (fast variants)', () => {
  it('100–300 ms latency with jitter on every gateway link, 5 × L checks per node: overshoot within the derived bound, with and without near-limit sharing; counts converge exactly', async () => {
    const r = await latencyUnderLoad(rig, { keys: ['sh:lat', 'ns:lat'], perNode: 5 * L, ms: 200, jitterMs: 100, paceMs: 10 });
    latencyFigures('latency 200 ± 100 ms', r, L);
    expectLatencyBounds(r, L, rig.fleet.nodes.length);
  }, 90_000);

  it('SIGSTOP of a limiter node for 5 s under load: the others go degraded and keep each mode\'s bound; after SIGCONT every node holds exactly the admitted counts', async () => {
    const r = await sigstopUnderLoad(rig, { victim: 'us-east-1', keys: ['sh:stop', 'op:stop', 'cl:stop', 'plain:stop'], stopMs: 5000, paceMs: 100 });
    sigstopFigures('SIGSTOP 5 s', r, L);
    expectSigstopBounds(r, L, rig.fleet.nodes.length);
  }, 90_000);

  it('SIGSTOP of a limiter node for 3 s with its clients\' requests waiting at it: it decides them after SIGCONT and every mode\'s bound still holds; counts exact after', async () => {
    const r = await sigstopUnderLoad(rig, { victim: 'eu-west-1', keys: ['sh:stay', 'op:stay', 'cl:stay', 'plain:stay'], stopMs: 3000, paceMs: 400, concurrency: 4, clientsStay: true });
    sigstopFigures('SIGSTOP 3 s, clients waiting', r, L);
    expectSigstopBounds(r, L, rig.fleet.nodes.length);
    expect(r.queuedAtVictim.admitted + r.queuedAtVictim.denied).toBeGreaterThan(0);
  }, 90_000);

  it('kill -9 of limiter nodes twice under load, each restarted on its data directory: the converged count is every admitted request, and of those killed in flight only the decided ones', async () => {
    const r = await killLoopUnderLoad(rig, { keys: ['plain:kill', 'sh:kill'], kills: 2, intervalMs: 1500, concurrency: 3 });
    killLoopFigures('kill -9 loop (2 kills)', r);
    expectKillLoopAccounting(r);
  }, 120_000);
});
