/**
 * Section `memory`: bytes per live key at 1 M keys (heap delta / keys), in a fresh child
 * process with --expose-gc. See bench/children/memory.ts for what is counted.
 */
import { runChild } from '../lib/child.ts';
import { count, round } from '../lib/format.ts';
import { check, type BenchContext, type Section, type SectionResult } from '../lib/types.ts';

interface MemoryResult {
  keys: number;
  engineHeapBytes: number;
  engineExternalBytes: number;
  keyStringBytes: number;
  perKeyEngine: number;
  perKeyStrings: number;
  perKeyTotal: number;
  insertMs: number;
  rssMiB: number;
}

export const memorySection: Section = {
  id: 'memory',
  title: 'Memory per live key (heap delta / keys, fresh process, --expose-gc)',
  estimateS: { full: 8, quick: 3 },
  async run(ctx: BenchContext): Promise<SectionResult> {
    const keys = ctx.quick ? 100_000 : 1_000_000;
    ctx.log(`memory: ${count(keys)} keys in a child process`);
    const r = await runChild<MemoryResult>('bench/children/memory.ts', [String(keys)], { root: ctx.root, nodeArgs: ['--expose-gc'], profileDir: ctx.profileDir, profileName: 'memory' }, 120_000);
    const label = `${count(keys)} keys`;
    return {
      figures: [
        {
          id: 'memory.perKey',
          label: `bytes per live key at ${label} (engine + key string)`,
          value: round(r.perKeyTotal, 1),
          unit: 'B/key',
          detail: { engineHeap: round(r.engineHeapBytes / keys, 1), engineTypedArrays: round(r.engineExternalBytes / keys, 1), keyString: round(r.perKeyStrings, 1) },
        },
        { id: 'memory.insert', label: `time to create ${label} through decide()`, value: round(r.insertMs, 1), unit: 'ms', detail: { rssMiB: Math.round(r.rssMiB) } },
      ],
      checks: [check('memory.perKey', `memory per live key at ${label}`, `${round(r.perKeyTotal, 1)} B/key`, '', r.perKeyTotal, 'B', { op: '<=', value: 256 })],
      notes: [
        `Keys \`user:<n>\` (6–11 bytes), each counted once by decide() under a catch-all sliding-window rule (1 m, 10 slots: 11 ring cells per key); changes drained every 50 000 keys as the persistence loop would.`,
        'Per key = (Δ heapUsed + Δ external) of the engine / keys + the key strings measured on their own (a key must be stored to be looked up). Full GC (3×) before each reading.',
      ],
    };
  },
};
