/**
 * Replication of one node: the shipper (./shipper.ts) sends this node's own counts as they
 * change; the receiving side here merges every batch the transport hands over.
 *
 * Receiving, per batch, in one synchronous step:
 *   decode (hostile input: a CodecError refuses it for good)
 *   → check that the sender is who the channel says (only that node may publish there)
 *   → record the sender's lag and liveness
 *   → merge the cells into the engine (cell-wise max: duplicates, replays and reordering are harmless)
 *   → note the stream position, which persistence commits with the merged cells.
 *
 * This node's own batches come back too. Until the consumers have caught up once they are
 * merged like any other (a node that restarted, or lost its data directory, gets back what it
 * had shipped but not yet written to disk); after that they are skipped without decoding.
 */
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { CodecError, decodeMessage, type DeltaEnvelope, type RulesMessage } from '../../crdt/index.ts';
import type { Engine } from '../engine/engine.ts';
import { ReplicationError, isRefusal, refusal } from './errors.ts';
import { DegradationMonitor, type ModeOptions } from './modes.ts';
import { Overshoot, type OvershootEstimate } from './overshoot.ts';
import { CatchUp } from './catch-up.ts';
import { Peers } from './peers.ts';
import { HealthySharing, type SharingOptions } from './sharing.ts';
import type { ReplicatedMessage, Transport, TransportStatus } from './port.ts';
import { Shipper, type ShipperOptions } from './shipper.ts';

/** Where merged stream positions go to be committed with the cells (persistence implements it). */
export interface PositionSink {
  notePosition(stream: string, seq: number): void;
}

export interface ReplicatorOptions {
  engine: Engine;
  transport: Transport;
  positions: PositionSink;
  nodeId: string;
  now: () => number;
  logger: Logger;
  /** Cells per batch shipped; a received batch with more is refused. Default 4096. */
  maxCellsPerMessage?: number;
  /** Distinct peers accepted; a batch from a new node beyond it is refused. Default 256. */
  maxPeers?: number;
  /** An idle node sends an empty batch this often (ms). Default 1000. */
  heartbeatMs?: number;
  /** When the node counts as degraded, and its shares (./modes.ts). */
  modes?: ModeOptions;
  /** Near-limit sharing while healthy (./sharing.ts); false turns it off for every rule. */
  sharing?: SharingOptions | false;
  /** Batching under load (see ShipperOptions). */
  lingerMs?: ShipperOptions['lingerMs'];
  busyUtilization?: ShipperOptions['busyUtilization'];
  /** Spans around published and applied batches (tracing on). */
  tracer?: Tracer;
  /** Where rules messages go (src/rules/): each is handed over once decoded and checked against its channel. */
  rules?: { receive(msg: RulesMessage): void };
}

export type { OvershootEstimate } from './overshoot.ts';
export type { PeerStats } from './peers.ts';

const DEFAULT_MAX_CELLS = 4096;
const DEFAULT_MAX_PEERS = 256;
/** How often the degradation mode is re-evaluated (ms). */
const MODE_TICK_MS = 250;

export class Replicator {
  readonly shipper: Shipper;
  readonly peers = new Peers();
  /** Time to work through each stream's backlogs (time to converge, as this node sees it). */
  readonly catchUp = new CatchUp();
  readonly modes: DegradationMonitor;
  /** Near-limit sharing's view of the peers (null when turned off). */
  readonly sharing: HealthySharing | null;
  private readonly modeTimer: NodeJS.Timeout;
  private readonly o: ReplicatorOptions;
  private readonly overshootModel: Overshoot;
  private caughtUp = false;
  private started = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly lastRefused = { message: '' };
  readonly stats = { messages: 0, bytes: 0, applied: 0, refused: 0, ownReplayed: 0, ownSkipped: 0 };
  /** Refused batches by code (CodecError and ReplicationError codes). */
  private readonly refusedByCode: Record<string, number> = {};
  private readonly maxCells: number;
  private readonly maxPeers: number;

