/**
 * Restart figure, two steps each in a fresh process (children of the `restart` section):
 *
 *   tsx bench/children/restart.ts write DIR KEYS [CELLS]  count KEYS keys through an Engine, each in
 *                                                         CELLS consecutive slots (default 1), and
 *                                                         write the drained cells with SqliteStore.write
 *                                                         in transactions of about 100 000 cells
 *   tsx bench/children/restart.ts load DIR KEYS           time new SqliteStore(...) + Persistence.restore()
 *                                                         into a fresh Engine; check every key is live
 *
 * The rule has a 1 h window (6 min slots, 11 in the ring) so no cell expires between the steps.
 * Run by hand (without the parent) a step prints its result as JSON.
 */
import { Engine } from '../../src/engine/engine.ts';
import { Persistence } from '../../src/storage/persistence.ts';
import { SqliteStore } from '../../src/storage/sqlite.ts';
import { childMain } from '../lib/child.ts';
import { HIGH_LIMIT, catchAllRules } from '../lib/fixtures.ts';

const NODE = 'bench';
const TX_CELLS = 100_000;
const rules = () => catchAllRules(HIGH_LIMIT, '1h');

const SLOT_MS = 360_000;

async function write(dir: string, n: number, cellsPerKey: number) {
  if (!(cellsPerKey >= 1 && cellsPerKey <= 10)) throw new Error('CELLS must be 1..10');
  const engine = new Engine({ nodeId: NODE, rules: rules(), maxKeys: n });
  const store = new SqliteStore({ dir, nodeId: NODE, durability: 'batch' });
  const now = Date.now();
  let cells = 0;
  let writeMs = 0;
  const flush = () => {
    const rows = engine.drain().rows;
    const t = performance.now();
    store.write({ cells: rows });
    writeMs += performance.now() - t;
    cells += rows.length;
  };
  const keysPerTx = Math.max(1, Math.floor(TX_CELLS / cellsPerKey));
  for (let i = 0; i < n; i++) {
    const key = `user:${i}`;
    for (let j = cellsPerKey - 1; j >= 0; j--) engine.decide({ key }, now - j * SLOT_MS);
    if (i % keysPerTx === keysPerTx - 1) flush();
  }
  flush();
  store.close();
  return { cells, writeMs };
}

async function load(dir: string, n: number) {
  const t0 = performance.now();
  const store = new SqliteStore({ dir, nodeId: NODE, durability: 'batch' });
  const t1 = performance.now();
  const engine = new Engine({ nodeId: NODE, rules: rules(), maxKeys: Math.max(n, 1_000_000) });
  const persistence = new Persistence({ engine, store, durability: 'batch', flushIntervalMs: 50, now: Date.now });
  const r = persistence.restore();
  const t2 = performance.now();
  const live = engine.stats().liveKeys;
  store.close();
  if (live !== n) throw new Error(`restored ${live} live keys, expected ${n}`);
  return { totalMs: t2 - t0, openMs: t1 - t0, restoreMs: r.ms, cells: r.cells, liveKeys: live };
}

childMain(async () => {
  const [mode, dir, count, cells] = process.argv.slice(2);
  const n = Number(count);
  if (!dir || !(n > 0)) throw new Error('usage: restart.ts write|load DIR KEYS [CELLS]');
  if (mode === 'write') return write(dir, n, Number(cells ?? 1));
  if (mode === 'load') return load(dir, n);
  throw new Error(`unknown mode ${mode}`);
});
