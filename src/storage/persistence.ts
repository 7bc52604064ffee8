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
 * Replication positions: the replicator notes, after merging each batch, the stream position
 * it reached (`notePosition`); the next flush commits them in the same transaction as the
 * cells, so the stored cells always contain everything up to the stored positions. Shipping
 * is not done here: the replication shipper drains own cells from the engine on its own.
 *
 * A failed write does not crash the node: the rows are kept (one per cell, the latest value,
 * bounded) and retried on the next flush, the failure is counted and kept in `lastError`
 * (cleared by the next commit), and in `sync` mode the waiting requests are told and their
 * admissions taken back (`noteAdmission`): a request answered 503 is not counted. At shutdown
 * `flushWithin` keeps retrying for a bounded time and then says what was not written.
 */
import type { SlotEntry } from '../../crdt/index.ts';
import type { Engine } from '../engine/engine.ts';
import { StorageError } from '../engine/errors.ts';
import type { Durability, StateStore } from './ports.ts';

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
  /** Told of every failed write (logging); the failure is also kept in `lastError`. */
  onError?: (err: StorageError) => void;
  /** Told when a write succeeds after `failures` failed ones (logging). */
  onRecovered?: (failures: number) => void;
  /** Called after every successful write with its duration (ms) and rows (metrics). */
  onFlush?: (ms: number, rows: number) => void;
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
  private readonly o: Required<Omit<PersistenceOptions, 'onError' | 'onRecovered' | 'onFlush'>> & PersistenceOptions;
  /** Failed writes since the last successful one. */
  private failedInARow = 0;
  private timers: NodeJS.Timeout[] = [];
  /** Rows of failed writes, one per cell (the latest value: values only grow). */
  private retry = new Map<string, SlotEntry>();
  /** `sync` mode: how to take back each admission counted since the last commit. */
  private pendingUndo: Array<() => void> = [];
  /** Positions noted since the last commit (kept across failed writes). */
  private positions = new Map<string, number>();
  /** The last write failure, cleared by the next successful commit. */
  lastError: StorageError | undefined;
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

  /**
   * Load every live cell from the store (default: the persisted one) into the engine, merged
   * by max with what it holds.
   */
  restore(store: StateStore = this.o.store): { cells: number; ms: number } {
    const t0 = performance.now();
    const now = this.o.now();
    const engine = this.o.engine;
    const batch: SlotEntry[] = [];
    let cells = 0;
    store.loadCells(
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

  /**
   * `sync` mode: an admission was counted and will be answered after the next commit; `undo`
   * takes it back if that commit fails (the request is then answered 503, not admitted).
   */
  noteAdmission(undo: () => void): void {
    this.pendingUndo.push(undo);
  }

  /** The replicator merged a stream's batches up to `seq`: commit that with the next flush. */
  notePosition(stream: string, seq: number): void {
    if (seq > (this.positions.get(stream) ?? 0)) this.positions.set(stream, seq);
  }

  /** Drain the engine and commit. Throws StorageError if the write fails (rows are kept for retry). */
  flush(): number {
    const barrier = this.barrier;
    this.barrier = undefined;
    const undo = this.pendingUndo;
    this.pendingUndo = [];
    const drained = this.o.engine.drainRows();
    const cells = this.retry.size > 0 ? this.withRetried(drained) : drained;
    // With nothing to write, a failing store is still tried (an empty write opens a directory
    // that could not be written), so a quiet node also sees its storage recover.
    if (cells.length === 0 && this.positions.size === 0 && this.lastError === undefined) {
      barrier?.resolve();
      return 0;
    }
    const t0 = performance.now();
    try {
      this.o.store.write(this.positions.size > 0 ? { cells, positions: Object.fromEntries(this.positions) } : { cells });
    } catch (err) {
      this.stats.failures++;
      this.keepForRetry(cells);
      this.failedInARow++;
      const e = err instanceof StorageError ? err : new StorageError(String(err), { cause: err });
      this.lastError = e;
      // The requests waiting on this commit are answered 503: take their admissions back (a
      // refund of their own count, so a peer that already received them sees it fall back).
      for (const u of undo) u();
      barrier?.reject(e);
      throw e;
    }
    this.lastError = undefined;
    this.positions.clear();
    this.retry.clear();
    this.stats.retryRows = 0;
    this.stats.flushes++;
    this.stats.rowsWritten += cells.length;
    this.stats.lastFlushMs = performance.now() - t0;
    this.o.onFlush?.(this.stats.lastFlushMs, cells.length);
    if (this.failedInARow > 0) {
      const failed = this.failedInARow;
      this.failedInARow = 0;
      this.o.onRecovered?.(failed);
    }
    barrier?.resolve();
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

  /** The rows kept from failed writes, updated by the newly drained ones (latest value per cell). */
  private withRetried(drained: SlotEntry[]): SlotEntry[] {
    const merged = new Map(this.retry);
    for (const c of drained) merged.set(cellId(c), c);
    return [...merged.values()];
  }

  private keepForRetry(cells: SlotEntry[]): void {
    this.retry.clear();
    for (const c of cells) this.retry.set(cellId(c), maxCell(this.retry.get(cellId(c)), c));
    if (this.retry.size > this.o.maxRetryRows) {
      // Beyond the bound the oldest rows go (counted, and reported at shutdown).
      let over = this.retry.size - this.o.maxRetryRows;
      this.stats.droppedRows += over;
      for (const id of this.retry.keys()) {
        if (over-- <= 0) break;
        this.retry.delete(id);
      }
    }
    this.stats.retryRows = this.retry.size;
  }

  /** What failed writes left unwritten: cells, keys, and the own count in them (what this node admitted there; an upper bound of what is missing on disk). */
  unwritten(): { cells: number; keys: number; ownUnits: number; dropped: number } {
    const pending = this.withRetried(this.o.engine.drainRows());
    this.keepForRetry(pending);
    const keys = new Set<string>();
    let ownUnits = 0;
    for (const c of pending) {
      keys.add(`${c.scope}\u0000${c.key}`);
      if (c.node === this.o.engine.nodeId) ownUnits += c.p - c.n;
    }
    return { cells: pending.length, keys: keys.size, ownUnits, dropped: this.stats.droppedRows };
  }

  /**
   * Flush, retrying failed writes every `retryEveryMs` for up to `timeoutMs` (shutdown: a disk
   * that frees up in time loses nothing). Resolves true when everything is written.
   */
  async flushWithin(timeoutMs: number, retryEveryMs = 200): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        this.flush();
        return true;
      } catch (err) {
        if (performance.now() + retryEveryMs > deadline) {
          this.o.onError?.(err as StorageError);
          return false;
        }
      }
      await new Promise((r) => setTimeout(r, retryEveryMs));
    }
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
      // Expiry is maintenance (nothing is lost when it fails; it runs again): counted and
      // logged, not a degraded state of its own.
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

function cellId(c: SlotEntry): string {
  return `${c.scope}\u0000${c.key}\u0000${c.slot}\u0000${c.node}`;
}

/** Cell-wise max of two values of one cell. */
function maxCell(a: SlotEntry | undefined, b: SlotEntry): SlotEntry {
  if (a === undefined || (b.p >= a.p && b.n >= a.n)) return b;
  return { ...b, p: Math.max(a.p, b.p), n: Math.max(a.n, b.n) };
}
