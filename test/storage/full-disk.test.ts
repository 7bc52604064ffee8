/**
 * SqliteStore on a disk that fills up (a real tmpfs, mounted per test): a write that fails
 * leaves nothing half-known behind, and the next write after space is freed makes every
 * cell loadable again.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SlotEntry } from '../../crdt/index.ts';
import { StorageError } from '../../src/engine/errors.ts';
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
