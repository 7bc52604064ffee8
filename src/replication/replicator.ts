/**
 * Replication: ships this node's own cells as state-based deltas over JetStream and merges
 * everyone else's.
 *
 * - Outbox: every flush encodes the node's changed own cells into delta messages and commits them
 *   to the SQLite outbox in the same transaction as the cells themselves. The publisher sends the
 *   outbox in order with a `Nats-Msg-Id` of `<node>:<incarnation>:<outbox id>` (ids are never
 *   reused, and a node that lost its data directory has a new incarnation) and deletes
 *   a record only once JetStream has acknowledged it; a retry sends the same id, so JetStream
 *   dedupes it inside the duplicate window and the max-merge makes it harmless after that.
 * - Consumers: the transport reads the node's region stream and the region's aggregate (which
 *   sources the other regions). Every message is decoded (hostile input: refused with a coded
 *   error and terminated) and merged. Applied stream positions are committed with the merged
 *   cells, and a restart resumes right after them.
 * - A node that starts without its data directory replays the streams from the beginning,
 *   including its own messages, and so rebuilds its own contribution before it serves.
 * - Overshoot: per limit, the node estimates how far all nodes together can exceed it right now,
 *   from measured per-peer lag and admission rates (CONSISTENCY.md §8).
 */
import type { Logger } from 'pino';
import { CodecError, decodeDelta, encodeDelta, WIRE_VERSION, type SlotEntry } from '../../crdt/index.ts';
import type { CompiledLimit, Engine } from '../engine/engine.ts';
import type { StateStore, WriteBatch } from '../storage/sqlite.ts';
import { parseNodeSubject } from './subjects.ts';
import type { JetStreamTransport, ReplicatedMessage } from './transport.ts';

export interface ReplicatorOptions {
  engine: Engine;
  store: StateStore;
  transport: JetStreamTransport;
  nodeId: string;
  region: string;
  /** The state store's incarnation: message ids are `<node>:<incarnation>:<outbox id>`. */
  incarnation: string;
  flushIntervalMs: number;
  now: () => number;
  logger: Logger;
  /** Cells per delta message (keeps messages well under NATS' 1 MiB max_payload). */
  maxCellsPerMessage?: number;
  /** Outbox messages published concurrently. */
  publishWindow?: number;
}

/** Per-peer replication statistics. */
export interface PeerStats {
  node: string;
  messages: number;
  cells: number;
  lastHeardAt: number;
  lagP50Ms: number;
  lagP99Ms: number;
}

export interface OvershootEstimate {
  ruleId: string;
  policy: string;
  scope: string;
  limit: number;
  windowMs: number;
  /** Estimated worst-case admissions above `limit` across all nodes, right now. */
  bound: number;
  nodes: number;
  flushIntervalMs: number;
  /** Admissions per second per node (this scope). */
  ratesPerSecond: Record<string, number>;
  /** Staleness per node as seen here: flush interval + replication lag (ms). */
  stalenessMs: Record<string, number>;
}

const LAG_SAMPLES = 512;
const RATE_TICK_MS = 1000;

class PeerTracker {
  messages = 0;
  cells = 0;
  lastHeardAt = 0;
  private readonly lags = new Float64Array(LAG_SAMPLES);
  private count = 0;

  record(lagMs: number, cells: number, now: number): void {
    this.lags[this.count % LAG_SAMPLES] = lagMs < 0 ? 0 : lagMs;
    this.count++;
    this.messages++;
    this.cells += cells;
    this.lastHeardAt = now;
  }

  quantile(q: number): number {
    const n = Math.min(this.count, LAG_SAMPLES);
    if (n === 0) return 0;
    const sorted = Array.from(this.lags.subarray(0, n)).sort((a, b) => a - b);
    return sorted[Math.min(n - 1, Math.floor(q * n))];
  }
}

