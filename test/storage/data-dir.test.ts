/**
 * Opening a data directory never stops the node on a damaged file: every kind of damage is
 * found at open (SQLite errors and integrity_check), the file and its -wal/-shm are moved aside
 * to a clearly named file, and a new database is started; a database emptied to 0 bytes is
 * told apart from a new directory by the marker beside it. Real SQLite files.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlotEntry } from '../../crdt/index.ts';
import { LimiterError } from '../../src/engine/errors.ts';
import { DataDirectory, MARKER_FILE } from '../../src/storage/data-dir.ts';
import { DB_FILE } from '../../src/storage/sqlite.ts';
import { DB_FAULTS, truncateToZero, type DbFault } from '../helpers/db-faults.ts';

const T0 = 1_800_000_000_000;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Logged {
  level: string;
  fields: Record<string, unknown>;
  msg: string;
}

function open(dir: string, nodeId = 'n1') {
  const logged: Logged[] = [];
  const log = {
    info: (fields: Record<string, unknown>, msg: string) => logged.push({ level: 'info', fields, msg }),
    warn: (fields: Record<string, unknown>, msg: string) => logged.push({ level: 'warn', fields, msg }),
    error: (fields: Record<string, unknown>, msg: string) => logged.push({ level: 'error', fields, msg }),
  };
  const store = new DataDirectory({ dir, nodeId, now: () => T0, log });
  const report = store.open();
  return { store, report, logged };
}

/** A directory holding 2 000 keys × 3 limits, like the measured standalone node. */
function populated(): string {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-datadir-'));
  dirs.push(dir);
  const { store } = open(dir);
  const cells: SlotEntry[] = [];
  for (let k = 0; k < 2000; k++) for (let l = 0; l < 3; l++) cells.push({ scope: `s${l}`, key: `key-${k}`, slot: 100 + (k % 4), node: 'n1', p: 1 + (k % 5), n: 0 });
  store.write({ cells, positions: { LIMITER_A: 42 } });
  store.close();
  return dir;
}

function count(store: DataDirectory): number {
  let n = 0;
  store.loadCells(() => true, () => n++);
  return n;
}

describe('DataDirectory: a damaged database at start-up', () => {
  for (const fault of Object.keys(DB_FAULTS) as DbFault[]) {
    it(`${fault}: found, moved aside unchanged, logged once, a new database started`, () => {
      const dir = populated();
      const file = join(dir, DB_FILE);
      DB_FAULTS[fault](file);
      const damaged = readFileSync(file);

      const { store, report, logged } = open(dir);
      expect(report.fault?.code).toBe('STORAGE_CORRUPT');
      expect(report.writable).toBe(true);
      expect(report.hasEarlierState).toBe(false);
      expect(store.created).toBe(true);
      const moved = report.fault!.movedAside!;
      expect(moved[0]).toMatch(/limiter\.db\.corrupt-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/);
      // Kept as it was found, for the operator to look at.
      expect(readFileSync(moved[0])).toEqual(damaged);
      expect(logged.filter((l) => l.level === 'error')).toHaveLength(1);
      expect(logged[0].msg).toContain('moved aside');

      // The new database works and keeps what is written.
      expect(count(store)).toBe(0);
      store.write({ cells: [{ scope: 's0', key: 'k', slot: 100, node: 'n1', p: 3, n: 0 }], positions: { LIMITER_A: 7 } });
      store.close();
      const again = open(dir);
      expect(again.report.fault).toBeUndefined();
      expect(again.report.hasEarlierState).toBe(true);
      expect(count(again.store)).toBe(1);
      expect(again.store.positions()).toEqual({ LIMITER_A: 7 });
      again.store.close();
    });
  }

  it('an undamaged database opens with every cell and position, and no fault', () => {
    const dir = populated();
    const { store, report } = open(dir);
    expect(report).toEqual({ writable: true, hasEarlierState: true, fault: undefined });
    expect(count(store)).toBe(6000);
    expect(store.positions()).toEqual({ LIMITER_A: 42 });
    expect(existsSync(join(dir, MARKER_FILE))).toBe(true);
    store.close();
  });

  it('a database truncated to 0 bytes is reported lost (the marker says the directory held state), not taken for a new directory', () => {
    const dir = populated();
    truncateToZero(join(dir, DB_FILE));
    const { store, report, logged } = open(dir);
    expect(report.fault?.code).toBe('STORAGE_LOST');
    expect(report.hasEarlierState).toBe(false);
    expect(store.created).toBe(true);
    expect(logged.some((l) => l.level === 'error' && l.fields.code === 'STORAGE_LOST')).toBe(true);
    store.close();
  });

  it('a deleted database is reported lost too', () => {
    const dir = populated();
    rmSync(join(dir, DB_FILE));
    const { store, report } = open(dir);
    expect(report.fault?.code).toBe('STORAGE_LOST');
    store.close();
  });

  it('a new directory is not a fault', () => {
    const dir = mkdtempSync(join(tmpdir(), 'limiter-datadir-'));
    dirs.push(dir);
    const { store, report } = open(join(dir, 'data'));
    expect(report).toEqual({ writable: true, hasEarlierState: false, fault: undefined });
    store.close();
  });

  it('a database of a newer schema version is refused, not moved aside', () => {
    const dir = populated();
    const db = new Database(join(dir, DB_FILE));
    db.exec(`UPDATE meta SET value = '99' WHERE key = 'schema_version'; ALTER TABLE cells ADD COLUMN extra INTEGER`);
    db.close();
    expect(() => open(dir)).toThrow(/schema version 99 is not supported/);
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
  });

  it("another node's directory is still refused (marker or database), and nothing is moved", () => {
    const dir = populated();
    expect(() => open(dir, 'n2')).toThrow(LimiterError);
    try {
      open(dir, 'n2');
    } catch (err) {
      expect((err as LimiterError).code).toBe('STORAGE_INCOMPATIBLE');
    }
    rmSync(join(dir, MARKER_FILE));
    expect(() => open(dir, 'n2')).toThrow(/belongs to node "n1"/);
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
  });
});
