/**
 * The storage ports, owned by their user (src/storage/persistence.ts, and the replicator for
 * positions). SqliteStore (./sqlite.ts) and MemoryStore (./memory.ts) implement them; the
 * contract suite in test/storage/contract.ts runs against both.
 *
 * - Cells: PN-counter cells keyed by (scope, key, slot, node), merged cell-wise by max, so
 *   writing a cell twice, late or out of order is harmless.
 * - Positions: per replication stream, the last sequence whose batch is merged into the cells.
 *   They are written in the same transaction as the cells they describe, so after a crash the
 *   stored cells always contain everything up to the stored positions.
 * - Rules: the rules register's current state (src/rules/), replaced whole on every change.
 */
import type { RegisterVersion, SlotEntry } from '../../crdt/index.ts';

export type Durability = 'batch' | 'sync';

/** What one transaction writes. */
export interface WriteBatch {
  cells: readonly SlotEntry[];
  /** Stream positions applied (replication), committed atomically with the cells; merged by max. */
  positions?: Readonly<Record<string, number>>;
}

/** Cells: load what is live, write batches (cell-wise max), expire old slots. */
export interface CellStore {
  /** Visit every stored cell still live according to `isLive`. Returns the number visited. */
  loadCells(isLive: (scope: string, slot: number) => boolean, visit: (cell: SlotEntry) => void): number;
  /** Cells (cell-wise max) and positions (max) in one transaction: all or nothing. Throws StorageError. */
  write(batch: WriteBatch): void;
  /** Delete cells older than each scope's minimum live slot, and every cell of a scope not listed. Returns rows deleted. */
  expire(minSlotByScope: ReadonlyMap<string, number>): number;
}

/** Replication positions, written with the cells by CellStore.write. */
export interface PositionStore {
  /** Per stream, the highest position written. */
  positions(): Record<string, number>;
}

/** The rules register's state as kept on disk (src/rules/). */
export interface StoredRules {
  version: RegisterVersion;
  /** Digest of the document (crdt/register.ts). */
  digest: string;
  /** The rules document, JSON text. */
  document: string;
  /** SHA-256 (hex) of the --rules file's text when this node last applied it; null: never. */
  fileHash: string | null;
}

/** The current rules and their version. */
export interface RulesStore {
  /** The state last saved; undefined when none was. Throws StorageError if what is stored cannot be read. */
  loadRules(): StoredRules | undefined;
  /** Replace the stored state (one write: all or nothing). Throws StorageError. */
  saveRules(rules: StoredRules): void;
}

/** Everything a node keeps on disk. */
export interface StateStore extends CellStore, PositionStore, RulesStore {
  /** Where it lives (a file path, or `:memory:`). */
  readonly path: string;
  /** True when this open found no earlier state (a new data directory). */
  readonly created: boolean;
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
  close(): void;
}