export class Replicator {
  private readonly o: Required<ReplicatorOptions>;
  private nextOutboxId: number;
  /** Per stream, the position last handed to a flush. */
  private readonly committedPositions = new Map<string, number>();
  private readonly peers = new Map<string, PeerTracker>();
  /** Per scope, per node: admitted cost since the last rate tick. */
  private readonly admitted = new Map<string, Map<string, number>>();
  /** Per scope, per node: admissions per second (EWMA). */
  private readonly rates = new Map<string, Map<string, number>>();
  private lastOwnAdmitted = new Map<string, number>();
  private lastTick = 0;
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;
  private timers: NodeJS.Timeout[] = [];
  private caughtUp = false;
  private connected = false;
  private readonly decodeErrors = { count: 0, last: '' };
  readonly stats = { published: 0, duplicates: 0, publishErrors: 0, applied: 0, messages: 0, refused: 0 };

  constructor(opts: ReplicatorOptions) {
    this.o = { maxCellsPerMessage: 4096, publishWindow: 256, ...opts };
    this.nextOutboxId = opts.store.lastOutboxId() + 1;
    for (const [stream, seq] of Object.entries(opts.store.positions())) this.committedPositions.set(stream, seq);
    this.lastTick = opts.now();
    for (const cl of opts.engine.allScopes()) this.lastOwnAdmitted.set(cl.scope, cl.store.ownAdmitted);
  }

  /**
   * Persistence hook, called inside every flush: turns the drained own cells into outbox
   * records and adds the applied stream positions, all committed with the cells.
   */
  extend(own: SlotEntry[], now: number): Omit<WriteBatch, 'cells'> {
    const outbox: NonNullable<WriteBatch['outbox']>[number][] = [];
    const max = this.o.maxCellsPerMessage;
    for (let i = 0; i < own.length; i += max) {
      const id = this.nextOutboxId++;
      const entries = i === 0 && own.length <= max ? own : own.slice(i, i + max);
      const payload = encodeDelta({ v: WIRE_VERSION, origin: this.o.nodeId, seq: id, sentAt: now, entries });
      outbox.push({ id, msgId: `${this.o.nodeId}:${this.o.incarnation}:${id}`, payload, createdAt: now });
    }
    // Only positions that moved: an idle node then commits nothing at all. (A failed write
    // keeps these for its retry, so nothing is skipped.)
    const positions: Record<string, number> = {};
    for (const [stream, seq] of Object.entries(this.o.transport.watermarks())) {
      if (seq > (this.committedPositions.get(stream) ?? 0)) {
        positions[stream] = seq;
        this.committedPositions.set(stream, seq);
      }
    }
    return { outbox, positions };
  }

  /** Connect, create streams and consumers, resume consuming after the stored positions. */
  async start(opts: { rebuild: boolean }): Promise<void> {
    const t = this.o.transport;
    // Idempotent up to here, so a start that failed (JetStream unavailable) can be retried.
    if (!this.connected) {
      await t.connect();
      this.connected = true;
    }
    await t.ensureStreams();
    const stored = this.o.store.positions();
    const startAfterSeq: Record<string, number> = {};
    for (const s of t.streams()) startAfterSeq[s] = opts.rebuild ? 0 : (stored[s] ?? 0);
    await t.consume((msg) => this.handle(msg), { startAfterSeq, deliverOwn: opts.rebuild });
    this.timers.push(setInterval(() => this.tick(), RATE_TICK_MS).unref());
    this.timers.push(setInterval(() => void this.pump(), Math.max(250, this.o.flushIntervalMs * 5)).unref());
    void this.pump();
  }

