/**
 * SQLite state store (better-sqlite3, WAL), implementing the storage ports of ./ports.ts:
 * load live cells, write a batch of cells (cell-wise max, so replays are harmless) with the
 * replication positions they contain in one transaction, expire old slots, small metadata.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { SlotEntry } from '../../crdt/index.ts';
import { LimiterError, StorageError } from '../engine/errors.ts';
import type { Durability, StateStore, StoredRules, WriteBatch } from './ports.ts';
import { RULES_META_KEY, decodeStoredRules, encodeStoredRules } from './rules-record.ts';

export type { Durability, StateStore, WriteBatch } from './ports.ts';

/**
 * 2: the replication outbox is gone (own cells are shipped from memory and, after a restart,
 * shipped again from the restored cells). Version 1 files are upgraded in place.
 */
export const SCHEMA_VERSION = 2;

/** The database file's name in the data directory (with `-wal` and `-shm` beside it). */
export const DB_FILE = 'limiter.db';

/** The columns each table must have, in order (a file with other tables is not this store's). */
const TABLE_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  meta: ['key', 'value'],
  scopes: ['id', 'name'],
  nodes: ['id', 'name'],
  cells: ['scope', 'key', 'slot', 'node', 'p', 'n'],
  positions: ['stream', 'seq'],
};

/**
 * integrity_check's findings, and tables whose columns are not this store's. `complete`: every
 * table must exist (an opened store); otherwise only `meta` must (a file found on disk, which
 * an older version may have written with fewer tables).
 */
function checkDatabase(db: Database.Database, complete: boolean): string[] {
  const problems: string[] = [];
  for (const row of db.pragma('integrity_check') as { integrity_check: string }[]) {
    if (row.integrity_check !== 'ok') problems.push(row.integrity_check);
  }
  for (const [table, columns] of Object.entries(TABLE_COLUMNS)) {
    const have = (db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name);
    if (have.length === 0 && !complete && table !== 'meta') continue;
    if (have.join(',') !== columns.join(',')) problems.push(`table ${table} has columns (${have.join(',')}), expected (${columns.join(',')})`);
  }
  return problems;
}

/** Rows per multi-row upsert statement (6 parameters each; SQLite allows 32 766). */
const UPSERT_ROWS = 64;

export interface SqliteStoreOptions {
  /** Data directory; the database is `<dir>/limiter.db`. */
  dir: string;
  /** Node id owning this directory; opening another node's directory is refused. */
  nodeId: string;
  /** `sync` sets synchronous=FULL (every commit reaches the disk); `batch` uses NORMAL. */
  durability?: Durability;
  /**
   * Open this image of the database file in memory instead of the file (a directory that can be
   * read but not written): the state can be loaded from it, and nothing written reaches the disk.
   */
  image?: Buffer;
}

export class SqliteStore implements StateStore {
  readonly path: string;
  /** True when this open created the database (a new or emptied data directory). */
  readonly created: boolean;
  private readonly db: Database.Database;
  private readonly scopeIds = new Map<string, number>();
  private readonly scopeNames = new Map<number, string>();
  private readonly nodeIds = new Map<string, number>();
  private readonly nodeNames = new Map<number, string>();
  private readonly stmts: {
    upsert: Database.Statement;
    insScope: Database.Statement;
    insNode: Database.Statement;
    expire: Database.Statement;
    getMeta: Database.Statement;
    setMeta: Database.Statement;
    setPos: Database.Statement;
    positions: Database.Statement;
  };
  private readonly writeTx: (batch: WriteBatch) => void;
  /** Scope and node ids inserted by the write transaction in progress (forgotten if it fails). */
  private addedInTx: Array<['scope' | 'node', string, number]> = [];

