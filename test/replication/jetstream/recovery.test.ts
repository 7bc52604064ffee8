/**
 * How fast the JetStream transport's consumers catch up after faults, on real nats-server 2.9
 * processes, each measured by waiting for the condition with a deadline:
 *
 * - deliveries pushed into a dead connection (a blackholed client link) are fetched from the
 *   stream right after the reconnect, not after an ack_wait;
 * - a kill -9 of the server with a backlog stored before the kill: everything reaches the
 *   handler within 1 s of the restarted server being reachable;
 * - a 10 s SIGSTOP of a region's server: what the other regions published meanwhile reaches the
 *   handler within 1 s of the region's aggregate stream storing it (the sourcing itself is the
 *   server's: figures from SIGCONT are printed), no gaps, no duplicates;
 * - in a region cut off from the JetStream meta quorum (where 2.9 refuses STREAM.MSG.GET and
 *   consumer creation), deliveries lost in a dead connection still arrive (direct gets).
 *
 * Figures are printed with a `[figure]` prefix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JetStreamTransport, type ReplicatedMessage } from '../../../src/replication/jetstream/index.ts';
import { regionStreamName } from '../../../src/replication/subjects.ts';
import { startSingleServer, type ServerHandle } from '../../../support/nats-server.ts';
import { startSupercluster, type Supercluster } from '../../../support/supercluster.ts';
import { startTcpProxy, type TcpProxy } from '../../../support/tcp-proxy.ts';
import { figure } from '../../../support/figure.ts';
import { sleep, waitFor } from '../../../support/wait.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What a node's handler received, by payload text, with arrival times. */
class Inbox {
  readonly msgs: ReplicatedMessage[] = [];
  readonly at = new Map<string, number>();
  readonly handler = (m: ReplicatedMessage) => {
    this.msgs.push(m);
    const text = dec.decode(m.data);
    if (!this.at.has(text)) this.at.set(text, performance.now());
  };
  missing(texts: readonly string[]): string[] {
    return texts.filter((t) => !this.at.has(t));
  }
  /** Resolves with the time the last of `texts` arrived; fails after `timeoutMs`. */
  async all(texts: readonly string[], what: string, timeoutMs: number): Promise<number> {
    await waitFor(what, () => this.missing(texts).length === 0, {
      timeoutMs,
      intervalMs: 2,
      describe: () => `missing ${this.missing(texts).length}: ${this.missing(texts).slice(0, 5).join(', ')}`,
    });
    return Math.max(...texts.map((t) => this.at.get(t)!));
  }
  seqs(stream: string): number[] {
    return this.msgs.filter((m) => m.stream === stream).map((m) => m.streamSeq);
  }
}

function expectContiguous(seqs: number[], what: string): void {
  expect(new Set(seqs).size, `${what}: duplicate sequences`).toBe(seqs.length);
  const sorted = [...seqs].sort((a, b) => a - b);
  sorted.forEach((s, i) => expect(s, `${what}: gap before ${s}`).toBe(sorted[0]! + i));
  expect(seqs, `${what}: out of order`).toEqual(sorted);
}

