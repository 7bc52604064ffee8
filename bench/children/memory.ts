/**
 * Memory per live key, in a fresh process run with --expose-gc (child of the `memory` section).
 *
 *   tsx --expose-gc bench/children/memory.ts KEYS
 *
 * 1. Build the key strings (`user:<n>`) and measure them on their own (they stay referenced by
 *    this script, so the engine's delta below does not include them).
 * 2. Count each key once through Engine.decide() (the catch-all sliding-window rule), draining
 *    the changes every 50 000 keys as the persistence loop would (every 50 ms in a node).
 * 3. Full GC before and after; heap delta = Δ(heapUsed) + Δ(external) (the per-key slab lives
 *    in typed arrays, whose backing stores are counted in `external`, not in `heapUsed`).
 */
import { Engine } from '../../src/engine/engine.ts';
import { childMain } from '../lib/child.ts';
import { HIGH_LIMIT, catchAllRules } from '../lib/fixtures.ts';

const gc = (globalThis as { gc?: () => void }).gc;

function settle(): NodeJS.MemoryUsage {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage();
}

childMain(async () => {
  if (!gc) throw new Error('run with --expose-gc');
  const n = Number(process.argv[2] ?? 1_000_000);
  const m0 = settle();
  const keys = new Array<string>(n);
  for (let i = 0; i < n; i++) keys[i] = `user:${i}`;
  const m1 = settle();
  // The array itself holds one 8-byte pointer per key: not part of a key's cost.
  const keyStringBytes = m1.heapUsed - m0.heapUsed - 8 * n;

  const engine = new Engine({ nodeId: 'bench', rules: catchAllRules(HIGH_LIMIT, '1m'), maxKeys: n });
  const m2 = settle();
  const now = Date.now();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    if (!engine.decide({ key: keys[i] }, now).allowed) throw new Error('denied');
    if (i % 50_000 === 49_999) engine.drain();
  }
  engine.drain();
  const insertMs = performance.now() - t0;
  const m3 = settle();
  const stats = engine.stats();
  if (stats.liveKeys !== n || stats.capEvictions !== 0) throw new Error(`expected ${n} live keys, got ${stats.liveKeys} (${stats.capEvictions} evicted)`);
  const heapDelta = m3.heapUsed - m2.heapUsed;
  const externalDelta = m3.external - m2.external;
  // Keep everything alive until measured.
  if (keys.length !== n || engine.stats().liveKeys !== n) throw new Error('unreachable');
  return {
    keys: n,
    engineHeapBytes: heapDelta,
    engineExternalBytes: externalDelta,
    keyStringBytes,
    perKeyEngine: (heapDelta + externalDelta) / n,
    perKeyStrings: keyStringBytes / n,
    perKeyTotal: (heapDelta + externalDelta + keyStringBytes) / n,
    insertMs,
    rssMiB: m3.rss / 2 ** 20,
  };
});
