/**
 * Replicated messages are hostile input (fast-check, on the simulated network): whatever a peer
 * publishes on its own channel — arbitrary bytes, arbitrary msgpack values, envelopes with
 * arbitrary counts, slots and names — no node crashes or stalls, nothing is redelivered forever,
 * no count goes down, and no key's count goes up by more than one node can admit in a window.
 */
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WIRE_VERSION } from '../../crdt/index.ts';
import type { MemoryTransport } from '../../src/replication/memory-bus.ts';
import { waitFor } from '../../support/wait.ts';
import { fcParams } from '../helpers/fc.ts';
import { Sim, type SimNode } from '../helpers/sim.ts';

let sim: Sim;
let evil: MemoryTransport;
let honest: SimNode[];
const KEYS = ['s:a', 's:b', 'm:c', 'x'];
/** Limit of each key's rule (SIM_RULES): small 10, mid 100, big 1 000 000. */
const LIMIT: Record<string, number> = { 's:a': 10, 's:b': 10, 'm:c': 100, x: 1_000_000 };

beforeAll(async () => {
  sim = await Sim.start({ nodes: { a: 1, b: 1 } });
  honest = sim.nodes;
  evil = sim.bus.transport('a', 'evil-1');
  await evil.start();
  for (const k of KEYS) honest[0]!.check(k);
  await waitFor('honest counts everywhere', () => KEYS.every((k) => sim.usages(k).every((u) => u === 1)), { timeoutMs: 3000, intervalMs: 2 });
});

afterAll(async () => {
  await evil?.close();
  await sim?.stop();
});

const handled = () => honest.map((n) => n.replicator.stats.messages + n.replicator.stats.refused);

/** Publishes `bytes` as evil-1 and waits until every honest node has handled it. */
async function publishAndSettle(bytes: Uint8Array): Promise<void> {
  const before = handled();
  await evil.publish(bytes, `fuzz-${Math.random()}`);
  await waitFor('every node to handle the message', () => handled().every((h, i) => h > before[i]!), { timeoutMs: 3000, intervalMs: 1 });
}

function scopeOf(key: string): { scope: string; slot: number } {
  const cl = [...honest[0]!.engine.allScopes()].find((c) => honest[0]!.engine.matchRule(key)?.limits.includes(c))!;
  return { scope: cl.scope, slot: Math.floor(Date.now() / cl.math.slotMs) };
}

function checkCounts(): void {
  for (const n of honest) {
    for (const k of KEYS) {
      const u = n.usage(k);
      expect(u, `${n.id} ${k} went down`).toBeGreaterThanOrEqual(1);
      expect(u, `${n.id} ${k} went up by more than one node's window`).toBeLessThanOrEqual(1 + LIMIT[k]!);
    }
  }
}

describe('fuzzing replicated messages', () => {
  it('arbitrary bytes and arbitrary msgpack values are refused, never applied, never retried', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 512 }), fc.anything().map((v) => pack(v) as Uint8Array)), async (bytes) => {
        const counts = honest.map((n) => KEYS.map((k) => n.usage(k)));
        await publishAndSettle(bytes.length ? bytes : new Uint8Array([0xc1]));
        // Arbitrary bytes never decode to a valid envelope of the right origin with cells.
        expect(honest.map((n) => KEYS.map((k) => n.usage(k)))).toEqual(counts);
      }),
      fcParams({ numRuns: 300 }),
    );
  }, 60_000);

  it('envelopes with arbitrary counts, slots, origins and nodes never lower a count, nor raise one beyond what one node could admit', async () => {
    const cellArb = fc.record({
      key: fc.constantFrom(...KEYS),
      slotDelta: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.integer({ min: -1e6, max: 1e9 })),
      p: fc.oneof(fc.nat(20), fc.nat(0xffff_ffff), fc.integer({ min: -10, max: 10 }), fc.double()),
      n: fc.oneof(fc.nat(20), fc.nat(0xffff_ffff), fc.integer({ min: -10, max: 10 })),
      node: fc.constantFrom('evil-1', 'evil-1', 'a-0', 'b-0', 'ghost'),
    });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('evil-1', 'evil-1', 'a-0', 'ghost'), fc.array(cellArb, { maxLength: 8 }), async (origin, cells) => {
        const scopes: [string, number][] = [];
        const nodes: string[] = [];
        const flat: unknown[] = [];
        for (const c of cells) {
          const { scope, slot } = scopeOf(c.key);
          let si = scopes.findIndex(([s]) => s === scope);
          if (si < 0) si = scopes.push([scope, slot]) - 1;
          let ni = nodes.indexOf(c.node);
          if (ni < 0) ni = nodes.push(c.node) - 1;
          flat.push(si, c.key, c.slotDelta, ni, c.p, c.n);
        }
        await publishAndSettle(pack([WIRE_VERSION, origin, 1, Date.now(), scopes, nodes, flat]) as Uint8Array);
        checkCounts();
      }),
      fcParams({ numRuns: 300 }),
    );
    // Still replicating: an honest admission after all of it reaches the other node.
    const before = honest[1]!.usage('m:c');
    honest[0]!.check('m:c');
    await waitFor('b to see a new honest admission', () => honest[1]!.usage('m:c') === before + 1, { timeoutMs: 3000, intervalMs: 2 });
  }, 60_000);
});
