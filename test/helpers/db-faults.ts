/**
 * Damage done to a node's SQLite file the way an operator's bad day does it (for the storage
 * fault tests): truncations, flipped bits in the header and in b-tree pages, a garbage page, a
 * file of another application, a file emptied to 0 bytes.
 */
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';

const PAGE = 4096;

/** A b-tree page type byte (interior/leaf, index/table): flipping its lowest bit makes it invalid. */
const BTREE_TYPES = new Set([2, 5, 10, 13]);

/** Offset of the page-type byte of the first b-tree page found from `page` (0-based) walking by `step`. */
function btreePageTypeOffset(buf: Buffer, page: number, step: 1 | -1): number {
  for (let p = page; p >= 1 && p * PAGE < buf.length; p += step) {
    if (BTREE_TYPES.has(buf[p * PAGE])) return p * PAGE;
  }
  throw new Error(`no b-tree page from page ${page}`);
}

function edit(file: string, fn: (buf: Buffer) => void): void {
  const buf = readFileSync(file);
  fn(buf);
  writeFileSync(file, buf);
}

export const DB_FAULTS = {
  'truncated to 4096 bytes': (file: string) => truncateSync(file, PAGE),
  'truncated to half': (file: string) => {
    const size = readFileSync(file).length;
    truncateSync(file, Math.floor(size / 2 / PAGE) * PAGE);
  },
  'a flipped header byte': (file: string) => edit(file, (b) => (b[0] ^= 0x01)),
  'a garbage page 2': (file: string) =>
    edit(file, (b) => {
      for (let i = PAGE; i < 2 * PAGE; i++) b[i] = (i * 7919 + 13) & 0xff;
    }),
  'a flipped bit in a middle page': (file: string) =>
    edit(file, (b) => {
      b[btreePageTypeOffset(b, Math.floor(b.length / PAGE / 2), 1)] ^= 0x01;
    }),
  'a flipped bit in the last page': (file: string) =>
    edit(file, (b) => {
      b[btreePageTypeOffset(b, b.length / PAGE - 1, -1)] ^= 0x01;
    }),
  'the wrong schema (another application\'s database)': (file: string) => {
    truncateSync(file, 0);
    const db = new Database(file);
    db.exec(`CREATE TABLE cells (id INTEGER PRIMARY KEY, payload BLOB); INSERT INTO cells (payload) VALUES (x'00');`);
    db.close();
  },
} as const satisfies Record<string, (file: string) => void>;

export type DbFault = keyof typeof DB_FAULTS;

/** Empty the file (a valid, empty SQLite database: only the directory's marker tells the loss). */
export function truncateToZero(file: string): void {
  truncateSync(file, 0);
}