  constructor(opts: ReplicatorOptions) {
    this.o = opts;
    this.overshootModel = new Overshoot(opts.engine, opts.nodeId, opts.now());
    this.maxCells = opts.maxCellsPerMessage ?? DEFAULT_MAX_CELLS;
    this.maxPeers = opts.maxPeers ?? DEFAULT_MAX_PEERS;
    this.modes = new DegradationMonitor(opts.engine, this.peers, opts.nodeId, () => opts.transport.connected, opts.modes);
    // From construction on: a node whose NATS is down at start is degraded too.
    this.sharing = opts.sharing === false ? null : new HealthySharing(opts.engine, this.peers, this.modes.demand, opts.nodeId, opts.sharing);
    this.sharing?.refresh(opts.now());
    opts.engine.setSharing(this.sharing);
    this.modeTimer = setInterval(() => {
      const now = opts.now();
      this.modes.tick(now);
      this.sharing?.refresh(now);
    }, MODE_TICK_MS).unref();
    this.shipper = new Shipper({
      engine: opts.engine,
      transport: opts.transport,
      nodeId: opts.nodeId,
      now: opts.now,
      maxCellsPerMessage: opts.maxCellsPerMessage ?? DEFAULT_MAX_CELLS,
      heartbeatMs: opts.heartbeatMs,
      lingerMs: opts.lingerMs,
      busyUtilization: opts.busyUtilization,
      onError: (err) => opts.logger.warn({ err }, 'publishing a batch failed; its cells ship again with the next one'),
      tracer: opts.tracer,
    });
  }

  /**
   * Connect, create what is missing, consume after `startAfterSeq` (stored positions, or
   * nothing to replay everything) and start shipping. Retry it after a failure.
   */
  async start(startAfterSeq: Record<string, number>): Promise<void> {
    const t = this.o.transport;
    await t.start();
    if (!this.started) {
      await t.consume((msg) => this.handle(msg), { startAfterSeq });
      this.started = true;
      this.shipper.start();
      this.timer = setInterval(() => this.overshootModel.tick(this.o.now()), 1000).unref();
    }
  }

  /** Merge one batch. Throws CodecError for a batch that can never be applied. */
  private handle(msg: ReplicatedMessage): void {
    const own = msg.origin === this.o.nodeId;
    if (own && this.caughtUp) {
      this.stats.ownSkipped++;
      this.handled(msg, this.o.now());
      return;
    }
    const now = this.o.now();
    let env: DeltaEnvelope;
    try {
      const decoded = decodeMessage(msg.data);
      if (decoded.kind === 'rules') {
        if (msg.origin !== undefined && msg.origin !== decoded.rules.origin) {
          throw refusal('REPLICATION_FORGED', `rules message on ${msg.origin}'s channel claims origin ${decoded.rules.origin}`);
        }
        this.o.rules?.receive(decoded.rules);
        this.handled(msg, now);
        return;
      }
      env = decoded.delta;
      if (msg.origin !== undefined && msg.origin !== env.origin) {
        throw refusal('REPLICATION_FORGED', `batch on ${msg.origin}'s channel claims origin ${env.origin}`);
      }
      if (env.entries.length > this.maxCells) {
        throw refusal('REPLICATION_BATCH_TOO_LARGE', `batch from ${env.origin} carries ${env.entries.length} cells, max ${this.maxCells}`);
      }
      for (const c of env.entries) {
        if (c.node !== env.origin) throw refusal('REPLICATION_FORGED', `batch from ${env.origin} carries cells of node ${c.node}`);
      }
      if (!own && !this.peers.has(env.origin) && this.peers.size >= this.maxPeers) {
        throw refusal('REPLICATION_TOO_MANY_PEERS', `batch from new node ${env.origin} while ${this.peers.size} peers are tracked, max ${this.maxPeers}`);
      }
    } catch (caught) {
      // Whatever a batch's bytes make the decoder throw, the same bytes always will: refuse it
      // for good (never redelivered forever).
      const err = isRefusal(caught) ? caught : new CodecError('CODEC_MALFORMED', `undecodable batch: ${String(caught)}`, { cause: caught });
      this.stats.refused++;
      const code = err instanceof CodecError || err instanceof ReplicationError ? err.code : 'UNKNOWN';
      this.refusedByCode[code] = (this.refusedByCode[code] ?? 0) + 1;
      this.lastRefused.message = code === 'UNKNOWN' ? String(err) : `${code}: ${(err as Error).message}`;
      this.o.logger.warn({ err, stream: msg.stream, seq: msg.streamSeq, origin: msg.origin }, 'refused a replicated batch');
      this.o.positions.notePosition(msg.stream, msg.streamSeq);
      throw err;
    }
    this.stats.messages++;
    this.stats.bytes += msg.data.byteLength;
    if (own) this.stats.ownReplayed++;
    else this.peers.record(env.origin, now - env.sentAt, env.entries.length, now, msg.stream);
    if (env.entries.length > 0) {
      const span = this.o.tracer?.startSpan('replication.apply', { attributes: { 'regionlimit.peer': env.origin, 'regionlimit.cells': env.entries.length, 'regionlimit.stream': msg.stream, 'regionlimit.seq': msg.streamSeq, 'regionlimit.lag_ms': now - env.sentAt } });
      try {
        this.stats.applied += this.o.engine.applyRemote(
          env.entries,
          now,
          own
            ? undefined
            : (cl, node, inc, slot) => {
                this.overshootModel.countRemote(cl.scope, node, inc);
                this.modes.countRemote(cl.scope, cl.spec.windowMs, node, slot * cl.math.slotMs, inc);
              },
        );
      } finally {
        span?.end();
      }
    }
    this.handled(msg, now);
  }

