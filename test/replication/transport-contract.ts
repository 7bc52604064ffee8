/**
 * The transport port's contract (src/replication/port.ts) as a suite every implementation
 * runs: the in-memory bus (memory-bus.test.ts) and JetStream on real nats-servers
 * (jetstream/contract.test.ts). Two regions: `a` with nodes a1 and a2, `b` with node b1.
 */
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { CodecError } from '../../crdt/index.ts';
import type { ReplicatedMessage, Transport } from '../../src/replication/port.ts';
import { waitFor } from '../../support/wait.ts';

export interface TransportWorld {
  /** A started transport for `node` of `region` (a fresh node name each call is fine). */
  transport(region: 'a' | 'b', node: string): Promise<Transport>;
  close(): Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function transportContract(name: string, makeWorld: () => Promise<TransportWorld>, timeoutMs = 5000): void {
  describe(`transport contract: ${name}`, () => {
    let world: TransportWorld;
    let n = 0;
    const open: Transport[] = [];
    const node = async (region: 'a' | 'b', base: string) => {
      const t = await world.transport(region, `${base}x${++n}`);
      open.push(t);
      return t;
    };
    const collect = async (t: Transport, startAfterSeq?: Record<string, number>) => {
      const got: ReplicatedMessage[] = [];
      await t.consume((m) => void got.push(m), { startAfterSeq });
      return got;
    };
    const texts = (got: ReplicatedMessage[]) => got.map((m) => dec.decode(m.data));
    beforeAll(async () => {
      world = await makeWorld();
    });
    afterEach(async () => {
      for (const t of open.splice(0)) await t.close();
    });
    afterAll(async () => {
      await world?.close();
    });

    it('a published batch reaches every node, the publisher included, with its origin', async () => {
      const a1 = await node('a', 'a1');
      const a2 = await node('a', 'a2');
      const b1 = await node('b', 'b1');
      const [ga1, ga2, gb1] = [await collect(a1), await collect(a2), await collect(b1)];
      const tag = `hello-${n}`;
      await a1.publish(enc.encode(tag), `${a1.nodeId}:1`);
      for (const [who, got] of [['a1', ga1], ['a2', ga2], ['b1', gb1]] as const) {
        const m = await waitFor(`${who} to receive it`, () => got.find((x) => dec.decode(x.data) === tag), { timeoutMs, intervalMs: 5 });
        expect(m.origin).toBe(a1.nodeId);
      }
    });

    it('per stream, sequences strictly increase and batches of one publisher keep their order', async () => {
      const a1 = await node('a', 'a1');
      const b1 = await node('b', 'b1');
      const got = await collect(b1);
      const tags = Array.from({ length: 20 }, (_, i) => `order-${n}-${i}`);
      for (const t of tags) await a1.publish(enc.encode(t), `${a1.nodeId}:${t}`);
      await waitFor('all 20', () => texts(got).filter((t) => t.startsWith(`order-${n}-`)).length === 20, { timeoutMs, intervalMs: 5 });
      expect(texts(got).filter((t) => t.startsWith(`order-${n}-`))).toEqual(tags);
      const byStream = new Map<string, number>();
      for (const m of got) {
        expect(m.streamSeq).toBeGreaterThan(byStream.get(m.stream) ?? 0);
        byStream.set(m.stream, m.streamSeq);
      }
    });

    it('consume resumes right after startAfterSeq', async () => {
      const a1 = await node('a', 'a1');
      const first = await node('a', 'a2');
      const seen = await collect(first);
      const tag = `resume-${n}`;
      for (let i = 0; i < 6; i++) await a1.publish(enc.encode(`${tag}-${i}`), `${a1.nodeId}:r${i}`);
      await waitFor('the first reader to get all 6', () => texts(seen).filter((t) => t.startsWith(tag)).length === 6, { timeoutMs, intervalMs: 5 });
      const third = seen.find((m) => dec.decode(m.data) === `${tag}-2`)!;
      const later = await node('a', 'a3');
      const got = await collect(later, { [third.stream]: third.streamSeq });
      await waitFor('the rest', () => texts(got).filter((t) => t.startsWith(tag)).length === 3, { timeoutMs, intervalMs: 5 });
      expect(texts(got).filter((t) => t.startsWith(tag))).toEqual([`${tag}-3`, `${tag}-4`, `${tag}-5`]);
    });

    it('a batch the handler refuses with a CodecError is dropped for good and reported; the next ones still arrive', async () => {
      const a1 = await node('a', 'a1');
      const b1 = await node('b', 'b1');
      const got: string[] = [];
      const poisoned: unknown[] = [];
      b1.on('poison', (e) => poisoned.push(e));
      const tag = `poison-${n}`;
      await b1.consume((m) => {
        const t = dec.decode(m.data);
        if (t === `${tag}-bad`) throw new CodecError('CODEC_MALFORMED', 'bad');
        got.push(t);
      });
      await a1.publish(enc.encode(`${tag}-bad`), `${a1.nodeId}:bad`);
      await a1.publish(enc.encode(`${tag}-good`), `${a1.nodeId}:good`);
      await waitFor('the good one', () => got.includes(`${tag}-good`), { timeoutMs, intervalMs: 5 });
      expect(poisoned).toHaveLength(1);
      expect(got).not.toContain(`${tag}-bad`);
    });

    it('a batch whose handler fails for another reason is retried until it is applied', async () => {
      const a1 = await node('a', 'a1');
      const b1 = await node('b', 'b1');
      let failures = 0;
      const got: string[] = [];
      const tag = `retry-${n}`;
      await b1.consume((m) => {
        const t = dec.decode(m.data);
        if (t === tag && failures < 2) {
          failures++;
          throw new Error('disk busy');
        }
        got.push(t);
      });
      await a1.publish(enc.encode(tag), `${a1.nodeId}:retry`);
      await waitFor('the batch after two failures', () => got.includes(tag), { timeoutMs: timeoutMs * 2, intervalMs: 5 });
      expect(failures).toBe(2);
    });

    it('status reports the connection and, per stream, how far the consumer got', async () => {
      const a1 = await node('a', 'a1');
      const got = await collect(a1);
      await a1.publish(enc.encode(`status-${n}`), `${a1.nodeId}:s`);
      await waitFor('delivery', () => got.length > 0, { timeoutMs, intervalMs: 5 });
      const last = await a1.lastSequences();
      await waitFor('status to reach the last sequences', () => Object.entries(last).every(([s, seq]) => (a1.status().streams[s]?.lastSeq ?? 0) >= seq), { timeoutMs, intervalMs: 5 });
      expect(a1.status().connected).toBe(true);
      expect(a1.connected).toBe(true);
      expect(a1.streams().sort()).toEqual(Object.keys(last).sort());
    });
  });
}
