/**
 * Shipping figures of one replicating node (child of the `replication` section), wired like
 * src/node.ts: Engine + SqliteStore + Persistence (whose flush calls Replicator.extend inside
 * its transaction, then kicks Replicator.pump) + JetStreamTransport, against a real NATS server.
 *
 *   tsx bench/children/replication-ship.ts NATS_URL REGION REGIONS DIR CAPACITY_S STEADY_S KEYS_PER_CYCLE[,..]
 *
 * 1. Capacity: cycles of "count KEYS_PER_CYCLE distinct keys through decide(), then one flush
 *    (drain → encode → SQLite commit of cells + outbox) and wait until JetStream has acknowledged
 *    every message of it". A cycle starts when the previous one is acknowledged (no overlap), so
 *    the rate is a lower bound of what a node ships when flushes overlap publishing. Each stage is
 *    timed by wrapping the method that does it (engine.drain, replicator.extend, store.write,
 *    store.ackOutbox); decide() is timed apart (it is the request path's cost, not shipping's).
 *    The commit also upserts the cells (persistence, with or without replication): afterwards
 *    the same outbox records are inserted alone into a scratch store to time the outbox's share.
 * 2. Steady: 10 000 checks/s through decide() over 1000 keys (uniformly random, seeded), the
 *    persistence timer flushing every 50 ms as in a node: payload and wire bytes per second.
 *
 * Wire bytes are the client's own count of bytes written to the server (nats.js `stats()`):
 * publishes with their `Nats-Msg-Id` headers, plus the acks and pull requests of its consumers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Engine } from '../../src/engine/engine.ts';
import { Replicator } from '../../src/replication/replicator.ts';
import { JetStreamTransport } from '../../src/replication/transport.ts';
import { Persistence } from '../../src/storage/persistence.ts';
import { SqliteStore } from '../../src/storage/sqlite.ts';
import { childMain } from '../lib/child.ts';
import { HIGH_LIMIT, catchAllRules } from '../lib/fixtures.ts';

const NODE = 'ship-1';
const FLUSH_MS = 50;
const STEADY_RATE = 10_000;
const STEADY_KEYS = 1000;
const POOL = 200_000;

interface Counters {
  drainMs: number;
  encodeMs: number;
  commitMs: number;
  messages: number;
  cells: number;
  payloadBytes: number;
  lastId: number;
  ackedId: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

childMain(async () => {
  const [url, region, regionsArg, dirArg, capArg, steadyArg, sizesArg] = process.argv.slice(2);
  const capacityS = Number(capArg);
  const steadyS = Number(steadyArg);
  const sizes = (sizesArg ?? '').split(',').map(Number).filter((n) => n > 0);
  if (!url || !region || !regionsArg || !dirArg || !(capacityS >= 0) || !(steadyS >= 0) || sizes.length === 0) {
    throw new Error('usage: replication-ship.ts NATS_URL REGION REGIONS DIR CAPACITY_S STEADY_S KEYS_PER_CYCLE[,..]');
  }
  const dir = mkdtempSync(join(dirArg, 'ship-'));
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const now = Date.now;
  const engine = new Engine({ nodeId: NODE, rules: catchAllRules(HIGH_LIMIT, '1m'), maxKeys: 1_000_000 });
  const store = new SqliteStore({ dir, nodeId: NODE, durability: 'batch' });
  const transport = new JetStreamTransport({ servers: url, region, regions: regionsArg.split(','), nodeId: NODE, waitOnFirstConnect: true });
  const replicator = new Replicator({ engine, store, transport, nodeId: NODE, region, incarnation: store.incarnation, flushIntervalMs: FLUSH_MS, now, logger });
  const persistence = new Persistence({
    engine,
    store,
    durability: 'batch',
    flushIntervalMs: FLUSH_MS,
    now,
    extend: (own, at) => replicator.extend(own, at),
    afterCommit: ({ own }) => {
      if (own > 0) void replicator.pump();
    },
  });

  // Instrument the stages (instance properties shadow the prototype methods).
  const c: Counters = { drainMs: 0, encodeMs: 0, commitMs: 0, messages: 0, cells: 0, payloadBytes: 0, lastId: 0, ackedId: 0 };
  const drain = engine.drain.bind(engine);
  engine.drain = () => {
    const t = performance.now();
    const r = drain();
    c.drainMs += performance.now() - t;
    return r;
  };
  /** The outbox records of each measured flush, to time their insert on their own afterwards. */
  let recorded: NonNullable<ReturnType<Replicator['extend']>['outbox']>[] | undefined;
  const extend = replicator.extend.bind(replicator);
  replicator.extend = (own, at) => {
    const t = performance.now();
    const r = extend(own, at);
    c.encodeMs += performance.now() - t;
    c.cells += own.length;
    if (recorded) recorded.push(r.outbox ?? []);
    for (const m of r.outbox ?? []) {
      c.messages++;
      c.payloadBytes += m.payload.length;
      c.lastId = m.id;
    }
    return r;
  };
  const write = store.write.bind(store);
  store.write = (batch) => {
    const t = performance.now();
    write(batch);
    c.commitMs += performance.now() - t;
  };
  let wake: (() => void) | undefined;
  const ack = store.ackOutbox.bind(store);
  store.ackOutbox = (ids) => {
    ack(ids);
    for (const id of ids) if (id > c.ackedId) c.ackedId = id;
    if (wake && c.ackedId >= c.lastId) {
      const w = wake;
      wake = undefined;
      w();
    }
  };

  try {
    await replicator.start({ rebuild: false });
    if (!(await replicator.waitCaughtUp(30_000))) throw new Error('replication did not catch up');
    const nc = transport.connection;
    const snap = () => ({ ...c, outBytes: nc.stats().outBytes, t: performance.now() });
    type Snap = ReturnType<typeof snap>;
    // Resolved by the ackOutbox wrapper (no polling: a spinning wait would take CPU from the
    // nats-server on a 2-core machine).
    const waitAcked = async () => {
      if (c.ackedId >= c.lastId) return;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          new Promise<void>((r) => (wake = r)),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`outbox not acknowledged: acked ${c.ackedId} of ${c.lastId}`)), 30_000);
          }),
        ]);
      } finally {
        clearTimeout(timer);
        wake = undefined;
      }
    };

    // ---- capacity ----
    let next = 0;
    const keyPool = Array.from({ length: POOL }, (_, i) => `user:${i}`);
    const cycle = async (n: number) => {
      const at = now();
      const t = performance.now();
      for (let i = 0; i < n; i++) {
        engine.decide({ key: keyPool[next] }, at);
        next = (next + 1) % POOL;
      }
      const decideMs = performance.now() - t;
      const t0 = performance.now();
      persistence.flush();
      const t1 = performance.now();
      await waitAcked();
      return { decideMs, flushMs: t1 - t0, publishMs: performance.now() - t1 };
    };
    const capacity = [];
    for (const n of sizes) {
      for (let w = performance.now(); performance.now() - w < Math.min(1000, capacityS * 300); ) await cycle(n); // warm-up
      const s0 = snap();
      recorded = [];
      let decideMs = 0;
      let publishMs = 0;
      const cycleMs: number[] = [];
      const end = performance.now() + capacityS * 1000;
      while (performance.now() < end || cycleMs.length < 3) {
        const r = await cycle(n);
        decideMs += r.decideMs;
        publishMs += r.publishMs;
        cycleMs.push(r.flushMs + r.publishMs);
      }
      const s1 = snap();
      // The outbox's share of the commit: the same records inserted alone, one transaction per
      // flush, into a scratch store (the commit above also upserts the cells persistence keeps).
      const scratch = new SqliteStore({ dir: mkdtempSync(join(dir, 'scratch-')), nodeId: NODE, durability: 'batch' });
      const o0 = performance.now();
      for (const records of recorded) scratch.write({ cells: [], outbox: records });
      const outboxMs = performance.now() - o0;
      scratch.close();
      recorded = undefined;
      const shipMs = cycleMs.reduce((a, b) => a + b, 0);
      const cells = s1.cells - s0.cells;
      cycleMs.sort((a, b) => a - b);
      capacity.push({
        keysPerCycle: n,
        cycles: cycleMs.length,
        cells,
        messages: s1.messages - s0.messages,
        payloadBytes: s1.payloadBytes - s0.payloadBytes,
        wireBytes: s1.outBytes - s0.outBytes,
        shipMs,
        cellsPerS: cells / (shipMs / 1000),
        cycleP50Ms: cycleMs[Math.floor(cycleMs.length / 2)],
        cycleMaxMs: cycleMs[cycleMs.length - 1],
        drainMs: s1.drainMs - s0.drainMs,
        encodeMs: s1.encodeMs - s0.encodeMs,
        commitMs: s1.commitMs - s0.commitMs,
        outboxMs,
        publishMs,
        decideMs,
      });
    }

    // ---- steady 10k checks/s over 1000 keys, flush timer every 50 ms ----
    let steady;
    if (steadyS > 0) {
      persistence.start();
      const keys = Array.from({ length: STEADY_KEYS }, (_, i) => `steady:${i}`);
      let s = 0x9e3779b9;
      const rand = () => {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        return (s >>> 0) / 4294967296;
      };
      let checks = 0;
      const run = async (seconds: number): Promise<number> => {
        const start = performance.now();
        const first = checks;
        // Paced in 5 ms ticks: the checks due so far are made (catching up after a late tick).
        while (performance.now() - start < seconds * 1000) {
          const due = first + Math.floor(((performance.now() - start) / 1000) * STEADY_RATE);
          const at = now();
          for (; checks < due; checks++) engine.decide({ key: keys[Math.floor(rand() * STEADY_KEYS)] }, at);
          await sleep(5);
        }
        return (performance.now() - start) / 1000;
      };
      await run(1); // warm-up
      await waitAcked();
      const s0: Snap = snap();
      const checks0 = checks;
      const seconds = await run(steadyS);
      await sleep(FLUSH_MS * 2); // the last interval's flush
      await waitAcked();
      const s1: Snap = snap();
      steady = {
        seconds,
        checks: checks - checks0,
        checksPerS: (checks - checks0) / seconds,
        cells: s1.cells - s0.cells,
        messages: s1.messages - s0.messages,
        payloadBytes: s1.payloadBytes - s0.payloadBytes,
        wireBytes: s1.outBytes - s0.outBytes,
      };
    }
    return { capacity, steady, publishErrors: replicator.stats.publishErrors };
  } finally {
    persistence.stop();
    await replicator.stop().catch(() => {});
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