describe('JetStream transport: a node whose link to its server fails', () => {
  let server: ServerHandle & { stopAll(): Promise<void> };
  let proxy: TcpProxy;
  const open: JetStreamTransport[] = [];
  beforeAll(async () => {
    server = await startSingleServer();
    proxy = await startTcpProxy({ target: { port: Number(new URL(server.url).port) } });
  });
  afterAll(async () => {
    await Promise.allSettled(open.map((t) => t.close()));
    await proxy?.close();
    await server?.stopAll();
  }, 30_000);

  const node = async (nodeId: string, url: string) => {
    const t = new JetStreamTransport({ servers: url, region: 'dev', regions: ['dev'], nodeId });
    open.push(t);
    await t.start();
    return t;
  };
  const publishAll = async (t: JetStreamTransport, tag: string, n: number) => {
    const texts = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
    for (const text of texts) await t.publish(enc.encode(text), text);
    return texts;
  };

  it('deliveries pushed into a dead connection are fetched after the reconnect, not after an ack_wait', async () => {
    const reader = await node('reader-1', `nats://${proxy.address}`);
    const writer = await node('writer-1', server.url);
    const inbox = new Inbox();
    await reader.consume(inbox.handler);
    const warm = await publishAll(writer, 'bh-warm', 1);
    await inbox.all(warm, 'warm-up', 5000);
    proxy.blackhole(); // the server keeps pushing to the reader's connection: lost
    const lost = await publishAll(writer, 'bh-lost', 50);
    await waitFor('the reader to notice the dead connection', () => !reader.status().connected, { timeoutMs: 15_000 });
    expect(inbox.missing(lost)).toHaveLength(lost.length);
    const healedAt = performance.now();
    proxy.pass();
    const doneAt = await inbox.all(lost, 'lost deliveries after the reconnect', 3000);
    figure('deliveries lost in a dead connection, all handled after heal', `${(doneAt - healedAt).toFixed(0)} ms`);
    expectContiguous(inbox.seqs('LIMITER_DEV'), 'reader');
    expect(reader.status().reconnects).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('kill -9 with a backlog stored before the kill: handled within 1 s of the restarted server being reachable', async () => {
    const reader = await node('reader-2', `nats://${proxy.address}`);
    const writer = new JetStreamTransport({ servers: server.url, region: 'dev', regions: ['dev'], nodeId: 'writer-2' });
    open.push(writer);
    await writer.start();
    const inbox = new Inbox();
    await reader.consume(inbox.handler, { startAfterSeq: await reader.lastSequences() });
    const warm = await publishAll(writer, 'k9-warm', 1);
    await inbox.all(warm, 'warm-up', 5000);
    proxy.reset(); // the reader cannot reach the server from now on (connections refused)
    await waitFor('the reader to notice', () => !reader.status().connected, { timeoutMs: 10_000 });
    const backlog = await publishAll(writer, 'k9-backlog', 100);
    await server.kill9();
    await server.restart(); // same store and port; resolves once JetStream is ready
    const reachableAt = performance.now();
    proxy.pass();
    const doneAt = await inbox.all(backlog, 'the backlog after restart', 1000);
    figure('kill -9 backlog (100) handled, from the restarted server being reachable', `${(doneAt - reachableAt).toFixed(0)} ms`);
    expect(doneAt - reachableAt).toBeLessThanOrEqual(1000);
    expectContiguous(inbox.seqs('LIMITER_DEV'), 'reader');
  }, 60_000);
});

describe('JetStream transport: a region server frozen or cut off', () => {
  const REGIONS = ['us-east', 'eu-west', 'ap-south'];
  let sc: Supercluster;
  const open: JetStreamTransport[] = [];
  beforeAll(async () => {
    sc = await startSupercluster({ regions: REGIONS, gatewayProxies: true });
  }, 90_000);
  afterAll(async () => {
    await Promise.allSettled(open.map((t) => t.close()));
    await sc?.stopAll();
  }, 30_000);

  const node = async (region: string, nodeId: string, url = sc.region(region).url) => {
    const t = new JetStreamTransport({ servers: url, region, regions: REGIONS, nodeId });
    open.push(t);
    await t.start();
    return t;
  };

  it('10 s SIGSTOP: after SIGCONT the backlog reaches the handler within 1 s of its stream holding it, no gaps, no duplicates', async () => {
    const reader = await node('eu-west', 'eu-west-1');
    const peer = await node('eu-west', 'eu-west-2');
    const us = await node('us-east', 'us-east-1');
    const ap = await node('ap-south', 'ap-south-1');
    const inbox = new Inbox();
    await reader.consume(inbox.handler);
    let n = 0;
    const warm = [`warm-${n++}`, `warm-${n++}`];
    await us.publish(enc.encode(warm[0]!), warm[0]!);
    await ap.publish(enc.encode(warm[1]!), warm[1]!);
    await inbox.all(warm, 'warm-up (the aggregate sources both regions)', 20_000);

    // The same-region peer publishes steadily up to the stop, so deliveries are in flight then.
    const local: string[] = [];
    let flowing = true;
    const flow = (async () => {
      while (flowing) {
        const text = `local-${n++}`;
        await peer.publish(enc.encode(text), text).then(() => local.push(text), () => {});
        await sleep(2);
      }
    })();
    await sleep(500);
    const eu = sc.region('eu-west');
    const jsm = await us.connection.jetstreamManager();
    const aggLast = async () => (await jsm.streams.info('LIMITER_EU_WEST_AGG')).state.last_seq;
    const aggBefore = await aggLast();
    eu.sigstop();
    const stoppedAt = performance.now();
    const backlog: string[] = [];
    try {
      for (let i = 0; i < 50; i++) {
        for (const [t, tag] of [[us, 'us'], [ap, 'ap']] as const) {
          const text = `${tag}-stop-${n++}`;
          await t.publish(enc.encode(text), text);
          backlog.push(text);
        }
      }
      await sleep(Math.max(0, 10_000 - (performance.now() - stoppedAt)));
    } finally {
      eu.sigcont();
    }
    const contAt = performance.now();
    flowing = false;
    const acked = local.slice(); // acknowledged before SIGCONT: stored in LIMITER_EU_WEST
    // When the aggregate holds the backlog (asked through us-east: eu-west's stream leader answers).
    let storedAt = 0;
    const stored = (async () => {
      await waitFor('the aggregate to hold the backlog', async () => (await aggLast()) >= aggBefore + backlog.length, { timeoutMs: 20_000, intervalMs: 5 });
      storedAt = performance.now();
    })();
    const doneAt = await inbox.all([...backlog, ...acked], 'the backlog after SIGCONT', 20_000);
    await stored;
    await flow;
    figure('10 s SIGSTOP: aggregate holds the 100 backlog messages, from SIGCONT', `${(storedAt - contAt).toFixed(0)} ms`);
    figure('10 s SIGSTOP: all handled, from SIGCONT', `${(doneAt - contAt).toFixed(0)} ms`);
    figure('10 s SIGSTOP: all handled, from the aggregate holding them', `${(doneAt - storedAt).toFixed(0)} ms`);
    expect(doneAt - Math.max(storedAt, contAt)).toBeLessThanOrEqual(1000);
    expectContiguous(inbox.seqs('LIMITER_EU_WEST_AGG'), 'eu-west aggregate');
    expectContiguous(inbox.seqs('LIMITER_EU_WEST'), 'eu-west stream');
    // Once from the streams it consumes; a copy read from the stalled origin stream (the bypass)
    // may come too.
    const viaConsumed = (t: string) => inbox.msgs.filter((m) => m.stream.startsWith('LIMITER_EU_WEST') && dec.decode(m.data) === t).length;
    await waitFor('the aggregate to deliver the backlog too', () => backlog.every((t) => viaConsumed(t) > 0), { timeoutMs: 30_000, intervalMs: 20 });
    for (const t of backlog) expect(viaConsumed(t)).toBe(1);
  }, 90_000);

  it('cut off from the meta quorum: deliveries lost in a dead connection are still fetched (direct gets)', async () => {
    // A region that does not hold the meta leadership (a cut-off leader keeps answering longer).
    const leader = await sc.metaLeader();
    const region = ['ap-south', 'us-east', 'eu-west'].find((r) => leader !== `nats-${r}`)!;
    const stream = regionStreamName(region);
    const server = sc.region(region);
    const proxy = await startTcpProxy({ target: { port: Number(new URL(server.url).port) } });
    try {
      const reader = await node(region, `${region}-7`, `nats://${proxy.address}`);
      const writer = await node(region, `${region}-8`);
      const inbox = new Inbox();
      await reader.consume(inbox.handler, { startAfterSeq: await reader.lastSequences() });
      const jsm = await writer.connection.jetstreamManager({ timeout: 1000, checkAPI: false });
      server.cut('blackhole');
      // Once the meta group has been leaderless for a while, 2.9 answers requests that need it
      // (here: the info of a consumer that does not exist) with 10008.
      await waitFor(`${region} to lose the meta quorum`, async () => {
        const err = await jsm.consumers.info(stream, 'no-such-consumer').then(() => null, (e: { api_error?: { err_code?: number } }) => e);
        return err?.api_error?.err_code === 10008;
      }, { timeoutMs: 40_000, intervalMs: 250 });
      proxy.blackhole();
      const lost: string[] = [];
      for (let i = 0; i < 50; i++) {
        const text = `cut-lost-${i}`;
        await writer.publish(enc.encode(text), text); // an R1 stream in its own cluster: works cut off
        lost.push(text);
      }
      await waitFor('the reader to notice the dead connection', () => !reader.status().connected, { timeoutMs: 15_000 });
      const healedAt = performance.now();
      proxy.pass();
      const doneAt = await inbox.all(lost, 'lost deliveries without meta quorum', 3000);
      figure('deliveries lost in a dead connection, region without meta quorum, handled after heal', `${(doneAt - healedAt).toFixed(0)} ms`);
      expectContiguous(inbox.seqs(stream), `${region} stream`);
    } finally {
      server.heal();
      await proxy.close();
    }
  }, 120_000);
});
