/**
 * Persistence loop: drains the engine's changes and writes them to the state store in batched
 * transactions, restores live windows at start-up, expires old slots, and sweeps idle keys.
 *
 * Durability modes:
 * - `batch` (default): a flush every `flushIntervalMs`; a kill -9 loses at most the last
 *   interval of own increments.
 * - `sync`: group commit before answering; callers await `commitBarrier()` after counting, and
 *   every request decided in the same event-loop turn shares one transaction.
 *
 * A failed write does not crash the node: the rows are kept (bounded) and retried on the next
 * flush, the failure is counted, and in `sync` mode the waiting requests are told.
 */
import type { SlotEntry } from '../../crdt/index.ts';
import type { Engine } from '../engine/engine.ts';
import { StorageError } from '../engine/errors.ts';
import type { Durability, StateStore, WriteBatch } from './sqlite.ts';

export interface PersistenceOptions {
  engine: Engine;
  store: StateStore;
  durability: Durability;
  flushIntervalMs: number;
  now: () => number;
  /** Expire old slots from the store this often. */
  expireIntervalMs?: number;
  /** Sweep idle keys from memory this often. */
  sweepIntervalMs?: number;
  /** Largest number of rows kept for retry after failed writes. */
  maxRetryRows?: number;
  /** Extra writes committed in the same transaction as the drained cells (replication outbox). */
  extend?: (own: SlotEntry[], now: number) => Omit<WriteBatch, 'cells'> | undefined;
  /** Called after a successful commit (e.g. to kick the replication publisher). */
  afterCommit?: (committed: { rows: number; own: number }) => void;
  onError?: (err: StorageError) => void;
}

export interface PersistenceStats {
  flushes: number;
  rowsWritten: number;
  failures: number;
  retryRows: number;
  droppedRows: number;
  lastFlushMs: number;
  expiredRows: number;
  restoredCells: number;
  restoreMs: number;
}

export class Persistence {
  private readonly o: Required<Omit<PersistenceOptions, 'extend' | 'afterCommit' | 'onError'>> & PersistenceOptions;
  private timers: NodeJS.Timeout[] = [];
  private retry: SlotEntry[] = [];
  private retryExtra: Omit<WriteBatch, 'cells'>[] = [];
  private barrier: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | undefined;
  private barrierScheduled = false;
  private closed = false;
  readonly stats: PersistenceStats = {
    flushes: 0,
    rowsWritten: 0,
    failures: 0,
    retryRows: 0,
    droppedRows: 0,
    lastFlushMs: 0,
    expiredRows: 0,
    restoredCells: 0,
    restoreMs: 0,
  };

  constructor(opts: PersistenceOptions) {
    this.o = { expireIntervalMs: 10_000, sweepIntervalMs: 1_000, maxRetryRows: 1_000_000, ...opts };
  }

  /** Load every live cell from the store into the engine. */
  restore(): { cells: number; ms: number } {
    const t0 = performance.now();
    const now = this.o.now();
    const engine = this.o.engine;
    const batch: SlotEntry[] = [];
    let cells = 0;
    this.o.store.loadCells(
      (scope, slot) => {
        const cl = engine.scope(scope);
        return cl !== undefined && slot > Math.floor(now / cl.math.slotMs) - cl.store.ringSlots;
      },
      (cell) => {
        batch.push(cell);
        if (batch.length >= 10_000) {
          cells += engine.restore(batch, now);
          batch.length = 0;
        }
      },
    );
    cells += engine.restore(batch, now);
    const ms = performance.now() - t0;
    this.stats.restoredCells = cells;
    this.stats.restoreMs = ms;
    return { cells, ms };
  }

  /** Start the flush, expiry and sweep timers (unref'd: they never keep the process alive). */
  start(): void {
    if (this.o.durability === 'batch') {
      this.timers.push(setInterval(() => this.flushSafe(), this.o.flushIntervalMs).unref());
    } else {
      // In sync mode requests flush through commitBarrier(); this timer only catches remote merges.
      this.timers.push(setInterval(() => this.flushSafe(), this.o.flushIntervalMs).unref());
    }
    this.timers.push(setInterval(() => this.expire(), this.o.expireIntervalMs).unref());
    this.timers.push(setInterval(() => this.o.engine.sweep(this.o.now()), this.o.sweepIntervalMs).unref());
  }

