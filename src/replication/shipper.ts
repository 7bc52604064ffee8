/**
 * The shipper: one pipeline that sends this node's own counts to every other node, read top
 * to bottom in `run()`:
 *
 *   wait for own changes (or a heartbeat to be due)
 *   → wait for the transport to be reachable
 *   → drain the engine's changed own cells (absolute values)
 *   → encode them into batches
 *   → publish, and wait for the acknowledgement
 *   → on failure, hand the cells back to the engine to be shipped again
 *
 * Shipping is eager: with nothing in flight a change goes out in the same event-loop turn it
 * was made (after the turn's other requests, so one turn's admissions share a batch); while a
 * publish is in flight, changes accumulate in the engine's dirty set and go out together when
 * it is acknowledged, so batches grow with load on their own (Nagle off, with back-pressure).
 * When the process itself is saturated (event-loop utilisation above `busyUtilization`), a
 * batch also lingers until `lingerMs` after the previous one started, so that shipping takes
 * less of the CPU the requests need (autocorking: only under load, never at idle).
 *
 * A key at half its limit or more is shipped at once by a second, small loop (`runPriority`),
 * even while a batch is in flight or lingering: the exhaustion signal that lets the other
 * nodes start denying within one transport lag.
 *
 * Nothing admitted is lost or doubled: cells carry absolute per-node values merged by max, so
 * shipping a cell again (after a failure, a restart or a duplicate) never adds anything, and a
 * failed publish re-marks its keys dirty so their newest values go out with the next batch.
 *
 * An idle node publishes an empty batch every `heartbeatMs`, so every other node knows how
 * stale its view of this node is.
 */
import { SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { randomBytes } from 'node:crypto';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { encodeDelta, WIRE_VERSION, type SlotEntry } from '../../crdt/index.ts';
import type { Engine } from '../engine/engine.ts';
import type { Transport } from './port.ts';

export interface ShipperOptions {
  engine: Engine;
  transport: Transport;
  nodeId: string;
  /** Clock for the batches' `sentAt` (ms since epoch). */
  now: () => number;
  /** Cells per batch (keeps messages well under NATS' 1 MiB max_payload). Default 4096. */
  maxCellsPerMessage?: number;
  /** An idle node sends an empty batch this often (ms). Default 1000. */
  heartbeatMs?: number;
  /**
   * Under load, an ordinary batch waits until this long after the previous one started (ms).
   * Default 10; 0 ships every batch as soon as the previous one is acknowledged.
   */
  lingerMs?: number;
  /** Event-loop utilisation (0–1, over the last ~100 ms) above which batches linger. Default 0.5. */
  busyUtilization?: number;
  /** Told of every failed publish (logging). */
  onError?: (err: unknown) => void;
  /** Spans `replication.publish` around each published batch with cells (tracing on). */
  tracer?: Tracer;
}

export interface ShipperStats {
  /** Pipeline rounds that published something. */
  rounds: number;
  messages: number;
  cells: number;
  bytes: number;
  heartbeats: number;
  /** Batches sent ahead of the rest because a key reached its limit. */
  priority: number;
  publishErrors: number;
  /** Cells handed back to the engine after a failed publish. */
  requeued: number;
  /** Largest batch (cells) shipped in one round. */
  largestRound: number;
  /** Rounds that lingered because the process was busy. */
  lingered: number;
  /** When the last publish was acknowledged (ms, injected clock); 0 = never. */
  lastAckAt: number;
}

const RETRY_MIN_MS = 20;
const RETRY_MAX_MS = 1000;

/**
 * An idle node's heartbeat interval: also how long a node waiting for its share of a key's
 * headroom may wait on an idle peer (CONSISTENCY.md §12).
 */
export const DEFAULT_NODE_HEARTBEAT_MS = 250;

export class Shipper {
  readonly stats: ShipperStats = { rounds: 0, messages: 0, cells: 0, bytes: 0, heartbeats: 0, priority: 0, publishErrors: 0, requeued: 0, largestRound: 0, lingered: 0, lastAckAt: 0 };
  private readonly o: Required<Omit<ShipperOptions, 'onError' | 'tracer'>> & ShipperOptions;
  /** Message ids are `<node>:<boot id>:<n>`: unique per process life, so JetStream dedupes only true retries. */
  private readonly bootId = randomBytes(6).toString('hex');
  private seq = 0;
  private inflight = 0;
  private stopped = false;
  private lastSentAt = Date.now();
  private wake: (() => void) | undefined;
  private loops: Promise<void>[] = [];
  /** Wall-clock start of the last ordinary round. */
  private lastRoundAt = 0;
  private elu: EventLoopUtilization = performance.eventLoopUtilization();
  private eluAt = -Infinity;
  private busy = false;

  constructor(opts: ShipperOptions) {
    this.o = {
      ...opts,
      maxCellsPerMessage: opts.maxCellsPerMessage ?? 4096,
      heartbeatMs: opts.heartbeatMs ?? DEFAULT_NODE_HEARTBEAT_MS,
      lingerMs: opts.lingerMs ?? 10,
      busyUtilization: opts.busyUtilization ?? 0.5,
    };
  }

  /** Start both loops (idempotent). */
  start(): void {
    if (this.loops.length > 0) return;
    this.loops = [this.run(), this.runPriority()];
  }

  /** Publishes waiting for an acknowledgement right now. */
  get inFlight(): number {
    return this.inflight;
  }

  /** The pipeline. */
  private async run(): Promise<void> {
    let retryMs = 0;
    while (!this.stopped) {
      const changed = await this.nextChange();
      if (this.stopped) break;
      if (!(await this.reachable())) continue;
      if (changed) await this.lingerIfBusy();
      if (this.stopped) break;
      // Every batch holds every own change made before its sentAt (near-limit sharing relies on it).
      const cells = this.o.engine.drainOwn();
      if (cells.length > 0) this.lastRoundAt = performance.now();
      // Nothing to ship: skip, unless a key waits for its share (a heartbeat tells the waiting peers how far this node's counts go).
      if (changed && cells.length === 0 && !this.o.engine.takeSyncWanted()) continue;
      const ok = await this.ship(cells, false);
      if (ok) retryMs = 0;
      else {
        retryMs = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, retryMs * 2));
        await this.pause(retryMs);
      }
    }
  }

  /** Keys that reached their limit go out at once, even while a batch is in flight. */
  private async runPriority(): Promise<void> {
    while (!this.stopped) {
      await this.o.engine.urgent.wait();
      if (this.stopped) break;
      if (!this.o.transport.connected) continue; // the main loop ships them when back
      // Everything pending goes with them, so this batch too holds every change made before it.
      const cells = this.o.engine.drainOwn();
      if (cells.length > 0 && (await this.ship(cells, true))) this.stats.priority++;
    }
  }

  /**
   * Resolves true when own changes wait, false when a heartbeat is due. Changes made in the
   * same event-loop turn are let in first (setImmediate), so they share the batch.
   */
  private async nextChange(): Promise<boolean> {
    const dueIn = this.lastSentAt + this.o.heartbeatMs - Date.now();
    if (dueIn <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    const changed = await Promise.race([
      this.o.engine.ownChanged.wait().then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), dueIn);
        this.wake = () => r(false);
      }),
    ]);
    clearTimeout(timer);
    this.wake = undefined;
    if (changed) await new Promise<void>((r) => setImmediate(r));
    return changed;
  }

  /** Under load, wait until `lingerMs` after the previous round started (more changes join this one). */
  private async lingerIfBusy(): Promise<void> {
    const now = performance.now();
    if (now - this.eluAt >= 100) {
      const next = performance.eventLoopUtilization();
      this.busy = performance.eventLoopUtilization(next, this.elu).utilization > this.o.busyUtilization;
      this.elu = next;
      this.eluAt = now;
    }
    const wait = this.lastRoundAt + this.o.lingerMs - now;
    if (!this.busy || wait <= 0) return;
    this.stats.lingered++;
    await this.pause(wait);
  }

  /** Wait (up to a heartbeat) for the transport to be reachable. */
  private async reachable(): Promise<boolean> {
    const t = this.o.transport;
    if (t.connected) return true;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        t.off('reconnect', done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.o.heartbeatMs);
      this.wake = done;
      t.on('reconnect', done);
    });
    // Changes seen while waiting are still marked in the engine: make sure the next round looks.
    if (!this.stopped) this.o.engine.ownChanged.fire();
    return !this.stopped && t.connected;
  }

  /** Encode and publish `cells` (an empty list is a heartbeat); true when every batch was acknowledged. */
  private async ship(cells: SlotEntry[], priority: boolean): Promise<boolean> {
    const max = this.o.maxCellsPerMessage;
    const chunks: SlotEntry[][] = [];
    if (cells.length <= max) chunks.push(cells);
    else for (let i = 0; i < cells.length; i += max) chunks.push(cells.slice(i, i + max));
    const sentAt = this.o.now();
    this.lastSentAt = Date.now();
    const results = await Promise.allSettled(
      chunks.map(async (entries) => {
        const seq = ++this.seq;
        const bytes = encodeDelta({ v: WIRE_VERSION, origin: this.o.nodeId, seq, sentAt, entries });
        this.inflight++;
        const span = entries.length > 0 ? this.o.tracer?.startSpan('replication.publish', { attributes: { 'regionlimit.cells': entries.length, 'regionlimit.bytes': bytes.byteLength, 'regionlimit.seq': seq } }) : undefined;
        try {
          await this.o.transport.publish(bytes, `${this.o.nodeId}:${this.bootId}:${seq}`);
        } catch (err) {
          span?.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
          throw err;
        } finally {
          this.inflight--;
          span?.end();
        }
        this.stats.messages++;
        this.stats.bytes += bytes.byteLength;
        this.stats.cells += entries.length;
      }),
    );
    let ok = true;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      ok = false;
      this.stats.publishErrors++;
      this.stats.requeued += chunks[i].length;
      this.o.engine.requeueOwn(chunks[i]);
      this.o.onError?.(r.reason);
    });
    if (ok) {
      this.stats.lastAckAt = this.o.now();
      if (cells.length === 0) this.stats.heartbeats++;
      else if (!priority) {
        this.stats.rounds++;
        if (cells.length > this.stats.largestRound) this.stats.largestRound = cells.length;
      }
    }
    return ok;
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Ship whatever is still marked (used at shutdown, after the last admissions), waiting up to
   * `timeoutMs` for the acknowledgements; then stop both loops.
   */
  async stop(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.o.transport.connected) {
      const cells = this.o.engine.drainOwn();
      if (cells.length === 0 && this.inflight === 0) break;
      if (cells.length > 0 && !(await this.ship(cells, false))) break;
      if (cells.length === 0) await new Promise((r) => setTimeout(r, 5));
    }
    this.stopped = true;
    this.wake?.();
    this.o.engine.ownChanged.release();
    this.o.engine.urgent.release();
    await Promise.all(this.loops);
  }
}