  constructor(opts: SqliteStoreOptions) {
    let opened: Database.Database | undefined;
    try {
      this.path = join(opts.dir, DB_FILE);
      if (opts.image !== undefined) {
        // The header's read/write versions 2 mean WAL, which an in-memory image cannot use.
        const image = Buffer.from(opts.image);
        if (image.length >= 20 && image[18] === 2) image[18] = image[19] = 1;
        this.db = opened = new Database(image);
      } else {
        mkdirSync(opts.dir, { recursive: true });
        this.db = opened = new Database(this.path);
      }
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${opts.durability === 'sync' ? 'FULL' : 'NORMAL'}`);
      this.db.pragma('busy_timeout = 5000');
      this.db.pragma('temp_store = MEMORY');
      this.migrate();
      const owner = this.getMetaRaw('node_id');
      this.created = owner === undefined;
      if (owner === undefined) this.setMetaRaw('node_id', opts.nodeId);
      else if (owner !== opts.nodeId) {
        throw new LimiterError('STORAGE_INCOMPATIBLE', `data directory ${opts.dir} belongs to node "${owner}", not "${opts.nodeId}"`);
      }
    } catch (cause) {
      if (opened?.open) opened.close();
      if (cause instanceof LimiterError) throw cause;
      throw new StorageError(`cannot open state store in ${opts.dir}: ${(cause as Error).message}`, { cause });
    }
    const db = this.db;
    this.stmts = {
      upsert: db.prepare(
        `INSERT INTO cells (scope, key, slot, node, p, n) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (scope, key, slot, node) DO UPDATE SET p = max(p, excluded.p), n = max(n, excluded.n)`,
      ),
      insScope: db.prepare('INSERT INTO scopes (name) VALUES (?) RETURNING id'),
      insNode: db.prepare('INSERT INTO nodes (name) VALUES (?) RETURNING id'),
      expire: db.prepare('DELETE FROM cells WHERE scope = ? AND slot < ?'),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      setPos: db.prepare('INSERT INTO positions (stream, seq) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET seq = max(seq, excluded.seq)'),
      positions: db.prepare('SELECT stream, seq FROM positions'),
    };
    for (const row of db.prepare('SELECT id, name FROM scopes').all() as { id: number; name: string }[]) {
      this.scopeIds.set(row.name, row.id);
      this.scopeNames.set(row.id, row.name);
    }
    for (const row of db.prepare('SELECT id, name FROM nodes').all() as { id: number; name: string }[]) {
      this.nodeIds.set(row.name, row.id);
      this.nodeNames.set(row.id, row.name);
    }
    // Cells are upserted UPSERT_ROWS at a time: one statement per row spends most of its time
    // in per-statement overhead (1.25–1.45× slower for 10 000 cells, docs/PERFORMANCE.md).
    const upsertMany = db.prepare(
      `INSERT INTO cells (scope, key, slot, node, p, n) VALUES ${new Array(UPSERT_ROWS).fill('(?, ?, ?, ?, ?, ?)').join(', ')}
       ON CONFLICT (scope, key, slot, node) DO UPDATE SET p = max(p, excluded.p), n = max(n, excluded.n)`,
    );
    const args: unknown[] = new Array(UPSERT_ROWS * 6);
    this.writeTx = db.transaction((batch: WriteBatch) => {
      const up = this.stmts.upsert;
      const cells = batch.cells;
      let i = 0;
      for (; i + UPSERT_ROWS <= cells.length; i += UPSERT_ROWS) {
        for (let j = 0, a = 0; j < UPSERT_ROWS; j++, a += 6) {
          const c = cells[i + j];
          args[a] = this.scopeId(c.scope);
          args[a + 1] = c.key;
          args[a + 2] = c.slot;
          args[a + 3] = this.nodeId(c.node);
          args[a + 4] = c.p;
          args[a + 5] = c.n;
        }
        upsertMany.run(args);
      }
      for (; i < cells.length; i++) {
        const c = cells[i];
        up.run(this.scopeId(c.scope), c.key, c.slot, this.nodeId(c.node), c.p, c.n);
      }
      if (batch.positions) for (const [stream, seq] of Object.entries(batch.positions)) this.stmts.setPos.run(stream, seq);
    });
  }

  private migrate(): void {
    const db = this.db;
    db.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`);
    const v = this.getMetaRaw('schema_version');
    if (v !== undefined && Number(v) !== SCHEMA_VERSION && Number(v) !== 1) {
      throw new LimiterError('STORAGE_INCOMPATIBLE', `state store schema version ${v} is not supported (this build reads ${SCHEMA_VERSION})`);
    }
    db.exec(`
      CREATE TABLE IF NOT EXISTS scopes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE IF NOT EXISTS cells (
        scope INTEGER NOT NULL,
        key   TEXT    NOT NULL,
        slot  INTEGER NOT NULL,
        node  INTEGER NOT NULL,
        p     INTEGER NOT NULL,
        n     INTEGER NOT NULL,
        PRIMARY KEY (scope, key, slot, node)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS cells_by_slot ON cells (scope, slot);
      CREATE TABLE IF NOT EXISTS positions (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    `);
    if (Number(v) === 1) {
      // Version 1 kept an outbox of messages not yet acknowledged; the restored own cells are
      // shipped again at start-up instead, which covers them.
      db.exec(`DROP TABLE IF EXISTS outbox; DELETE FROM meta WHERE key = 'incarnation'`);
    }
    if (v === undefined || Number(v) !== SCHEMA_VERSION) this.setMetaRaw('schema_version', String(SCHEMA_VERSION));
  }

  private getMetaRaw(key: string): string | undefined {
    return this.db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(key) as string | undefined;
  }

