/**
 * Part 4 of the `replication` section, shipping (bench/children/replication-ship.ts, one node
 * wired like src/node.ts against the first region's server): key-updates per second through the
 * shipper (drain → encode → JetStream publish → ack) with many distinct keys per round, bytes per
 * key-update, and bytes per second at 10 000 checks/s over 1000 keys.
 */
import type { Supercluster } from '../../../support/supercluster.ts';
import { runChild } from '../../lib/child.ts';
import type { BenchContext } from '../../lib/types.ts';

const SHIP = 'bench/children/replication-ship.ts';
/** Keys per flush in the capacity runs; the first one carries the target. */
const SHIP_SIZES = [10_000, 1000];

interface ShipCapacity {
  keysPerCycle: number;
  cycles: number;
  cells: number;
  messages: number;
  payloadBytes: number;
  wireBytes: number;
  shipMs: number;
  cellsPerS: number;
  cycleP50Ms: number;
  cycleMaxMs: number;
  drainMs: number;
  publishMs: number;
  decideMs: number;
}

interface ShipResult {
  capacity: ShipCapacity[];
  steady?: { seconds: number; checks: number; checksPerS: number; cells: number; messages: number; payloadBytes: number; wireBytes: number };
  publishErrors: number;
}

/** Runs the shipping child against the first region's server; `tmp` holds its data directory. */
export async function shipping(ctx: BenchContext, sc: Supercluster, tmp: string): Promise<ShipResult> {
  const regions = sc.regions.map((r) => r.name);
  const capacityS = ctx.quick ? 1 : 2.5;
  const steadyS = ctx.quick ? 2 : 5;
  ctx.log(`replication: shipping capacity (${SHIP_SIZES.join(', ')} keys per flush) and bytes at 10 000 checks/s`);
  return runChild<ShipResult>(
    SHIP,
    [sc.regions[0].url, regions[0], regions.join(','), tmp, String(capacityS), String(steadyS), SHIP_SIZES.join(',')],
    { root: ctx.root, profileDir: ctx.profileDir, profileName: 'replication-ship' },
    120_000,
  );
}