  /** Resolve once every stream has been consumed up to its last sequence at the time of the call. */
  async waitCaughtUp(timeoutMs: number): Promise<boolean> {
    const t = this.o.transport;
    const targets = await t.lastSequences();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const marks = t.watermarks();
      if (Object.entries(targets).every(([s, last]) => (marks[s] ?? 0) >= last)) {
        this.caughtUp = true;
        return true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  /** Whether the consumers have reached the streams' ends once (at start, or since). */
  get isCaughtUp(): boolean {
    if (this.caughtUp) return true;
    const status = this.o.transport.status();
    if (status.consuming) {
      const streams = Object.values(status.streams);
      if (streams.length > 0 && streams.every((s) => s.pending === 0)) this.caughtUp = true;
    }
    return this.caughtUp;
  }

  /** Merge one replicated message. Throws CodecError for a message that can never be applied. */
  private handle(msg: ReplicatedMessage): void {
    // A node that rebuilt from the streams is handed its own messages too (deliverOwn). Once it
    // has caught up, every own message still to come was cut from this engine's own cells, so
    // merging it changes nothing: skip it before decoding (the transport acks it), as a node
    // that kept its state never sees them.
    if (this.caughtUp && msg.subject === this.o.transport.subject) return;
    const now = this.o.now();
    let env;
    try {
      env = decodeDelta(msg.data);
    } catch (err) {
      this.stats.refused++;
      this.decodeErrors.count++;
      this.decodeErrors.last = err instanceof CodecError ? `${err.code}: ${err.message}` : String(err);
      this.o.logger.warn({ err, stream: msg.stream, seq: msg.streamSeq, subject: msg.subject }, 'refused replicated message');
      throw err;
    }
    // The subject says who sent it (only that node may publish there); a payload that claims
    // another origin, or carries cells of another node, is refused.
    const subjectNode = parseNodeSubject(msg.subject)?.nodeId;
    if (subjectNode !== undefined && subjectNode !== env.origin) {
      this.stats.refused++;
      throw new CodecError('CODEC_INVALID_FIELD', `message on ${msg.subject} claims origin ${env.origin}`);
    }
    for (const c of env.entries) {
      if (c.node !== env.origin) {
        this.stats.refused++;
        throw new CodecError('CODEC_INVALID_FIELD', `message from ${env.origin} carries cells of node ${c.node}`);
      }
    }
    this.stats.messages++;
    if (env.origin !== this.o.nodeId) {
      let peer = this.peers.get(env.origin);
      if (peer === undefined) this.peers.set(env.origin, (peer = new PeerTracker()));
      peer.record(now - env.sentAt, env.entries.length, now);
    }
    this.stats.applied += this.o.engine.applyRemote(env.entries, now, (cl, node, inc) => this.countAdmitted(cl, node, inc));
  }

  private countAdmitted(cl: CompiledLimit, node: string, increase: number): void {
    if (node === this.o.nodeId) return;
    let m = this.admitted.get(cl.scope);
    if (m === undefined) this.admitted.set(cl.scope, (m = new Map()));
    m.set(node, (m.get(node) ?? 0) + increase);
  }

  /** Publish the outbox until it is empty; safe to call often (one pump runs at a time). */
  async pump(): Promise<void> {
    if (this.stopped) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        for (;;) {
          if (this.stopped || !this.o.transport.status().connected) break;
          const batch = this.o.store.outbox(this.o.publishWindow);
          if (batch.length === 0) break;
          const results = await Promise.allSettled(batch.map((r) => this.o.transport.publish(this.o.nodeId, r.payload, r.msgId)));
          const acked: number[] = [];
          results.forEach((res, i) => {
            if (res.status === 'fulfilled') {
              acked.push(batch[i].id);
              if (res.value.duplicate) this.stats.duplicates++;
              else this.stats.published++;
            } else {
              this.stats.publishErrors++;
            }
          });
          if (acked.length > 0) this.o.store.ackOutbox(acked);
          if (acked.length < batch.length) break; // retry the rest on the next pump
        }
      } while (this.pumpAgain && !this.stopped);
    } catch (err) {
      this.stats.publishErrors++;
      this.o.logger.warn({ err }, 'publishing the outbox failed; will retry');
    } finally {
      this.pumping = false;
    }
  }

