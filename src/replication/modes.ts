/**
 * When this node is degraded, and with which shares (CONSISTENCY.md §11).
 *
 * Degraded: a known peer has been silent for longer than `staleAfterMs` (nothing, not even a
 * heartbeat), or the transport is not connected. The engine then applies each rule's mode
 * (src/engine/degradation.ts) with this node's share of each limit; the node leaves the mode
 * at the first tick where every peer is fresh and the transport connected again.
 *
 * Shares follow demand: per limit, each node's admissions in the last complete window, counted
 * by the slot they were made in (so every node that has converged counts the same numbers),
 * with a floor so an idle node can still admit:
 *
 *   share_i = (1 − margin) · (floor / N + (1 − floor) · d_i / Σ_j d_j)     (1/N when Σ d = 0)
 *
 * N is the number of nodes known (the peers heard from and this one, or every node whose counts
 * this node holds, whichever is more). The shares in force are computed, when the node becomes
 * degraded, as of its last healthy tick, and stay frozen while it is degraded, so both sides of
 * a partition use the same shares of the same window. Pure logic over
 * injected time and the replication room's own records; ticked by the replicator.
 */
import type { Engine } from '../engine/engine.ts';
import type { Degradation } from '../engine/degradation.ts';
import type { ScopeId } from '../../crdt/index.ts';
import type { Peers } from './peers.ts';
import { Demand } from './demand.ts';

export interface ModeOptions {
  /** A peer silent longer than this (ms) makes the node degraded. Default 2500 (2.5 heartbeats). */
  staleAfterMs?: number;
  /** Share of each limit given out evenly before demand counts (0..1). Default 0.2. */
  floor?: number;
  /** Shares are scaled by 1 − margin, so slightly different views still sum to at most 1. Default 0.02. */
  margin?: number;
}

export interface ModeStatus {
  degraded: boolean;
  since: number | null;
  reason: string | null;
  staleAfterMs: number;
  /** Peers silent for longer than the threshold. */
  stalePeers: string[];
  /** This node's share of each limit while degraded (by scope), as frozen when it became degraded. */
  shares: Record<string, number>;
}

export class DegradationMonitor {
  /** Admissions per node, scope and window period (shared with near-limit sharing). */
  readonly demand = new Demand();
  private readonly ownSeen = new Map<ScopeId, number>();
  /** The last tick at which every peer was fresh and NATS connected (0: none yet). */
  private lastHealthyAt = 0;
  private stale: string[] = [];
  readonly staleAfterMs: number;
  private readonly floor: number;
  private readonly margin: number;

  constructor(
    private readonly engine: Engine,
    private readonly peers: Peers,
    private readonly nodeId: string,
    private readonly connected: () => boolean,
    opts: ModeOptions = {},
  ) {
    this.staleAfterMs = opts.staleAfterMs ?? 2500;
    this.floor = opts.floor ?? 0.2;
    this.margin = opts.margin ?? 0.02;
  }

  /** A merge raised `node`'s admissions in `scope` by `n`, in the slot starting at `slotStartMs`. */
  countRemote(scope: ScopeId, windowMs: number, node: string, slotStartMs: number, n: number): void {
    this.demand.add(scope, node, Math.floor(slotStartMs / windowMs), n);
  }

  /** Re-evaluate (call every few hundred ms, and before reading the status). */
  tick(now: number): void {
    for (const cl of this.engine.allScopes()) {
      const total = cl.store.ownAdmitted;
      const seen = this.ownSeen.get(cl.scope) ?? total;
      if (total > seen) this.demand.add(cl.scope, this.nodeId, Math.floor(now / cl.spec.windowMs), total - seen);
      this.ownSeen.set(cl.scope, total);
    }
    this.stale = [];
    for (const [node, p] of this.peers.entries()) if (now - p.lastHeardAt > this.staleAfterMs) this.stale.push(node);
    this.stale.sort();
    const up = this.connected();
    const current = this.engine.degraded;
    if (this.stale.length === 0 && up) {
      this.lastHealthyAt = now;
      if (current !== null) this.engine.setDegradation(null);
      return;
    }
    const reason = [
      ...(up ? [] : ['NATS unreachable']),
      ...(this.stale.length ? [`${this.stale.length === 1 ? 'peer' : 'peers'} ${this.stale.join(', ')} silent for more than ${this.staleAfterMs} ms`] : []),
    ].join('; ');
    const n = this.knownNodes();
    if (current === null) {
      // Shares as of the last healthy tick: the window every side of the partition saw complete.
      const shares = this.lastHealthyAt === 0 ? new Map<ScopeId, number>() : this.shares(this.lastHealthyAt);
      this.engine.setDegradation({ since: now, reason, shares, defaultShare: n === 1 ? 1 : (1 - this.margin) / n });
    } else if (current.reason !== reason) {
      this.engine.setDegradation({ ...current, reason } satisfies Degradation);
    }
  }

  /** This node's share of every limit from the last complete window's demand. */
  private shares(now: number): Map<ScopeId, number> {
    const n = this.knownNodes();
    const out = new Map<ScopeId, number>();
    for (const cl of this.engine.allScopes()) {
      const period = Math.floor(now / cl.spec.windowMs) - 1;
      const d = this.demand.of(cl.scope, period);
      let sum = 0;
      for (const [node, v] of d) if (node === this.nodeId || this.peers.has(node)) sum += v;
      const mine = d.get(this.nodeId) ?? 0;
      const byDemand = sum > 0 ? mine / sum : 1 / n;
      // Alone (no peer ever heard of): the whole limit is this node's.
      out.set(cl.scope, n === 1 ? 1 : (1 - this.margin) * (this.floor / n + (1 - this.floor) * byDemand));
    }
    return out;
  }

  /** Nodes known: the peers heard from and this one, or every node whose counts this node holds (after a restart). */
  private knownNodes(): number {
    return Math.max(this.peers.size + 1, this.engine.nodes.size);
  }

  /** Whether rules apply their degradation mode now. */
  get degraded(): boolean {
    return this.engine.degraded !== null;
  }

  status(now: number): ModeStatus {
    const d = this.engine.degraded;
    const shares: Record<string, number> = {};
    for (const [scope, v] of d?.shares ?? this.shares(now)) shares[scope] = Math.round(v * 1000) / 1000;
    return { degraded: d !== null, since: d?.since ?? null, reason: d?.reason ?? null, staleAfterMs: this.staleAfterMs, stalePeers: [...this.stale], shares };
  }
}
