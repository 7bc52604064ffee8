/**
 * A node's data directory, opened so that no storage fault stops the node (a StateStore that
 * wraps the SQLite store of ./sqlite.ts):
 *
 * - **Corrupt or unreadable file** (truncated, flipped bits, not a database, wrong tables): found
 *   at open by SQLite's errors and `integrity_check`; the file (with its -wal and -shm) is renamed
 *   to `limiter.db.corrupt-<time>` and a new, empty database is created. The node then rebuilds
 *   from the streams like a node with a new directory, or alone starts empty (STORAGE_CORRUPT).
 * - **Lost file**: the directory's marker file (`node-id`, written beside the database once it
 *   exists) says this directory held the node's state, but the database is missing or empty
 *   (e.g. truncated to 0 bytes, which SQLite opens as a valid empty database): STORAGE_LOST.
 * - **Directory that cannot be written** (read-only mount, permissions, no space to create the
 *   file): the node serves from memory. The state is read, if the file can be read, from an
 *   in-memory copy; every write retries opening the directory (at most once per
 *   `reopenIntervalMs`) and throws STORAGE_UNAVAILABLE until it succeeds. On success
 *   `onReopen` is told, so the state on disk can be merged into memory before the waiting rows
 *   are written.
 *
 * Refused, as before, because they are an operator's mistake and moving the file aside would
 * throw away good data: a directory of another node id, a schema version newer than this build.
 */
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SlotEntry } from '../../crdt/index.ts';
import { LimiterError, StorageError, type StorageErrorCode } from '../engine/errors.ts';
import type { Durability, StateStore, StoredRules, WriteBatch } from './ports.ts';
import { DB_FILE, SqliteStore } from './sqlite.ts';

/** The marker beside the database: the node id, written once the database exists. */
export const MARKER_FILE = 'node-id';

