/**
 * The replication room's view of the peers for near-limit sharing (src/engine/sharing.ts,
 * CONSISTENCY.md §12): each node's healthy share of every limit, and how far this node has
 * merged every peer's admissions.
 *
 * - Shares follow demand in the last complete window, like the degradation shares (./modes.ts)
 *   but with a smaller floor, since a node beyond its share only waits one replication round:
 *   `s_j = (1 − margin) · (floor / N + (1 − floor) · d_j / Σ d)`, `(1 − margin) / N` with no demand.
 * - `caughtUpTo(now)`, per peer the later of two facts, then the earliest over the peers:
 *   - every batch a node ships holds every own change made before its `sentAt` (the shipper
 *     drains all of them when it cuts a batch, and batches arrive in order), so once a peer's
 *     batch cut at `sentAt` is merged, all its admissions before `sentAt` are. The peer's clock
 *     is mapped to this node's with the smallest observed receive − sentAt (clock offset plus
 *     the one-way transit, the transit taken as at most `lagFloorMs`);
 *   - shipping is eager, so when this node last had every batch stored in one of the peer's
 *     streams handled (a batch with none waiting behind it), what the peer admitted more than
 *     its lag bound before that had arrived: the bound is `lagFloorMs` plus twice the peer's
 *     p99 jitter (receive − sentAt above its minimum). Counting from the drained stream, not
 *     from the clock, keeps a node whose own event loop is behind from assuming batches it
 *     has not handled yet.
 *
 * Shares are recomputed on the replicator's mode tick; the rest is read when a grant is needed.
 */
import type { ScopeId } from '../../crdt/index.ts';
import type { Engine } from '../engine/engine.ts';
import type { SharingView } from '../engine/sharing.ts';
import type { Demand } from './demand.ts';
import type { Peers } from './peers.ts';

export interface SharingOptions {
  /** Share of each limit given out evenly before demand counts (0..1). Default 0.05. */
  floor?: number;
  /** Shares are scaled by 1 − margin. Default 0.02. */
  margin?: number;
  /** Least time a peer's admission takes to arrive here, jitter aside (ms). Default 50. */
  lagFloorMs?: number;
}

export class HealthySharing implements SharingView {
  private byScope = new Map<ScopeId, Map<string, number>>();
  private even = 1;
  private peerIds: string[] = [];
  private lag = 1;
  private lagBounds = new Map<string, number>();
  private readonly floorShare: number;
  private readonly marginShare: number;
  private readonly lagFloorMs: number;

  constructor(
    private readonly engine: Engine,
    private readonly peersOf: Peers,
    private readonly demand: Demand,
    private readonly nodeId: string,
    opts: SharingOptions = {},
  ) {
    this.floorShare = opts.floor ?? 0.05;
    this.marginShare = opts.margin ?? 0.02;
    this.lagFloorMs = opts.lagFloorMs ?? 50;
  }

  /** Recompute the shares from the last complete window's demand (the mode tick). */
  refresh(now: number): void {
    this.peerIds = [...this.peersOf.entries()].map(([id]) => id);
    const n = Math.max(this.peerIds.length + 1, this.engine.nodes.size);
    this.even = (1 - this.marginShare) / n;
    let lag = 0;
    const bounds = new Map<string, number>();
    for (const [id, p] of this.peersOf.entries()) {
      lag = Math.max(lag, p.quantile(0.5));
      bounds.set(id, this.lagFloorMs + 2 * p.jitter(0.99));
    }
    this.lag = lag;
    this.lagBounds = bounds;
    const next = new Map<ScopeId, Map<string, number>>();
    for (const cl of this.engine.allScopes()) {
      const d = this.demand.of(cl.scope, Math.floor(now / cl.spec.windowMs) - 1);
      let sum = 0;
      for (const [node, v] of d) if (node === this.nodeId || this.peersOf.has(node)) sum += v;
      if (sum === 0) continue;
      const shares = new Map<string, number>();
      for (const node of [this.nodeId, ...this.peerIds]) {
        shares.set(node, (1 - this.marginShare) * (this.floorShare / n + ((1 - this.floorShare) * (d.get(node) ?? 0)) / sum));
      }
      next.set(cl.scope, shares);
    }
    this.byScope = next;
  }

  share(scope: ScopeId, node: string): number {
    return this.byScope.get(scope)?.get(node) ?? this.even;
  }

  peers(): readonly string[] {
    return this.peerIds;
  }

  caughtUpTo(_now: number): number {
    let t = Infinity;
    for (const [id, p] of this.peersOf.entries()) {
      const min = p.minOffset();
      // receive − sentAt at its smallest is the clock offset plus the one-way transit, taken as at most lagFloorMs.
      const offset = min <= 0 ? min : Math.max(0, min - this.lagFloorMs);
      const shipped = p.lastSentAt + offset;
      const drained = this.peersOf.drainedAt(p) - (this.lagBounds.get(id) ?? this.lagFloorMs);
      t = Math.min(t, Math.max(shipped, drained));
    }
    return t;
  }

  lagMs(): number {
    return this.lag;
  }

  margin(): number {
    return this.marginShare;
  }

  floor(): number {
    return this.floorShare;
  }
}
