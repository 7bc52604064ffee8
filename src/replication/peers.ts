/**
 * What this node knows of every other node: batches and cells received, the transport lag of
 * each batch (receive time − the sender's `sentAt`), and staleness (time since anything,
 * a heartbeat included, was last heard). Staleness is what a degradation mode acts on.
 */
const LAG_SAMPLES = 512;

export interface PeerStats {
  node: string;
  messages: number;
  cells: number;
  heartbeats: number;
  /** When this node last heard from the peer (ms since epoch, injected clock). */
  lastHeardAt: number;
  /** now − lastHeardAt. */
  stalenessMs: number;
  lagP50Ms: number;
  lagP99Ms: number;
  /**
   * Smallest receive time − sentAt over the recent batches (raw, may be negative): the clock
   * offset estimate. Negative: the peer's clock is ahead of this node's by at least that much;
   * positive: the one-way delay plus how far the peer's clock is behind (the two cannot be told
   * apart from one side).
   */
  minOffsetMs: number;
}

export class PeerTracker {
  messages = 0;
  cells = 0;
  heartbeats = 0;
  lastHeardAt = 0;
  /** The newest `sentAt` received (the peer's clock): every admission it made before is merged here. */
  lastSentAt = 0;
  /** The streams its batches arrive on. */
  readonly streams = new Set<string>();
  private readonly lags = new Float64Array(LAG_SAMPLES);
  private readonly raw = new Float64Array(LAG_SAMPLES);
  private count = 0;

  record(lagMs: number, cells: number, now: number, stream?: string): void {
    if (stream !== undefined && !this.streams.has(stream)) this.streams.add(stream);
    this.raw[this.count % LAG_SAMPLES] = lagMs;
    this.lags[this.count % LAG_SAMPLES] = lagMs < 0 ? 0 : lagMs;
    this.count++;
    this.messages++;
    if (cells === 0) this.heartbeats++;
    this.cells += cells;
    this.lastHeardAt = now;
    if (now - lagMs > this.lastSentAt) this.lastSentAt = now - lagMs;
  }

  /** Smallest raw receive − sentAt over the last LAG_SAMPLES batches (0 with none). */
  minOffset(): number {
    const n = Math.min(this.count, LAG_SAMPLES);
    let m = Infinity;
    for (let i = 0; i < n; i++) if (this.raw[i]! < m) m = this.raw[i]!;
    return n === 0 ? 0 : m;
  }

  /**
   * How much later than the fastest batch a batch arrives, at quantile `q` (raw receive − sentAt
   * less its minimum over the recent batches): the transport's jitter, free of clock offset.
   */
  jitter(q: number): number {
    const n = Math.min(this.count, LAG_SAMPLES);
    if (n === 0) return 0;
    const sorted = Array.from(this.raw.subarray(0, n)).sort((a, b) => a - b);
    return sorted[Math.min(n - 1, Math.floor(q * n))]! - sorted[0]!;
  }

  /** Lag quantile over the last LAG_SAMPLES batches (0 with none). */
  quantile(q: number): number {
    const n = Math.min(this.count, LAG_SAMPLES);
    if (n === 0) return 0;
    const sorted = Array.from(this.lags.subarray(0, n)).sort((a, b) => a - b);
    return sorted[Math.min(n - 1, Math.floor(q * n))];
  }
}

export class Peers {
  private readonly byNode = new Map<string, PeerTracker>();
  /** Per stream, when this node last handled a batch of it with none waiting behind it. */
  private readonly atEnd = new Map<string, number>();

  record(node: string, lagMs: number, cells: number, now: number, stream?: string): void {
    let p = this.byNode.get(node);
    if (p === undefined) this.byNode.set(node, (p = new PeerTracker()));
    p.record(lagMs, cells, now, stream);
  }

  /** A batch of `stream` was handled at `now` with `pending` batches waiting behind it. */
  noteStream(stream: string, pending: number, now: number): void {
    if (pending === 0) this.atEnd.set(stream, now);
  }

  /**
   * The last time this node had handled every batch stored in one of the streams `peer`'s
   * batches arrive on (0: never): what the peer's batches had reached those streams by then is
   * merged.
   */
  drainedAt(peer: PeerTracker): number {
    let t = 0;
    for (const s of peer.streams) t = Math.max(t, this.atEnd.get(s) ?? 0);
    return t;
  }

  entries(): IterableIterator<[string, PeerTracker]> {
    return this.byNode.entries();
  }

  has(node: string): boolean {
    return this.byNode.has(node);
  }

  get size(): number {
    return this.byNode.size;
  }

  stats(now: number): PeerStats[] {
    return [...this.byNode].map(([node, p]) => ({
      node,
      messages: p.messages,
      cells: p.cells,
      heartbeats: p.heartbeats,
      lastHeardAt: p.lastHeardAt,
      stalenessMs: Math.max(0, now - p.lastHeardAt),
      lagP50Ms: round(p.quantile(0.5)),
      lagP99Ms: round(p.quantile(0.99)),
      minOffsetMs: round(p.minOffset()),
    }));
  }
}

export function round(x: number): number {
  return Math.round(x * 100) / 100;
}