/** SQLite result codes meaning the file itself is damaged or is not this store's database. */
const CORRUPT_CODES = new Set(['SQLITE_CORRUPT', 'SQLITE_CORRUPT_INDEX', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_VTAB', 'SQLITE_NOTADB', 'SQLITE_FORMAT']);

/** A storage problem found at start-up or since, as /readyz and /v1/status report it. */
export interface StorageFault {
  code: StorageErrorCode;
  message: string;
  /** When it was found (ms since the epoch). */
  atMs: number;
  /** Where the damaged files were moved (STORAGE_CORRUPT). */
  movedAside?: string[];
}

/** What the start-up open found. */
export interface OpenReport {
  /** The database is open for writing. */
  writable: boolean;
  /** The state kept in the directory by the node's earlier life can be loaded (false: new, lost, moved aside or unreadable). */
  hasEarlierState: boolean;
  fault?: StorageFault;
}

export interface DataDirectoryOptions {
  dir: string;
  nodeId: string;
  durability?: Durability;
  now: () => number;
  /** While the directory cannot be written, how often a write tries to open it again (default 1 s). */
  reopenIntervalMs?: number;
  /** One line per event worth an operator's attention. */
  log: {
    warn(fields: Record<string, unknown>, msg: string): void;
    error(fields: Record<string, unknown>, msg: string): void;
    info(fields: Record<string, unknown>, msg: string): void;
  };
}

export class DataDirectory implements StateStore {
  readonly path: string;
  private db: SqliteStore | undefined;
  /** Read-only copy of the file, while it cannot be opened for writing. */
  private snapshot: SqliteStore | undefined;
  private openedEarlierState = false;
  private lastAttemptMs = 0;
  private unavailable: StorageError | undefined;
  private closed = false;
  /** Told when a directory that could not be written has been opened (merge its state, then the write proceeds). */
  onReopen: ((store: StateStore) => void) | undefined;

  constructor(private readonly o: DataDirectoryOptions) {
    this.path = join(o.dir, DB_FILE);
  }

  /** True when this open found no earlier state of this node to load (a new, lost, moved-aside or unreadable database). */
  get created(): boolean {
    return !this.openedEarlierState;
  }

  /** Whether the database is open for writing. */
  get writable(): boolean {
    return this.db !== undefined;
  }

  /** Open at start-up. Throws only STORAGE_INCOMPATIBLE (another node's directory, a newer schema). */
  open(): OpenReport {
    const markerOwner = this.readMarker();
    if (markerOwner !== undefined && markerOwner !== this.o.nodeId) {
      throw new LimiterError('STORAGE_INCOMPATIBLE', `data directory ${this.o.dir} belongs to node "${markerOwner}", not "${this.o.nodeId}"`);
    }
    let fault: StorageFault | undefined;
    let store: SqliteStore | undefined;
    try {
      store = this.openVerified();
    } catch (err) {
      if (isIncompatible(err)) throw err;
      if (classify(err) === 'corrupt') {
        let movedAside: string[];
        try {
          movedAside = this.moveAside();
        } catch (renameErr) {
          // A damaged file in a directory that cannot be written either: serve without it.
          return this.openUnavailable(renameErr, { code: 'STORAGE_CORRUPT', message: describe(err), atMs: this.o.now() });
        }
        const why = describe(err);
        fault = { code: 'STORAGE_CORRUPT', message: `${this.path} is damaged (${why}); moved aside to ${movedAside[0] ?? '(nothing to move)'} and started a new database`, atMs: this.o.now(), movedAside };
        this.o.log.error({ code: fault.code, movedAside, reason: why }, `state store ${this.path} is damaged and was moved aside; starting a new one`);
        try {
          store = this.openVerified();
        } catch (again) {
          if (isIncompatible(again)) throw again;
          return this.openUnavailable(again, fault);
        }
      } else {
        return this.openUnavailable(err, undefined);
      }
    }
    this.db = store;
    this.openedEarlierState = !store.created;
    if (store.created && markerOwner !== undefined && fault === undefined) {
      fault = {
        code: 'STORAGE_LOST',
        message: `${this.path} was missing or empty although this directory held node "${markerOwner}"'s state (${MARKER_FILE} is there)`,
        atMs: this.o.now(),
      };
      this.o.log.error({ code: fault.code, path: this.path }, `state store ${this.path} was missing or empty although the directory held this node's state`);
    }
    this.writeMarker();
    return { writable: true, hasEarlierState: this.openedEarlierState, fault };
  }

  /** The problem that keeps the directory from being written right now, if any. */
  get unavailableError(): StorageError | undefined {
    return this.unavailable;
  }

  loadCells(isLive: (scope: string, slot: number) => boolean, visit: (cell: SlotEntry) => void): number {
    const from = this.db ?? this.snapshot;
    return from === undefined ? 0 : from.loadCells(isLive, visit);
  }

  positions(): Record<string, number> {
    const from = this.db ?? this.snapshot;
    return from === undefined ? {} : from.positions();
  }

  write(batch: WriteBatch): void {
    this.writable_().write(batch);
  }

  expire(minSlotByScope: ReadonlyMap<string, number>): number {
    return this.writable_().expire(minSlotByScope);
  }

  getMeta(key: string): string | undefined {
    return (this.db ?? this.snapshot)?.getMeta(key);
  }

  setMeta(key: string, value: string): void {
    this.writable_().setMeta(key, value);
  }

  loadRules(): StoredRules | undefined {
    return (this.db ?? this.snapshot)?.loadRules();
  }

  saveRules(rules: StoredRules): void {
    this.writable_().saveRules(rules);
  }

  close(): void {
    this.closed = true;
    this.db?.close();
    this.snapshot?.close();
    this.db = this.snapshot = undefined;
  }

  /** The open store, opening the directory again first if it could not be written (rate-limited). */
  private writable_(): SqliteStore {
    if (this.db !== undefined) return this.db;
    if (this.closed) throw new StorageError('state store is closed');
    const now = this.o.now();
    if (now - this.lastAttemptMs >= (this.o.reopenIntervalMs ?? 1000)) {
      this.lastAttemptMs = now;
      try {
        const store = this.openVerified();
        this.db = store;
        this.unavailable = undefined;
        this.snapshot?.close();
        this.snapshot = undefined;
        this.writeMarker();
        this.o.log.info({ path: this.path }, 'data directory is writable again; writing the state kept in memory');
        this.onReopen?.(this);
        return store;
      } catch (err) {
        this.unavailable = unavailableError(this.path, err);
      }
    }
    throw this.unavailable ?? new StorageError(`cannot open ${this.path}`, { code: 'STORAGE_UNAVAILABLE' });
  }

  /** The directory cannot be written: keep what can be read, report, retry on every write. */
  private openUnavailable(err: unknown, corrupt: StorageFault | undefined): OpenReport {
    this.unavailable = unavailableError(this.path, err);
    this.lastAttemptMs = this.o.now();
    if (corrupt === undefined && existsSync(this.path)) {
      try {
        const snap = new SqliteStore({ dir: this.o.dir, nodeId: this.o.nodeId, image: readFileSync(this.path) });
        const problems = snap.verify();
        if (problems.length === 0 && !snap.created) {
          this.snapshot = snap;
          this.openedEarlierState = true;
        } else snap.close();
      } catch {
        /* unreadable too: start from nothing (or from the streams) */
      }
    }
    const fault: StorageFault = { code: 'STORAGE_UNAVAILABLE', message: this.unavailable.message, atMs: this.o.now(), ...(corrupt?.movedAside ? { movedAside: corrupt.movedAside } : {}) };
    this.o.log.error(
      { code: fault.code, path: this.path, err: describe(err), stateRead: this.snapshot !== undefined },
      `cannot write the data directory; serving from memory${this.snapshot !== undefined ? ' (state read from the file)' : ''} and retrying`,
    );
    return { writable: false, hasEarlierState: this.openedEarlierState, fault };
  }

  private openVerified(): SqliteStore {
    // A file found on disk is checked read-only first: a damaged one is then moved aside
    // exactly as it was found (opening it for writing would migrate or checkpoint into it).
    if (existsSync(this.path) && statSync(this.path).size > 0) {
      let found: string[];
      try {
        found = SqliteStore.inspectFile(this.path);
      } catch (err) {
        // Reading the schema of a file that is not this store's fails with a plain SQLITE_ERROR.
        if (codeOf(err) === 'SQLITE_ERROR') throw new CorruptFile(describe(err));
        throw err;
      }
      if (found.length > 0) throw new CorruptFile(found.slice(0, 3).join('; '));
    }
    const store = new SqliteStore({ dir: this.o.dir, nodeId: this.o.nodeId, durability: this.o.durability });
    let problems: string[];
    try {
      problems = store.verify();
    } catch (err) {
      store.close();
      throw err;
    }
    if (problems.length > 0) {
      store.close();
      throw new CorruptFile(problems.slice(0, 3).join('; '));
    }
    return store;
  }

  /** Rename the database and its -wal and -shm to `limiter.db.corrupt-<time>[-wal|-shm]`. */
  private moveAside(): string[] {
    const stamp = new Date(this.o.now()).toISOString().replace(/[:.]/g, '-');
    const target = `${this.path}.corrupt-${stamp}`;
    const moved: string[] = [];
    for (const suffix of ['', '-wal', '-shm']) {
      const from = this.path + suffix;
      if (!existsSync(from)) continue;
      renameSync(from, target + suffix);
      moved.push(target + suffix);
    }
    return moved;
  }

  private readMarker(): string | undefined {
    try {
      return readFileSync(join(this.o.dir, MARKER_FILE), 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  private writeMarker(): void {
    const file = join(this.o.dir, MARKER_FILE);
    if (this.readMarker() === this.o.nodeId) return;
    try {
      writeFileSync(`${file}.tmp`, `${this.o.nodeId}\n`);
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.o.log.warn({ err: describe(err), file }, 'cannot write the data directory marker');
    }
  }
}

/** integrity_check or the tables found problems. */
class CorruptFile extends Error {}

function isIncompatible(err: unknown): boolean {
  return err instanceof LimiterError && err.code === 'STORAGE_INCOMPATIBLE';
}

/** The SQLite or file-system code of an error or of its causes. */
function codeOf(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && !(e instanceof LimiterError)) return e.code;
  }
  return undefined;
}

/** `corrupt`: the file is damaged (move it aside); `unavailable`: the directory cannot be used now (retry). */
function classify(err: unknown): 'corrupt' | 'unavailable' {
  if (err instanceof CorruptFile) return 'corrupt';
  const code = codeOf(err);
  return code !== undefined && CORRUPT_CODES.has(code) ? 'corrupt' : 'unavailable';
}

function describe(err: unknown): string {
  const code = codeOf(err);
  let e = err as { message?: string; cause?: unknown };
  while (e.cause !== undefined && e instanceof LimiterError) e = e.cause as typeof e;
  return `${code !== undefined ? `${code}: ` : ''}${e?.message ?? String(err)}`;
}

function unavailableError(path: string, err: unknown): StorageError {
  return new StorageError(`cannot open ${path} for writing: ${describe(err)}`, { cause: err, code: 'STORAGE_UNAVAILABLE' });
}