  private setMetaRaw(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  private scopeId(name: string): number {
    let id = this.scopeIds.get(name);
    if (id === undefined) {
      id = this.stmts.insScope.pluck().get(name) as number;
      this.scopeIds.set(name, id);
      this.scopeNames.set(id, name);
      this.addedInTx.push(['scope', name, id]);
    }
    return id;
  }

  private nodeId(name: string): number {
    let id = this.nodeIds.get(name);
    if (id === undefined) {
      id = this.stmts.insNode.pluck().get(name) as number;
      this.nodeIds.set(name, id);
      this.nodeNames.set(id, name);
      this.addedInTx.push(['node', name, id]);
    }
    return id;
  }

  /** Visit every stored cell still live according to `isLive`. Returns the number visited. */
  loadCells(isLive: (scope: string, slot: number) => boolean, visit: (cell: SlotEntry) => void): number {
    return this.guard('load', () => {
      let n = 0;
      const it = this.db.prepare('SELECT scope, key, slot, node, p, n FROM cells').raw().iterate() as IterableIterator<[number, string, number, number, number, number]>;
      for (const [scopeId, key, slot, nodeId, p, nn] of it) {
        const scope = this.scopeNames.get(scopeId);
        const node = this.nodeNames.get(nodeId);
        if (scope === undefined || node === undefined || !isLive(scope, slot)) continue;
        visit({ scope, key, slot, node, p, n: nn });
        n++;
      }
      return n;
    });
  }

  /** Write cells (cell-wise max) and stream positions in one transaction. */
  write(batch: WriteBatch): void {
    this.addedInTx = [];
    try {
      this.guard('write', () => this.writeTx(batch));
    } catch (err) {
      // The transaction was rolled back, the scope and node rows it inserted with it: forget
      // their ids, or the next write would reference rows that do not exist (its cells then
      // could not be loaded).
      for (const [kind, name, id] of this.addedInTx) {
        if (kind === 'scope') {
          this.scopeIds.delete(name);
          this.scopeNames.delete(id);
        } else {
          this.nodeIds.delete(name);
          this.nodeNames.delete(id);
        }
      }
      throw err;
    } finally {
      this.addedInTx = [];
    }
  }

  /** Delete cells of slots older than each scope's minimum live slot, and of scopes not listed. Returns rows deleted. */
  expire(minSlotByScope: ReadonlyMap<string, number>): number {
    return this.guard('expire', () => {
      let deleted = 0;
      const tx = this.db.transaction(() => {
        for (const [name, id] of this.scopeIds) {
          const min = minSlotByScope.get(name);
          deleted += this.stmts.expire.run(id, min ?? Number.MAX_SAFE_INTEGER).changes;
        }
      });
      tx();
      return deleted;
    });
  }

  getMeta(key: string): string | undefined {
    return this.guard('read meta', () => this.stmts.getMeta.get(key) as string | undefined);
  }

  setMeta(key: string, value: string): void {
    this.guard('write meta', () => this.stmts.setMeta.run(key, value));
  }

  positions(): Record<string, number> {
    return this.guard('read positions', () => {
      const out: Record<string, number> = {};
      for (const r of this.stmts.positions.all() as { stream: string; seq: number }[]) out[r.stream] = r.seq;
      return out;
    });
  }

  /**
   * Check the file: SQLite's `integrity_check` (every page, every index against its table;
   * `quick_check` misses an index that no longer matches its rows, which a flipped bit in a
   * page often causes) and the tables' columns. Returns the problems found (empty when sound).
   * About 0.5 s per million cells.
   */
  verify(): string[] {
    return checkDatabase(this.db, true);
  }

  /**
   * Check an existing database file without changing it (read-only: nothing is migrated,
   * nothing checkpointed), so a damaged file can be moved aside exactly as it was found.
   * Returns the problems (empty when sound); throws SQLite's error when it cannot be read.
   */
  static inspectFile(path: string): string[] {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      const problems = checkDatabase(db, false);
      // A newer version's file is not damaged: refuse it (as opening it would) rather than move it aside.
      const hasMeta = (db.pragma('table_info(meta)') as unknown[]).length > 0;
      const v = hasMeta ? (db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get() as string | undefined) : undefined;
      if (v !== undefined && Number(v) > SCHEMA_VERSION) {
        throw new LimiterError('STORAGE_INCOMPATIBLE', `state store schema version ${v} is not supported (this build reads ${SCHEMA_VERSION})`);
      }
      return problems;
    } finally {
      db.close();
    }
  }

  loadRules(): StoredRules | undefined {
    const text = this.getMeta(RULES_META_KEY);
    return text === undefined ? undefined : decodeStoredRules(text);
  }

  saveRules(rules: StoredRules): void {
    this.setMeta(RULES_META_KEY, encodeStoredRules(rules));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private guard<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (cause) {
      if (cause instanceof LimiterError) throw cause;
      throw new StorageError(`state store ${what} failed: ${(cause as Error).message}`, { cause });
    }
  }
}
