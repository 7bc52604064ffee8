/**
 * In-memory state store: the storage ports of ./ports.ts without a disk, for an embedded
 * limiter that needs no persistence and for tests of the code above the ports. It passes the
 * same contract suite as SqliteStore (test/storage/contract.ts); nothing survives close().
 */
import type { SlotEntry } from '../../crdt/index.ts';
import { StorageError } from '../engine/errors.ts';
import type { StateStore, StoredRules, WriteBatch } from './ports.ts';
import { RULES_META_KEY, decodeStoredRules, encodeStoredRules } from './rules-record.ts';

export class MemoryStore implements StateStore {
  readonly path = ':memory:';
  readonly created = true;
  private readonly cells = new Map<string, SlotEntry>();
  private readonly pos = new Map<string, number>();
  private readonly meta = new Map<string, string>();
  private closed = false;

  loadCells(isLive: (scope: string, slot: number) => boolean, visit: (cell: SlotEntry) => void): number {
    this.assertOpen('load');
    let n = 0;
    for (const c of this.cells.values()) {
      if (!isLive(c.scope, c.slot)) continue;
      visit({ ...c });
      n++;
    }
    return n;
  }

  write(batch: WriteBatch): void {
    this.assertOpen('write');
    for (const c of batch.cells) {
      const id = `${c.scope}\u0000${c.key}\u0000${c.slot}\u0000${c.node}`;
      const old = this.cells.get(id);
      if (old === undefined) this.cells.set(id, { scope: c.scope, key: c.key, slot: c.slot, node: c.node, p: c.p, n: c.n });
      else {
        if (c.p > old.p) old.p = c.p;
        if (c.n > old.n) old.n = c.n;
      }
    }
    if (batch.positions) for (const [s, seq] of Object.entries(batch.positions)) this.pos.set(s, Math.max(this.pos.get(s) ?? 0, seq));
  }

  expire(minSlotByScope: ReadonlyMap<string, number>): number {
    this.assertOpen('expire');
    let deleted = 0;
    for (const [id, c] of this.cells) {
      const min = minSlotByScope.get(c.scope);
      if (min === undefined || c.slot < min) {
        this.cells.delete(id);
        deleted++;
      }
    }
    return deleted;
  }

  positions(): Record<string, number> {
    this.assertOpen('read positions');
    return Object.fromEntries(this.pos);
  }

  getMeta(key: string): string | undefined {
    this.assertOpen('read meta');
    return this.meta.get(key);
  }

  setMeta(key: string, value: string): void {
    this.assertOpen('write meta');
    this.meta.set(key, value);
  }

  loadRules(): StoredRules | undefined {
    const text = this.getMeta(RULES_META_KEY);
    return text === undefined ? undefined : decodeStoredRules(text);
  }

  saveRules(rules: StoredRules): void {
    this.setMeta(RULES_META_KEY, encodeStoredRules(rules));
  }

  close(): void {
    this.closed = true;
  }

  private assertOpen(what: string): void {
    if (this.closed) throw new StorageError(`state store ${what} failed: the store is closed`);
  }
}
