/**
 * A failing state-store write never loses counts: the rows are kept and written by the next
 * successful flush, the failure is reported, and a `sync` commit barrier rejects so the waiting
 * request knows. Real SQLite files; the fault is injected by failing the store's write once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { StorageError } from '../../src/engine/errors.ts';
import { parseRules } from '../../src/engine/rules.ts';
import { Persistence } from '../../src/storage/persistence.ts';
import { SqliteStore, type Durability, type WriteBatch } from '../../src/storage/sqlite.ts';

const T0 = 1_800_000_000_000;
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function rig(durability: Durability, dir = mkdtempSync(join(tmpdir(), 'limiter-persist-'))) {
  if (!dirs.includes(dir)) dirs.push(dir);
  const rules = parseRules('version: 1\nrules:\n  - id: r\n    key: "*"\n    limits: [{ limit: 100, window: 1h }]\n', 'rules.yaml');
  const engine = new Engine({ nodeId: 'n1', rules });
  const store = new SqliteStore({ dir, nodeId: 'n1', durability });
  const real = store.write.bind(store);
  const fault = { failNext: 0 };
  store.write = (batch: WriteBatch) => {
    if (fault.failNext > 0) {
      fault.failNext--;
      throw new StorageError('disk I/O error (injected)');
    }
    real(batch);
  };
  const errors: StorageError[] = [];
  const persistence = new Persistence({ engine, store, durability, flushIntervalMs: 50, now: () => T0, onError: (e) => errors.push(e) });
  return { dir, engine, store, persistence, fault, errors };
}

function usage(engine: Engine, key: string): number {
  return engine.inspect(key, undefined, T0).limits[0]!.usage;
}

describe('persistence under write failures', () => {
  it('keeps the rows of a failed flush and writes them with the next one', () => {
    const r = rig('batch');
    for (let i = 0; i < 5; i++) r.engine.decide({ key: 'a' }, T0);
    r.fault.failNext = 1;
    expect(() => r.persistence.flush()).toThrow(StorageError);
    expect(r.persistence.stats.failures).toBe(1);
    expect(r.persistence.stats.retryRows).toBeGreaterThan(0);

    for (let i = 0; i < 3; i++) r.engine.decide({ key: 'b' }, T0);
    expect(r.persistence.flush()).toBeGreaterThanOrEqual(2);
    expect(r.persistence.stats.retryRows).toBe(0);
    r.persistence.stop();
    r.store.close();

    // Everything counted before and after the failure is on disk.
    const again = rig('batch', r.dir);
    again.persistence.restore();
    expect(usage(again.engine, 'a')).toBe(5);
    expect(usage(again.engine, 'b')).toBe(3);
    again.persistence.stop();
    again.store.close();
  });

  it('in sync mode a failed group commit rejects the barrier, and the next commit carries the rows', async () => {
    const r = rig('sync');
    r.engine.decide({ key: 'a' }, T0);
    r.fault.failNext = 1;
    await expect(r.persistence.commitBarrier()).rejects.toBeInstanceOf(StorageError);
    expect(r.errors).toHaveLength(1);

    r.engine.decide({ key: 'a' }, T0);
    await expect(r.persistence.commitBarrier()).resolves.toBeUndefined();
    r.persistence.stop();
    r.store.close();

    const again = rig('sync', r.dir);
    again.persistence.restore();
    expect(usage(again.engine, 'a')).toBe(2);
    again.persistence.stop();
    again.store.close();
  });

  it('in sync mode an admission whose commit fails is taken back: usage is what it was before', async () => {
    const r = rig('sync');
    r.engine.decide({ key: 'a' }, T0);
    await r.persistence.commitBarrier();
    expect(usage(r.engine, 'a')).toBe(1);
    // Two admissions in one group commit that fails (the node's limiter notes each one).
    for (let i = 0; i < 2; i++) {
      const req = { key: 'a', cost: 2 };
      expect(r.engine.decide(req, T0).allowed).toBe(true);
      r.persistence.noteAdmission(() => r.engine.undoAdmission(req, T0));
    }
    expect(usage(r.engine, 'a')).toBe(5);
    r.fault.failNext = 1;
    await expect(r.persistence.commitBarrier()).rejects.toBeInstanceOf(StorageError);
    expect(usage(r.engine, 'a')).toBe(1);
    // The next commit writes the taken-back state, and a restart reads it.
    r.engine.decide({ key: 'b' }, T0);
    await r.persistence.commitBarrier();
    r.persistence.stop();
    r.store.close();
    const again = rig('sync', r.dir);
    again.persistence.restore();
    expect(usage(again.engine, 'a')).toBe(1);
    again.persistence.stop();
    again.store.close();
  });

  it('keeps one row per cell however many flushes fail, and writes the latest values', () => {
    const r = rig('batch');
    r.fault.failNext = 50;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 10; i++) r.engine.decide({ key: 'hot' }, T0);
      expect(() => r.persistence.flush()).toThrow(StorageError);
    }
    // One key, one limit, one slot: one row, whatever the number of failed flushes.
    expect(r.persistence.stats.retryRows).toBe(1);
    expect(r.persistence.unwritten()).toMatchObject({ cells: 1, keys: 1, ownUnits: 100, dropped: 0 });
    expect(r.persistence.flush()).toBe(1);
    r.persistence.stop();
    r.store.close();
    const again = rig('batch', r.dir);
    again.persistence.restore();
    expect(usage(again.engine, 'hot')).toBe(100);
    again.persistence.stop();
    again.store.close();
  });

  it('flushWithin retries a failing store until it succeeds, and reports false when time runs out', async () => {
    const r = rig('batch');
    for (let i = 0; i < 3; i++) r.engine.decide({ key: 'c' }, T0);
    r.fault.failNext = 3;
    await expect(r.persistence.flushWithin(5000, 10)).resolves.toBe(true);
    expect(r.persistence.stats.failures).toBe(3);
    r.engine.decide({ key: 'c' }, T0);
    r.fault.failNext = 1000;
    await expect(r.persistence.flushWithin(100, 10)).resolves.toBe(false);
    expect(r.persistence.unwritten().ownUnits).toBe(4);
    r.fault.failNext = 0;
    r.persistence.stop();
    r.store.close();
  });

  it('the final flush at stop writes what the timer had not', () => {
    const r = rig('batch');
    r.persistence.start();
    for (let i = 0; i < 4; i++) r.engine.decide({ key: 'c' }, T0);
    r.persistence.stop();
    r.store.close();
    const again = rig('batch', r.dir);
    again.persistence.restore();
    expect(usage(again.engine, 'c')).toBe(4);
    again.persistence.stop();
    again.store.close();
  });
});

describe('SqliteStore.write', () => {
  it('stores the cell-wise maximum over many cells, duplicates within one batch included', () => {
    const dir = mkdtempSync(join(tmpdir(), 'limiter-store-'));
    dirs.push(dir);
    const store = new SqliteStore({ dir, nodeId: 'n1' });
    const cells = [];
    // 1000 cells (more than one multi-row statement, and a remainder), each written three
    // times in the same batch in a scrambled order with different values.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1000; i++) {
        const k = (i * 7919 + round * 13) % 1000;
        cells.push({ scope: 's', key: `k${k}`, slot: 10 + (k % 3), node: k % 2 ? 'n1' : 'n2', p: k + [5, 9, 1][round]!, n: [2, 0, 3][round]! });
      }
    }
    store.write({ cells });
    store.write({ cells: [{ scope: 's', key: 'k0', slot: 10, node: 'n2', p: 1, n: 1 }] }); // lower: no effect
    const seen = new Map<string, { p: number; n: number }>();
    store.loadCells(() => true, (c) => seen.set(`${c.key}|${c.slot}|${c.node}`, { p: c.p, n: c.n }));
    store.close();
    expect(seen.size).toBe(1000);
    for (let k = 0; k < 1000; k++) {
      expect(seen.get(`k${k}|${10 + (k % 3)}|${k % 2 ? 'n1' : 'n2'}`)).toEqual({ p: k + 9, n: 3 });
    }
  });
});

describe('SqliteStore schema upgrade', () => {
  it('opens a version 1 file (with the old replication outbox) in place: cells and positions kept, outbox gone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'limiter-upgrade-'));
    dirs.push(dir);
    const store = new SqliteStore({ dir, nodeId: 'n1' });
    store.write({ cells: [{ scope: 's', key: 'k', slot: 10, node: 'n1', p: 4, n: 1 }], positions: { LIMITER_X: 12 } });
    store.close();
    // Turn it into what version 1 wrote: schema_version 1, an outbox table with a record, an incarnation.
    const db = new Database(join(dir, 'limiter.db'));
    db.exec(`UPDATE meta SET value = '1' WHERE key = 'schema_version';
      INSERT INTO meta (key, value) VALUES ('incarnation', 'abc');
      CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT NOT NULL, payload BLOB NOT NULL, created_at INTEGER NOT NULL);
      INSERT INTO outbox (msg_id, payload, created_at) VALUES ('n1:abc:1', x'00', 0);`);
    db.close();

    const again = new SqliteStore({ dir, nodeId: 'n1' });
    const cells: unknown[] = [];
    again.loadCells(() => true, (c) => cells.push(c));
    expect(cells).toEqual([{ scope: 's', key: 'k', slot: 10, node: 'n1', p: 4, n: 1 }]);
    expect(again.positions()).toEqual({ LIMITER_X: 12 });
    expect(again.created).toBe(false);
    expect(again.getMeta('schema_version')).toBe('2');
    again.close();
    const check = new Database(join(dir, 'limiter.db'));
    expect(check.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'outbox'").pluck().get()).toBe(0);
    check.close();
  });
});
