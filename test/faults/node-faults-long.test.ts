/**
 * Long variants of test/replication/node-faults.test.ts (`npm run test:faults`, also run by
 * .ci/run): three regions, one limiter node each (durability sync), gateway links behind TCP
 * proxies, a key limit of 100 per hour, `--stale-after 2s`:
 *
 * - 100–300 ms latency (200 ± 100 ms) on every gateway link, 5 × L checks per node over ~15 s;
 * - a limiter node frozen (SIGSTOP) for 30 s under load;
 * - five kill -9 of limiter nodes under load, 2.5 s of load after each restart, each restarted
 *   on its data directory.
 *
 * Figures are printed with a `[figure]` prefix.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectKillLoopAccounting, expectLatencyBounds, expectSigstopBounds, killLoopFigures, latencyFigures, sigstopFigures } from '../helpers/node-fault-bounds.ts';
import { killLoopUnderLoad, latencyUnderLoad, sigstopUnderLoad, startRig, stopRig, type Rig } from '../helpers/node-faults.ts';

const L = 100;
let rig: Rig;

beforeAll(async () => {
  rig = await startRig({ limit: L, staleAfter: '2s', durability: 'sync' });
}, 120_000);

afterAll(() => stopRig(rig), 60_000);

describe('long faults with real processes', () => {
  it('100–300 ms latency with jitter on every gateway link, 5 × L checks per node over ~15 s: overshoot within the derived bound, with and without near-limit sharing; counts converge exactly', async () => {
    const r = await latencyUnderLoad(rig, { keys: ['sh:lat', 'ns:lat'], perNode: 5 * L, ms: 200, jitterMs: 100, paceMs: 60 });
    latencyFigures('latency 200 ± 100 ms, ~15 s of load', r, L);
    expectLatencyBounds(r, L, rig.fleet.nodes.length);
  }, 120_000);

  it('SIGSTOP of a limiter node for 30 s under load: the others go degraded and keep each mode\'s bound; after SIGCONT every node holds exactly the admitted counts', async () => {
    const r = await sigstopUnderLoad(rig, { victim: 'us-east-1', keys: ['sh:stop', 'op:stop', 'cl:stop', 'plain:stop'], stopMs: 30_000, paceMs: 100 });
    sigstopFigures('SIGSTOP 30 s', r, L);
    expectSigstopBounds(r, L, rig.fleet.nodes.length);
  }, 150_000);

  it('kill -9 of limiter nodes five times under load (2.5 s of load between a restart and the next kill), each restarted on its data directory: the converged count is every admitted request, and of those killed in flight only the decided ones', async () => {
    const r = await killLoopUnderLoad(rig, { keys: ['plain:kill', 'sh:kill'], kills: 5, intervalMs: 2500, concurrency: 3 });
    killLoopFigures('kill -9 loop (5 kills)', r);
    expectKillLoopAccounting(r);
  }, 180_000);
});
