/**
 * The bounds of the fault suite's rows 3, 5 and 6 (docs/RELIABILITY.md), asserted on what the
 * scenarios of ./node-faults.ts measured, and their `[figure]` lines: shared by the fast tests
 * (test/replication/node-faults.test.ts) and the long variants (test/faults/node-faults-long.test.ts).
 */
import { expect } from 'vitest';
import { figure } from './regions.ts';
import { p50p99, type KillLoopResult, type LatencyResult, type SigstopResult } from './node-faults.ts';

const total = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** Bounds of row 3, asserted by this test and by the long variant. */
export function expectLatencyBounds(r: LatencyResult, limit: number, nodes: number): void {
  expect(r.failures).toBe(0);
  for (const [key, per] of Object.entries(r.admitted)) {
    const overshoot = total(per) - limit;
    // The nodes' own exported bound never reads below what happened; the bound from the test's
    // measured rates and lags (× 2 + 10: a batch is applied after its lag is measured, and a
    // busy event loop adds its own delay, as in regions.test.ts) holds too.
    expect(overshoot, key).toBeLessThanOrEqual(r.exportedBound[key]!);
    expect(overshoot, key).toBeLessThanOrEqual(Math.min((nodes - 1) * limit, 2 * r.derivedBound[key]! + 10));
    expect(total(per), key).toBeGreaterThanOrEqual(limit * 0.9); // the load did reach the limit
  }
}

export function latencyFigures(what: string, r: LatencyResult, limit: number): void {
  for (const [key, per] of Object.entries(r.admitted)) {
    const t = total(per);
    figure(
      `${what}, ${key}`,
      `admitted ${per.join(' + ')} = ${t} of limit ${limit} (overshoot ratio ${(t / limit).toFixed(2)}); derived bound ${r.derivedBound[key]!.toFixed(0)}, exported bound ${r.exportedBound[key]} (model ${r.exportedModel[key]}); converged ${r.convergedMs[key]!.toFixed(0)} ms after the load; lost 0, doubled 0`,
    );
  }
  figure(`${what}: load and lag`, `load ${r.loadMs.toFixed(0)} ms, peers' p99 lag (worst pair) ${r.lagP99Ms} ms`);
}

/** The scenario's key of a `modeRules` prefix (sh, op, cl, plain). */
const keyOf = (r: { admitted: Record<string, number[]> }, prefix: string): string => {
  const k = Object.keys(r.admitted).find((x) => x.startsWith(`${prefix}:`));
  if (!k) throw new Error(`no ${prefix}: key in ${Object.keys(r.admitted).join(', ')}`);
  return k;
};

/** Bounds of row 5 (keys sh:, op:, cl: and plain:), asserted by the fast and the long variants. */
export function expectSigstopBounds(r: SigstopResult, limit: number, nodes: number): void {
  const [sh, op, cl, plain] = ['sh', 'op', 'cl', 'plain'].map((p) => keyOf(r, p)) as [string, string, string, string];
  expect(r.failures).toBe(0);
  expect(total(r.admitted[sh]!)).toBeLessThanOrEqual(1.05 * limit + 1);
  expect(total(r.admitted[op]!)).toBeLessThanOrEqual(nodes * limit);
  expect(total(r.admitted[cl]!)).toBeLessThanOrEqual(limit);
  expect(r.whileDegraded[cl]).toBe(0);
  // The unlimited key was admitted throughout: the other nodes kept answering.
  expect(r.whileDegraded[plain]).toBeGreaterThan(0);
}

export function sigstopFigures(what: string, r: SigstopResult, limit: number): void {
  const line = (p: string, mode: string) => {
    const k = keyOf(r, p);
    return `${mode} ${r.admitted[k]!.join(' + ')} = ${total(r.admitted[k]!)} (ratio ${(total(r.admitted[k]!) / limit).toFixed(2)}; ${r.whileDegraded[k]} while degraded)`;
  };
  figure(`${what}: admitted per node (${r.nodes.join(', ')}; ${r.victim} frozen)`, `${line('sh', 'share')}; ${line('op', 'open')}; ${line('cl', 'closed')}; unlimited ${total(r.admitted[keyOf(r, 'plain')]!)}`);
  if (r.queuedAtVictim.admitted + r.queuedAtVictim.denied > 0) figure(`${what}: requests waiting at the frozen node, answered after SIGCONT`, `${r.queuedAtVictim.admitted} admitted, ${r.queuedAtVictim.denied} denied`);
  const conv = Object.values(r.convergedMs);
  figure(`${what}: after SIGCONT`, `degraded ${r.degradedAfterMs.toFixed(0)} ms after SIGSTOP; left the mode ${r.leftModeMs.toFixed(0)} ms and every key exact ${p50p99(conv)} (p50 / p99 over ${conv.length} keys) after SIGCONT; lost 0, doubled 0`);
}

/** Accounting of row 6, asserted by this test and by the long variant. */
export function expectKillLoopAccounting(r: KillLoopResult): void {
  for (const [key, k] of Object.entries(r.perKey)) {
    expect(k.admittedNotCommitted, key).toBe(0); // durability sync: every 200 was committed first
    expect(k.converged, `${key}: lost`).toBeGreaterThanOrEqual(k.admitted);
    expect(k.converged, `${key}: below what the killed lives committed`).toBeGreaterThanOrEqual(k.committedFloor);
    expect(k.converged, `${key}: doubled`).toBeLessThanOrEqual(k.admitted + k.unknown);
  }
}

export function killLoopFigures(what: string, r: KillLoopResult): void {
  const keys = Object.entries(r.perKey).map(
    ([key, k]) => `${key}: admitted ${k.admitted}, converged ${k.converged} (${k.converged - k.admitted} of ${k.unknown} killed in flight had been decided), lost ${Math.max(0, k.admitted - k.converged)}, doubled ${Math.max(0, k.converged - k.admitted - k.unknown)}`,
  );
  figure(`${what}`, `${r.kills} kills, in flight at each ${r.inflightAtKill.join(', ')}; ${keys.join('; ')}`);
  figure(`${what}: after the restarts`, `caught up ${p50p99(r.caughtUpMs)} (p50 / p99 over ${r.caughtUpMs.length} restarts) after listening; every node agreed ${r.convergedMs.toFixed(0)} ms after the load`);
}
