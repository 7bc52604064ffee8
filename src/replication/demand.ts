/**
 * Observed demand: per scope and node, the admissions counted in each window period (period =
 * floor(slot start / window)), so every node that has converged counts the same numbers. Both
 * the degradation shares (./modes.ts) and near-limit sharing (./sharing.ts) follow it.
 */
import type { ScopeId } from '../../crdt/index.ts';

/** Per scope and node: admissions per window period (period = floor(slot start / window)). */
export class Demand {
  private readonly byScope = new Map<ScopeId, Map<string, Map<number, number>>>();

  add(scope: ScopeId, node: string, period: number, n: number): void {
    let nodes = this.byScope.get(scope);
    if (nodes === undefined) this.byScope.set(scope, (nodes = new Map()));
    let periods = nodes.get(node);
    if (periods === undefined) nodes.set(node, (periods = new Map()));
    periods.set(period, (periods.get(period) ?? 0) + n);
  }

  /** Per node, the admissions of `period` in `scope`. Older periods are dropped. */
  of(scope: ScopeId, period: number): Map<string, number> {
    const out = new Map<string, number>();
    for (const [node, periods] of this.byScope.get(scope) ?? []) {
      for (const p of periods.keys()) if (p < period - 1) periods.delete(p);
      out.set(node, periods.get(period) ?? 0);
    }
    return out;
  }
}
