/**
 * The overshoot estimate (CONSISTENCY.md §8): per limit, how far all nodes together can exceed
 * it right now. Shipping is eager, so node j's admissions reach the others at most one publish
 * round trip (the round in flight) plus one transport lag after they happen (≤ 2 · lag_j), and
 * while they travel the others may admit on top of them:
 *
 *   model(limit) = min((N − 1) · limit, 2 · Σ_j rate_j · lag_j)
 *
 * rate_j: node j's admission rate in this scope (per second, smoothed, and never below the
 * last second's count); lag_j: p99 transport lag of j's batches (for this node, the largest
 * peer lag stands in for how late the others see it); a peer silent for longer than its
 * heartbeat allows counts with its staleness as its lag.
 *
 * The exported bound is never below what was seen: it is the larger of the model and the
 * largest excess over the limit that merging remote counts revealed in the last window
 * (a burst that outran the model shows there right after it converges).
 */
import type { Engine } from '../engine/engine.ts';
import { round, type Peers } from './peers.ts';

export interface OvershootEstimate {
  ruleId: string;
  policy: string;
  scope: string;
  limit: number;
  windowMs: number;
  /** max(model, observed), rounded up: the bound to state for this limit right now. */
  bound: number;
  /** 2 · Σ_j rate_j · lag_j, capped at (N − 1) · limit. */
  model: number;
  /** Largest usage above the limit seen in the last window. */
  observed: number;
  nodes: number;
  /** Admissions per second per node (this scope). */
  ratesPerSecond: Record<string, number>;
  /** Transport lag per node as seen here (ms). */
  lagMs: Record<string, number>;
}

const TICK_MS = 1000;
/** A peer silent this long (several heartbeats) counts with its staleness as its lag. */
export const SILENT_AFTER_MS = 3000;

export class Overshoot {
  /** Per scope, per node: admitted cost since the last tick. */
  private readonly admitted = new Map<string, Map<string, number>>();
  /** Per scope, per node: admissions per second (EWMA, floored by the last tick's count). */
  private readonly rates = new Map<string, Map<string, number>>();
  private lastOwnAdmitted = new Map<string, number>();
  private lastTick: number;

  constructor(
    private readonly engine: Engine,
    private readonly nodeId: string,
    now: number,
  ) {
    this.lastTick = now;
    for (const cl of engine.allScopes()) this.lastOwnAdmitted.set(cl.scope, cl.store.ownAdmitted);
  }

  /** A merge raised node `node`'s admissions in `scope` by `increase`. */
  countRemote(scope: string, node: string, increase: number): void {
    let m = this.admitted.get(scope);
    if (m === undefined) this.admitted.set(scope, (m = new Map()));
    m.set(node, (m.get(node) ?? 0) + increase);
  }

  /** Roll admission counters into per-second rates (call every second, or before reading). */
  tick(now: number): void {
    const dt = (now - this.lastTick) / 1000;
    if (dt * 1000 < TICK_MS / 4) return;
    this.lastTick = now;
    const alpha = 0.5;
    for (const cl of this.engine.allScopes()) {
      const prev = this.lastOwnAdmitted.get(cl.scope) ?? cl.store.ownAdmitted;
      this.lastOwnAdmitted.set(cl.scope, cl.store.ownAdmitted);
      const own = (cl.store.ownAdmitted - prev) / dt;
      const remote = this.admitted.get(cl.scope);
      let rates = this.rates.get(cl.scope);
      if (rates === undefined) this.rates.set(cl.scope, (rates = new Map()));
      const nodes = new Set<string>([this.nodeId, ...rates.keys(), ...(remote?.keys() ?? [])]);
      for (const node of nodes) {
        const sample = node === this.nodeId ? own : (remote?.get(node) ?? 0) / dt;
        const prevRate = rates.get(node) ?? sample;
        rates.set(node, Math.max(sample, alpha * sample + (1 - alpha) * prevRate));
      }
    }
    this.admitted.clear();
  }

  estimate(peers: Peers, now: number): OvershootEstimate[] {
    const peerLag = new Map<string, number>();
    let maxLag = 0;
    for (const [node, p] of peers.entries()) {
      let lag = p.quantile(0.99);
      const silent = now - p.lastHeardAt;
      if (silent > SILENT_AFTER_MS) lag = Math.max(lag, silent);
      peerLag.set(node, lag);
      if (lag > maxLag) maxLag = lag;
    }
    peerLag.set(this.nodeId, maxLag);
    const nodes = peerLag.size;
    const out: OvershootEstimate[] = [];
    for (const cl of this.engine.allScopes()) {
      const rates = this.rates.get(cl.scope) ?? new Map<string, number>();
      let sum = 0;
      const ratesPerSecond: Record<string, number> = {};
      const lagMs: Record<string, number> = {};
      for (const [node, lag] of peerLag) {
        const r = rates.get(node) ?? 0;
        ratesPerSecond[node] = round(r);
        lagMs[node] = round(lag);
        sum += (r * 2 * lag) / 1000;
      }
      const model = Math.ceil(Math.min((nodes - 1) * cl.math.capacity, sum));
      const observed = Math.ceil(this.engine.observedExcess(cl.scope, now));
      out.push({
        ruleId: cl.ruleId,
        policy: cl.policy.name,
        scope: cl.scope,
        limit: cl.math.capacity,
        windowMs: cl.spec.windowMs,
        bound: Math.max(model, observed),
        model,
        observed,
        nodes,
        ratesPerSecond,
        lagMs,
      });
    }
    return out;
  }
}
