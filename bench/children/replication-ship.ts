/**
 * Shipping figures of one replicating node (child of the `replication` section), wired like
 * src/node.ts: Engine + Persistence over a SqliteStore (its own 50 ms timer) + Replicator with
 * its Shipper + JetStreamTransport, against a real NATS server.
 *
 *   tsx bench/children/replication-ship.ts NATS_URL REGION REGIONS DIR CAPACITY_S STEADY_S KEYS_PER_ROUND[,..]
 *
 * 1. Capacity: rounds of "count KEYS_PER_ROUND distinct keys through decide() in one turn, then
 *    wait until the shipper has had every one of their cells acknowledged by JetStream" (drain →
 *    encode → publish → ack, in the shipper's pipeline). A round starts when the previous one is
 *    acknowledged (no overlap), so the rate is a lower bound of what a node ships under steady
 *    load. Stages are timed by wrapping the methods that do them (engine.drainOwn,
 *    transport.publish); decide() is timed apart (it is the request path's cost).
 * 2. Steady: 10 000 checks/s through decide() over 1000 keys (uniformly random, seeded): payload
 *    and wire bytes per second, messages per second and cells per message, as the shipper
 *    coalesces on its own.
 *
 * Wire bytes are the client's own count of bytes written to the server (nats.js `stats()`):
 * publishes with their `Nats-Msg-Id` headers, plus the acks and pull requests of its consumers.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Engine } from '../../src/engine/engine.ts';
import { JetStreamTransport } from '../../src/replication/jetstream/index.ts';
import { Replicator } from '../../src/replication/replicator.ts';
import { Persistence } from '../../src/storage/persistence.ts';
import { SqliteStore } from '../../src/storage/sqlite.ts';
import { sleep, waitFor } from '../../support/wait.ts';
import { childMain } from '../lib/child.ts';
import { HIGH_LIMIT, catchAllRules } from '../lib/fixtures.ts';

const NODE = 'ship-1';
const FLUSH_MS = 50;
const STEADY_RATE = 10_000;
const STEADY_KEYS = 1000;
const POOL = 200_000;

childMain(async () => {
  const [url, region, regionsArg, dirArg, capArg, steadyArg, sizesArg] = process.argv.slice(2);
  const capacityS = Number(capArg);
  const steadyS = Number(steadyArg);
  const sizes = (sizesArg ?? '').split(',').map(Number).filter((n) => n > 0);
  if (!url || !region || !regionsArg || !dirArg || !(capacityS >= 0) || !(steadyS >= 0) || sizes.length === 0) {
    throw new Error('usage: replication-ship.ts NATS_URL REGION REGIONS DIR CAPACITY_S STEADY_S KEYS_PER_ROUND[,..]');
  }
  const dir = mkdtempSync(join(dirArg, 'ship-'));
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const now = Date.now;
  const engine = new Engine({ nodeId: NODE, rules: catchAllRules(HIGH_LIMIT, '1m'), maxKeys: 1_000_000 });
  const store = new SqliteStore({ dir, nodeId: NODE, durability: 'batch' });
  const persistence = new Persistence({ engine, store, durability: 'batch', flushIntervalMs: FLUSH_MS, now });
  const transport = new JetStreamTransport({ servers: url, region, regions: regionsArg.split(','), nodeId: NODE, waitOnFirstConnect: true });
  const replicator = new Replicator({ engine, transport, positions: persistence, nodeId: NODE, now, logger });
  const shipper = replicator.shipper;

  // Instrument the stages (instance properties shadow the prototype methods).
  const c = { drainMs: 0, publishMs: 0, inFlight: 0, publishStartedAt: 0 };
  const drainOwn = engine.drainOwn.bind(engine);
  engine.drainOwn = () => {
    const t = performance.now();
    const r = drainOwn();
    c.drainMs += performance.now() - t;
    return r;
  };
  const publish = transport.publish.bind(transport);
  transport.publish = async (bytes, msgId) => {
    // Wall time with at least one publish in flight (publishes of one round overlap).
    if (c.inFlight++ === 0) c.publishStartedAt = performance.now();
    try {
      await publish(bytes, msgId);
    } finally {
      if (--c.inFlight === 0) c.publishMs += performance.now() - c.publishStartedAt;
    }
  };

  try {
    persistence.start();
    await replicator.start({});
    if (!(await replicator.waitCaughtUp(30_000))) throw new Error('replication did not catch up');
    const nc = transport.connection;
    const snap = () => ({ ...shipper.stats, drainMs: c.drainMs, publishMs: c.publishMs, outBytes: nc.stats().outBytes, t: performance.now() });
    const waitShipped = (cells: number) => waitFor('the shipper to have every cell acknowledged', () => shipper.stats.cells >= cells && shipper.inFlight === 0, { timeoutMs: 30_000, intervalMs: 1 });

    // ---- capacity ----
    let next = 0;
    const keyPool = Array.from({ length: POOL }, (_, i) => `user:${i}`);
    const round = async (n: number) => {
      const at = now();
      const t = performance.now();
      for (let i = 0; i < n; i++) {
        engine.decide({ key: keyPool[next] }, at);
        next = (next + 1) % POOL;
      }
      const t1 = performance.now();
      await waitShipped(shipper.stats.cells + n);
      return { decideMs: t1 - t, shipMs: performance.now() - t1 };
    };
    const capacity = [];
    for (const n of sizes) {
      for (let w = performance.now(); performance.now() - w < Math.min(1000, capacityS * 300); ) await round(n); // warm-up
      const s0 = snap();
      let decideMs = 0;
      const roundMs: number[] = [];
      const end = performance.now() + capacityS * 1000;
      while (performance.now() < end || roundMs.length < 3) {
        const r = await round(n);
        decideMs += r.decideMs;
        roundMs.push(r.shipMs);
      }
      const s1 = snap();
      const shipMs = roundMs.reduce((a, b) => a + b, 0);
      const cells = s1.cells - s0.cells;
      roundMs.sort((a, b) => a - b);
      capacity.push({
        keysPerCycle: n,
        cycles: roundMs.length,
        cells,
        messages: s1.messages - s0.messages,
        payloadBytes: s1.bytes - s0.bytes,
        wireBytes: s1.outBytes - s0.outBytes,
        shipMs,
        cellsPerS: cells / (shipMs / 1000),
        cycleP50Ms: roundMs[Math.floor(roundMs.length / 2)],
        cycleMaxMs: roundMs[roundMs.length - 1],
        drainMs: s1.drainMs - s0.drainMs,
        publishMs: s1.publishMs - s0.publishMs,
        decideMs,
      });
    }

    // ---- steady 10k checks/s over 1000 keys ----
    let steady;
    if (steadyS > 0) {
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
      await waitFor('idle shipper', () => shipper.inFlight === 0, { timeoutMs: 10_000, intervalMs: 1 });
      const s0 = snap();
      const checks0 = checks;
      const seconds = await run(steadyS);
      await waitFor('idle shipper', () => shipper.inFlight === 0, { timeoutMs: 10_000, intervalMs: 1 });
      const s1 = snap();
      steady = {
        seconds,
        checks: checks - checks0,
        checksPerS: (checks - checks0) / seconds,
        cells: s1.cells - s0.cells,
        messages: s1.messages - s0.messages,
        payloadBytes: s1.bytes - s0.bytes,
        wireBytes: s1.outBytes - s0.outBytes,
      };
    }
    return { capacity, steady, publishErrors: shipper.stats.publishErrors };
  } finally {
    await replicator.stop().catch(() => {});
    persistence.stop();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