  /** Roll admission counters into per-second rates. */
  tick(now = this.o.now()): void {
    const dt = (now - this.lastTick) / 1000;
    if (dt <= 0) return;
    this.lastTick = now;
    const alpha = 0.5;
    for (const cl of this.o.engine.allScopes()) {
      const prev = this.lastOwnAdmitted.get(cl.scope) ?? cl.store.ownAdmitted;
      this.lastOwnAdmitted.set(cl.scope, cl.store.ownAdmitted);
      const own = (cl.store.ownAdmitted - prev) / dt;
      const remote = this.admitted.get(cl.scope);
      let rates = this.rates.get(cl.scope);
      if (rates === undefined) this.rates.set(cl.scope, (rates = new Map()));
      const nodes = new Set<string>([this.o.nodeId, ...rates.keys(), ...(remote?.keys() ?? [])]);
      for (const node of nodes) {
        const sample = node === this.o.nodeId ? own : (remote?.get(node) ?? 0) / dt;
        const prevRate = rates.get(node) ?? sample;
        rates.set(node, alpha * sample + (1 - alpha) * prevRate);
      }
    }
    this.admitted.clear();
  }

  /**
   * Worst-case overshoot per limit right now (CONSISTENCY.md §8):
   *   bound = min((N − 1) · limit, Σ_j rate_j · (F + lag_j))
   * rate_j: node j's admission rate in this scope; F: flush interval; lag_j: p99 lag from j
   * (for this node, the largest peer lag stands in for how late the others see it); while a
   * peer that was admitting has gone silent, its lag is the time since it was last heard.
   */
  overshoot(now = this.o.now()): OvershootEstimate[] {
    const F = this.o.flushIntervalMs;
    const peerLag = new Map<string, number>();
    let maxLag = 0;
    for (const [node, p] of this.peers) {
      let lag = p.quantile(0.99);
      const silent = now - p.lastHeardAt;
      if (silent > Math.max(1000, 10 * F)) lag = Math.max(lag, silent);
      peerLag.set(node, lag);
      if (lag > maxLag) maxLag = lag;
    }
    peerLag.set(this.o.nodeId, maxLag);
    const nodes = peerLag.size;
    const out: OvershootEstimate[] = [];
    for (const cl of this.o.engine.allScopes()) {
      const rates = this.rates.get(cl.scope) ?? new Map<string, number>();
      let sum = 0;
      const ratesPerSecond: Record<string, number> = {};
      const stalenessMs: Record<string, number> = {};
      for (const [node, lag] of peerLag) {
        const r = rates.get(node) ?? 0;
        const d = F + lag;
        ratesPerSecond[node] = round(r);
        stalenessMs[node] = round(d);
        sum += (r * d) / 1000;
      }
      const cap = (nodes - 1) * cl.math.capacity;
      out.push({
        ruleId: cl.ruleId,
        policy: cl.policy.name,
        scope: cl.scope,
        limit: cl.math.capacity,
        windowMs: cl.spec.windowMs,
        bound: Math.ceil(Math.min(cap, sum)),
        nodes,
        flushIntervalMs: F,
        ratesPerSecond,
        stalenessMs,
      });
    }
    return out;
  }

  peerStats(): PeerStats[] {
    return [...this.peers].map(([node, p]) => ({
      node,
      messages: p.messages,
      cells: p.cells,
      lastHeardAt: p.lastHeardAt,
      lagP50Ms: round(p.quantile(0.5)),
      lagP99Ms: round(p.quantile(0.99)),
    }));
  }

  status(): Record<string, unknown> {
    const t = this.o.transport.status();
    return {
      connected: t.connected,
      server: t.server,
      streamsReady: t.streamsReady,
      caughtUp: this.isCaughtUp,
      reconnects: t.reconnects,
      consumerStalls: t.stalls,
      lastError: t.lastError,
      streams: t.streams,
      outboxPending: this.o.store.outboxSize(),
      ...this.stats,
      lastRefused: this.decodeErrors.last || null,
      peers: this.peerStats(),
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // Let an in-flight pump settle, then close (acks in hand are flushed by the transport).
    for (let i = 0; i < 100 && this.pumping; i++) await new Promise((r) => setTimeout(r, 10));
    await this.o.transport.close();
  }

  /** Publish whatever is in the outbox now (used at shutdown after the final flush). */
  async drainOutbox(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.stopped = false;
    while (Date.now() < deadline && this.o.store.outboxSize() > 0 && this.o.transport.status().connected) {
      await this.pump();
      if (this.o.store.outboxSize() > 0) await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