  /**
   * In `sync` mode: a promise that resolves once everything counted so far is committed.
   * Requests decided in the same event-loop turn share one transaction (group commit).
   * In `batch` mode: undefined (nothing to wait for).
   */
  commitBarrier(): Promise<void> | undefined {
    if (this.o.durability !== 'sync') return undefined;
    if (this.barrier === undefined) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.barrier = { promise, resolve, reject };
    }
    if (!this.barrierScheduled) {
      this.barrierScheduled = true;
      setImmediate(() => {
        this.barrierScheduled = false;
        this.flushSafe();
      });
    }
    return this.barrier.promise;
  }

  /** Drain the engine and commit. Throws StorageError if the write fails (rows are kept for retry). */
  flush(): number {
    const barrier = this.barrier;
    this.barrier = undefined;
    const now = this.o.now();
    const drained = this.o.engine.drain();
    const extra = this.o.extend ? this.o.extend(drained.own, now) : undefined;
    const cells = this.retry.length > 0 ? this.retry.concat(drained.rows) : drained.rows;
    const extras = extra && (extra.outbox?.length || (extra.positions && Object.keys(extra.positions).length > 0)) ? [...this.retryExtra, extra] : this.retryExtra;
    if (cells.length === 0 && extras.length === 0) {
      barrier?.resolve();
      return 0;
    }
    const batch: WriteBatch = { cells, ...mergeExtras(extras) };
    const t0 = performance.now();
    try {
      this.o.store.write(batch);
    } catch (err) {
      this.stats.failures++;
      this.keepForRetry(cells, extras);
      const e = err instanceof StorageError ? err : new StorageError(String(err), { cause: err });
      barrier?.reject(e);
      throw e;
    }
    this.retry = [];
    this.retryExtra = [];
    this.stats.retryRows = 0;
    this.stats.flushes++;
    this.stats.rowsWritten += cells.length;
    this.stats.lastFlushMs = performance.now() - t0;
    barrier?.resolve();
    this.o.afterCommit?.({ rows: cells.length, own: drained.own.length });
    return cells.length;
  }

  private flushSafe(): void {
    if (this.closed) return;
    try {
      this.flush();
    } catch (err) {
      this.o.onError?.(err as StorageError);
    }
  }

  private keepForRetry(cells: SlotEntry[], extras: Omit<WriteBatch, 'cells'>[]): void {
    let kept = cells;
    if (kept.length > this.o.maxRetryRows) {
      this.stats.droppedRows += kept.length - this.o.maxRetryRows;
      kept = kept.slice(kept.length - this.o.maxRetryRows);
    }
    this.retry = kept;
    this.retryExtra = extras;
    this.stats.retryRows = kept.length;
  }

  /** Remove expired slots from the store. */
  expire(): number {
    if (this.closed) return 0;
    const now = this.o.now();
    const min = new Map<string, number>();
    for (const cl of this.o.engine.allScopes()) min.set(cl.scope, Math.floor(now / cl.math.slotMs) - cl.store.ringSlots + 1);
    try {
      const n = this.o.store.expire(min);
      this.stats.expiredRows += n;
      return n;
    } catch (err) {
      this.stats.failures++;
      this.o.onError?.(err as StorageError);
      return 0;
    }
  }

  /** Final flush and stop timers (the store is closed by its owner). */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    try {
      this.flush();
    } catch (err) {
      this.o.onError?.(err as StorageError);
    }
    this.closed = true;
  }
}

function mergeExtras(extras: readonly Omit<WriteBatch, 'cells'>[]): Omit<WriteBatch, 'cells'> {
  if (extras.length === 0) return {};
  if (extras.length === 1) return extras[0];
  const outbox: NonNullable<WriteBatch['outbox']>[number][] = [];
  const positions: Record<string, number> = {};
  for (const e of extras) {
    if (e.outbox) outbox.push(...e.outbox);
    if (e.positions) for (const [k, v] of Object.entries(e.positions)) positions[k] = Math.max(positions[k] ?? 0, v);
  }
  return { outbox, positions };
}