  /**
   * A batch is merged (or had nothing for this node): its position is noted, the stream's
   * backlog and drained time are updated, and checks waiting for their share decide again.
   */
  private handled(msg: ReplicatedMessage, now: number): void {
    this.o.positions.notePosition(msg.stream, msg.streamSeq);
    this.catchUp.note(msg.stream, msg.pending, now);
    this.peers.noteStream(msg.stream, msg.pending, now);
    this.o.engine.peersProgress.fire();
  }

  /** Resolve true once every stream has been consumed up to its last sequence at the time of the call. */
  async waitCaughtUp(timeoutMs: number): Promise<boolean> {
    const t = this.o.transport;
    const deadline = Date.now() + timeoutMs;
    const targets = await t.lastSequences();
    while (Date.now() < deadline) {
      const streams = t.status().streams;
      if (Object.entries(targets).every(([s, last]) => (streams[s]?.lastSeq ?? 0) >= last)) {
        this.caughtUp = true;
        return true;
      }
      await new Promise((r) => setTimeout(r, 5));
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

  /** Per limit, how far all nodes together can exceed it right now (CONSISTENCY.md §8). */
  overshoot(now = this.o.now()): OvershootEstimate[] {
    this.overshootModel.tick(now);
    return this.overshootModel.estimate(this.peers, now);
  }

  /** The transport's connection and stream progress (metrics). */
  transportStatus(): TransportStatus {
    return this.o.transport.status();
  }

  /** Near-limit sharing counters (null when off): SHARE_WAIT answers, grants, keys holding one. */
  sharingCounters(): { waits: number; grants: number; keys: number } | null {
    return this.o.engine.sharingCounters;
  }

  /** Refused batches by code since start (metrics). */
  refusedCounts(): Readonly<Record<string, number>> {
    return this.refusedByCode;
  }

  status(now = this.o.now()): Record<string, unknown> {
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
      shipping: { ...this.shipper.stats, inFlight: this.shipper.inFlight },
      ...this.stats,
      degradation: this.modes.status(now),
      nearLimitSharing: this.o.engine.sharingCounters,
      refusedByCode: { ...this.refusedByCode },
      refusedCells: this.o.engine.stats().refusedCells,
      lastRefused: this.lastRefused.message || null,
      peers: this.peers.stats(now),
      catchUp: this.catchUp.stats(),
    };
  }

  /** Ship what is still marked (up to `timeoutMs`), stop, close the transport. */
  async stop(timeoutMs = 2000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    clearInterval(this.modeTimer);
    await this.shipper.stop(this.started ? timeoutMs : 0);
    await this.o.transport.close();
  }
}
