/**
 * Section `restart`: time to restore 1 M live keys from SQLite into a fresh Engine, in a fresh
 * process. The cells are written by another process just before, so the database file is in the
 * OS page cache: a warm restart, as after a crash or a deploy on the same machine.
 *
 * Two data sets: every key counted in one slot (one cell per key: the target row), and every
 * key counted in 3 consecutive slots (3 cells per key: informational, restore time grows with
 * the number of cells, not only with keys).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runChild } from '../lib/child.ts';
import { count, round, si } from '../lib/format.ts';
import { check, type BenchContext, type Check, type Figure, type Section, type SectionResult } from '../lib/types.ts';

interface WriteResult {
  cells: number;
  writeMs: number;
}
interface LoadResult {
  totalMs: number;
  openMs: number;
  restoreMs: number;
  cells: number;
  liveKeys: number;
}

const SCRIPT = 'bench/children/restart.ts';

async function dataset(ctx: BenchContext, keys: number, cellsPerKey: number) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-restart-'));
  try {
    ctx.log(`restart: writing ${count(keys)} keys × ${cellsPerKey} cell(s) to ${dir}`);
    const w = await runChild<WriteResult>(SCRIPT, ['write', dir, String(keys), String(cellsPerKey)], { root: ctx.root }, 300_000);
    const dbBytes = statSync(join(dir, 'limiter.db')).size;
    ctx.log('restart: restoring in a fresh process');
    const l = await runChild<LoadResult>(SCRIPT, ['load', dir, String(keys)], { root: ctx.root, profileDir: ctx.profileDir, profileName: `restart-load-${cellsPerKey}` }, 300_000);
    return { w, l, dbBytes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const restartSection: Section = {
  id: 'restart',
  title: 'Restart: restore live keys from SQLite into a fresh Engine (fresh process)',
  estimateS: { full: 30, quick: 8 },
  async run(ctx: BenchContext): Promise<SectionResult> {
    const keys = ctx.quick ? 100_000 : 1_000_000;
    const label = `${count(keys)} keys`;
    const figures: Figure[] = [];
    const checks: Check[] = [];
    let rate = NaN;
    for (const cellsPerKey of [1, 3]) {
      const { w, l, dbBytes } = await dataset(ctx, keys, cellsPerKey);
      const what = `${label} × ${cellsPerKey} cell${cellsPerKey > 1 ? 's' : ''}`;
      figures.push({
        id: `restart.restore.${cellsPerKey}cell`,
        label: `restore ${what} (open store + Persistence.restore)`,
        value: round(l.totalMs, 1),
        unit: 'ms',
        detail: { openMs: round(l.openMs, 1), restoreMs: round(l.restoreMs, 1), cells: l.cells, cellsPerS: Math.round(l.cells / (l.restoreMs / 1000)) },
      });
      figures.push({
        id: `restart.write.${cellsPerKey}cell`,
        label: `write ${what} (SqliteStore.write, ~100 k cells per transaction)`,
        value: round(w.writeMs, 1),
        unit: 'ms',
        detail: { cells: w.cells, rowsPerS: Math.round(w.cells / (w.writeMs / 1000)), dbMiB: round(dbBytes / 2 ** 20, 1) },
      });
      checks.push(
        check(
          `restart.restore.${cellsPerKey}cell`,
          `restart with ${what}`,
          `${round(l.totalMs / 1000, 2)} s`,
          '',
          l.totalMs / 1000,
          's',
          cellsPerKey === 1 ? { op: '<=', value: 5 } : undefined,
        ),
      );
      if (cellsPerKey === 1) rate = l.cells / (l.restoreMs / 1000);
    }
    return {
      figures,
      checks,
      notes: [
        `Keys counted once per slot under a catch-all sliding-window rule with a 1 h window (6 min slots), so nothing expires between writing and restoring. The target row has one cell per key (${si(rate)} cells/s restored); the 3-cell row shows how restore time grows with cells (a key busy across a whole window has up to 11).`,
        'Timed inside the fresh process from `new SqliteStore()` to the end of `Persistence.restore()` (module loading excluded), then every key checked live; the database file is in the OS page cache (warm restart).',
      ],
    };
  },
};
