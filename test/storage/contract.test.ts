/**
 * The storage ports' contract (src/storage/ports.ts), run against every implementation:
 * SqliteStore on a real file in a temp directory, DataDirectory (SqliteStore opened through
 * the start-up checks of src/storage/data-dir.ts), and MemoryStore. rate-limiter-flexible runs
 * one store contract against each of its stores the same way.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlotEntry } from '../../crdt/index.ts';
import { StorageError } from '../../src/engine/errors.ts';
import { DataDirectory } from '../../src/storage/data-dir.ts';
import { MemoryStore } from '../../src/storage/memory.ts';
import type { StateStore } from '../../src/storage/ports.ts';
import { SqliteStore } from '../../src/storage/sqlite.ts';

interface Impl {
  name: string;
  open(): StateStore;
  cleanup(): void;
}

const dirs: string[] = [];
const IMPLS: Impl[] = [
  {
    name: 'SqliteStore',
    open: () => {
      const dir = mkdtempSync(join(tmpdir(), 'limiter-contract-'));
      dirs.push(dir);
      return new SqliteStore({ dir, nodeId: 'n0' });
    },
    cleanup: () => {
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  },
  {
    name: 'DataDirectory',
    open: () => {
      const dir = mkdtempSync(join(tmpdir(), 'limiter-contract-'));
      dirs.push(dir);
      const store = new DataDirectory({ dir, nodeId: 'n0', now: Date.now, log: { info: () => {}, warn: () => {}, error: () => {} } });
      store.open();
      return store;
    },
    cleanup: () => {
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  },
  { name: 'MemoryStore', open: () => new MemoryStore(), cleanup: () => {} },
];

const cell = (key: string, slot: number, p: number, n = 0, node = 'n0', scope = 's|fw|1000|1000'): SlotEntry => ({ scope, key, slot, node, p, n });

function all(store: StateStore, isLive: (scope: string, slot: number) => boolean = () => true): SlotEntry[] {
  const out: SlotEntry[] = [];
  store.loadCells(isLive, (c) => out.push(c));
  return out.sort((a, b) => (a.key + a.slot + a.node + a.scope).localeCompare(b.key + b.slot + b.node + b.scope));
}

for (const impl of IMPLS) {
  describe(`storage contract: ${impl.name}`, () => {
    let store: StateStore;
    afterEach(() => {
      store?.close();
      impl.cleanup();
    });

    it('a new store is empty: no cells, no positions', () => {
      store = impl.open();
      expect(store.created).toBe(true);
      expect(all(store)).toEqual([]);
      expect(store.positions()).toEqual({});
    });

    it('keeps the cell-wise maximum of p and of n, whatever order and however often cells are written', () => {
      store = impl.open();
      store.write({ cells: [cell('a', 1, 5, 0), cell('a', 1, 3, 2), cell('b', 1, 1)] });
      store.write({ cells: [cell('a', 1, 4, 1), cell('b', 1, 1)] });
      expect(all(store)).toEqual([cell('a', 1, 5, 2), cell('b', 1, 1)]);
    });

    it('keeps cells of different nodes, slots and scopes apart', () => {
      store = impl.open();
      store.write({ cells: [cell('a', 1, 1), cell('a', 1, 2, 0, 'n1'), cell('a', 2, 3), cell('a', 1, 4, 0, 'n0', 'other|fw|1000|1000')] });
      expect(all(store)).toHaveLength(4);
    });

    it('positions are merged by max and written in the same transaction as the cells', () => {
      store = impl.open();
      store.write({ cells: [cell('a', 1, 1)], positions: { S1: 10, S2: 3 } });
      store.write({ cells: [], positions: { S1: 7, S2: 4 } });
      expect(store.positions()).toEqual({ S1: 10, S2: 4 });
    });

    it('loadCells visits only what isLive accepts', () => {
      store = impl.open();
      store.write({ cells: [cell('a', 1, 1), cell('a', 5, 1), cell('b', 9, 1)] });
      expect(all(store, (_s, slot) => slot >= 5).map((c) => c.slot)).toEqual([5, 9]);
    });

    it('expire drops slots below each scope minimum and every cell of an unlisted scope', () => {
      store = impl.open();
      store.write({ cells: [cell('a', 1, 1), cell('a', 5, 1), cell('z', 9, 1, 0, 'n0', 'gone|fw|1000|1000')] });
      const deleted = store.expire(new Map([['s|fw|1000|1000', 3]]));
      expect(deleted).toBe(2);
      expect(all(store).map((c) => c.slot)).toEqual([5]);
    });

    it('metadata round-trips', () => {
      store = impl.open();
      expect(store.getMeta('x')).toBeUndefined();
      store.setMeta('x', '1');
      store.setMeta('x', '2');
      expect(store.getMeta('x')).toBe('2');
    });

    it('rules: none stored at first; the last saved state is read back whole, fields and all', () => {
      store = impl.open();
      expect(store.loadRules()).toBeUndefined();
      const first = { version: { ts: 1000, node: 'n0' }, digest: 'd1', document: '{"rules":[]}', fileHash: 'h1' };
      const second = { version: { ts: 2000, node: 'n1' }, digest: 'd2', document: '{"rules":[{"id":"a"}]}', fileHash: null };
      store.saveRules(first);
      expect(store.loadRules()).toEqual(first);
      store.saveRules(second);
      expect(store.loadRules()).toEqual(second);
    });

    it('a closed store refuses work with a StorageError', () => {
      store = impl.open();
      store.close();
      expect(() => store.write({ cells: [cell('a', 1, 1)] })).toThrow(StorageError);
      expect(() => store.saveRules({ version: { ts: 1, node: 'n0' }, digest: 'd', document: '{}', fileHash: null })).toThrow(StorageError);
    });
  });
}
