/**
 * The state store on a disk that fills up or turns read-only (real tmpfs mounts, one per
 * test): a write that fails leaves nothing half-known behind, and the next write after space
 * is freed makes every cell loadable again; a read-only directory is served from an in-memory
 * copy of its file and opened again, with its state merged, once it can be written.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SlotEntry } from '../../crdt/index.ts';
import { StorageError } from '../../src/engine/errors.ts';
import { DataDirectory } from '../../src/storage/data-dir.ts';
import type { StateStore } from '../../src/storage/ports.ts';
import { SqliteStore } from '../../src/storage/sqlite.ts';
import { mountTmpfs, unmountAll } from '../helpers/tmpfs.ts';

afterAll(() => unmountAll());

const cells = (scope: string, node: string, n: number): SlotEntry[] => Array.from({ length: n }, (_, k) => ({ scope, key: `k${k}`, slot: 10, node, p: k + 1, n: 0 }));

describe('SqliteStore on a full disk', () => {
  it('a failed first write of a scope and a node does not leave their ids behind: the retried write is loadable', () => {
    const fs = mountTmpfs(8);
    const dir = join(fs.dir, 'data');
    let store = new SqliteStore({ dir, nodeId: 'n1' });
    fs.fill();
    // New scope, new node, enough cells to need new pages: fails, and is rolled back.
    const batch = { cells: cells('scope-new', 'node-new', 200) };
    expect(() => store.write(batch)).toThrow(StorageError);
    expect(() => store.write(batch)).toThrow(/full/);
    fs.free();
    store.write(batch);
    store.close();

    store = new SqliteStore({ dir, nodeId: 'n1' });
    const loaded: SlotEntry[] = [];
    store.loadCells(() => true, (c) => loaded.push(c));
    store.close();
    expect(loaded).toHaveLength(200);
    expect(loaded.every((c) => c.scope === 'scope-new' && c.node === 'node-new')).toBe(true);
  });
});

describe('DataDirectory on a read-only directory', () => {
  it('reads the state from the file, refuses writes with STORAGE_UNAVAILABLE, and once writable opens it, tells onReopen, and writes', () => {
    const fs = mountTmpfs(8);
    const dir = join(fs.dir, 'data');
    const log = { info: () => {}, warn: () => {}, error: () => {} };
    let t = 1_000_000;
    const first = new DataDirectory({ dir, nodeId: 'n1', now: () => t, log });
    first.open();
    first.write({ cells: cells('s', 'n1', 3), positions: { LIMITER_A: 9 } });
    first.close();

    fs.readOnly();
    const store = new DataDirectory({ dir, nodeId: 'n1', now: () => t, log, reopenIntervalMs: 1000 });
    const report = store.open();
    expect(report).toMatchObject({ writable: false, hasEarlierState: true, fault: { code: 'STORAGE_UNAVAILABLE' } });
    expect(store.created).toBe(false);
    const loaded: SlotEntry[] = [];
    store.loadCells(() => true, (c) => loaded.push(c));
    expect(loaded).toHaveLength(3);
    expect(store.positions()).toEqual({ LIMITER_A: 9 });
    let reopened: StateStore | undefined;
    store.onReopen = (s) => (reopened = s);
    expect(() => store.write({ cells: [] })).toThrow(/cannot open .* for writing/);
    expect(store.unavailableError?.code).toBe('STORAGE_UNAVAILABLE');

    fs.writable();
    // Not before the retry interval has passed, then at once.
    expect(() => store.write({ cells: [] })).toThrow(StorageError);
    t += 1000;
    store.write({ cells: cells('s', 'n1', 5) });
    expect(reopened).toBe(store);
    expect(store.writable).toBe(true);
    expect(store.unavailableError).toBeUndefined();
    store.close();

    const again = new DataDirectory({ dir, nodeId: 'n1', now: () => t, log });
    expect(again.open()).toEqual({ writable: true, hasEarlierState: true, fault: undefined });
    const after: SlotEntry[] = [];
    again.loadCells(() => true, (c) => after.push(c));
    expect(after.map((c) => c.p).sort()).toEqual([1, 2, 3, 4, 5]);
    again.close();
  });
});
