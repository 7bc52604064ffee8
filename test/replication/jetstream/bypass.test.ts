/**
 * The bypass (src/replication/jetstream/bypass.ts) on a real nats-server: an origin stream the
 * aggregate has gone quiet about is read directly, from the origin sequence after the last one
 * the aggregate delivered; an origin that answers with nothing new is left alone for a while;
 * one that cannot be reached is tried again until it answers.
 */
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodecError } from '../../../crdt/index.ts';
import { SourceBypass } from '../../../src/replication/jetstream/bypass.ts';
import type { ReplicatedMessage } from '../../../src/replication/port.ts';
import { startSingleServer } from '../../../support/nats-server.ts';
import { waitFor } from '../../../support/wait.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
let server: Awaited<ReturnType<typeof startSingleServer>>;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startSingleServer();
  nc = await connect({ servers: server.url });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'LIMITER_FAR', subjects: ['limiter.d.far.>'], allow_direct: true });
  const js = nc.jetstream();
  for (let i = 1; i <= 6; i++) await js.publish('limiter.d.far.far-1', enc.encode(`b${i}`));
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await server?.stopAll();
});

function bypassWith(handler: (m: ReplicatedMessage) => void) {
  let closed = false;
  const b = new SourceBypass({ nc: () => nc, connected: () => true, closed: () => closed, failure: () => {} }, handler, { staleMs: 100, intervalMs: 20, attemptMs: 200 });
  return { b, close: () => ((closed = true), b.stop()) };
}

describe('reading a stalled origin stream directly', () => {
  it('hands over what the origin holds after the last origin sequence the aggregate delivered, under the origin stream name', async () => {
    const got: ReplicatedMessage[] = [];
    const { b, close } = bypassWith((m) => void got.push(m));
    try {
      b.sourced('LIMITER_FAR 2'); // the aggregate delivered origin sequences up to 2
      b.start();
      await waitFor('the rest of the origin stream', () => got.length === 4, { timeoutMs: 5000, intervalMs: 10 });
      expect(got.map((m) => dec.decode(m.data))).toEqual(['b3', 'b4', 'b5', 'b6']);
      expect(got.map((m) => m.streamSeq)).toEqual([3, 4, 5, 6]);
      expect(got.every((m) => m.stream === 'LIMITER_FAR' && m.origin === 'far-1')).toBe(true);
      expect(b.fetched).toBe(4);
    } finally {
      close();
    }
  });

  it('does nothing while the aggregate keeps delivering, and reads on from where the aggregate left off', async () => {
    const got: ReplicatedMessage[] = [];
    const { b, close } = bypassWith((m) => void got.push(m));
    try {
      b.start();
      const keepAlive = setInterval(() => b.sourced('LIMITER_FAR 6'), 20);
      await new Promise((r) => setTimeout(r, 400));
      clearInterval(keepAlive);
      expect(got).toEqual([]); // fresh: nothing read directly
      await nc.jetstream().publish('limiter.d.far.far-1', enc.encode('b7'));
      await waitFor('b7 once the aggregate goes quiet', () => got.some((m) => dec.decode(m.data) === 'b7'), { timeoutMs: 5000, intervalMs: 10 });
      expect(got.map((m) => m.streamSeq)).toEqual([7]);
    } finally {
      close();
    }
  });

  it('a batch the handler refuses is passed over; one it fails on is read again on a later try', async () => {
    const seen: string[] = [];
    let failures = 0;
    const { b, close } = bypassWith((m) => {
      const t = dec.decode(m.data);
      if (t === 'b3') throw new CodecError('CODEC_MALFORMED', 'bad');
      if (t === 'b4' && failures++ < 2) throw new Error('busy');
      seen.push(t);
    });
    try {
      b.sourced('LIMITER_FAR 2');
      b.start();
      await waitFor('b4 after two failures, and the rest', () => seen.includes('b6') && seen.includes('b4'), { timeoutMs: 5000, intervalMs: 10 });
      expect(seen).not.toContain('b3');
      expect(failures).toBe(3);
    } finally {
      close();
    }
  });
});
