/**
 * Replication end to end: limiter processes (src/main.ts with --nats) in three regions
 * (us-east, eu-west, ap-south), each region its own nats-server joined into a supercluster.
 *
 * - shared cluster (faults are healed inside each test): load for one key over four nodes
 *   (overshoot within the derived bound, exact conservation, convergence time); kill -9 of a
 *   node under load; every delta delivered twice plus a full replay; a node restarted
 *   without its data directory;
 * - fresh cluster: kill -9 of one region's nats-server under load;
 * - fresh cluster with gateway proxies: one region cut off for 10 s under load.
 *
 * Figures are printed with a `[figure]` prefix.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { percentile } from '../../support/stats.ts';
import { startSupercluster, type Supercluster } from '../../support/supercluster.ts';
import { sleep, waitFor } from '../../support/wait.ts';
import {
  Fleet,
  REGIONS,
  Target,
  figure,
  readyz,
  startLoad,
  status,
  usage,
  waitAgreed,
  waitConverged,
  type LimiterNode,
  type NodeSpec,
  type Outcome,
  type StatusBody,
} from '../helpers/regions.ts';
import { committedOwn } from '../helpers/node-faults.ts';
import { aggregateStreamName, regionStreamName } from '../../src/replication/subjects.ts';

/** Limit of `burst:*` keys; every other key has a limit high enough never to deny. */
const L = 300;
const RULES = `version: 1
rules:
  - id: burst
    key: "burst:*"
    priority: 10
    limits: [{limit: ${L}, window: 1h}]
  - id: count
    key: "*"
    limits: [{limit: 1000000, window: 1h}]
`;
// Windows of one hour: every admission of a test stays fully inside the window, so the
// global usage must equal the number of admitted requests exactly.

const NODES: NodeSpec[] = [
  { id: 'us-east-1', region: 'us-east' },
  { id: 'us-east-2', region: 'us-east', durability: 'sync' },
  { id: 'eu-west-1', region: 'eu-west' },
  { id: 'ap-south-1', region: 'ap-south' },
];

/** Every node agrees on a warm-up key: replication flows between all of them. */
async function warmUp(fleet: Fleet, key: string): Promise<void> {
  for (const n of fleet.nodes) {
    const res = await fetch(`${n.url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }) });
    expect(res.status).toBe(200);
  }
  await waitConverged(fleet.nodes, key, fleet.nodes.length, { timeoutMs: 30_000 });
}

function summarize(outcomes: readonly Outcome[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const o of outcomes) {
    const m = (out[o.node] ??= {});
    m[o.status] = (m[o.status] ?? 0) + 1;
  }
  return out;
}

/** Prints every node's replication state (diagnostics for a slow convergence). */
async function dumpReplication(fleet: Fleet, what: string): Promise<void> {
  const lines = [`[diagnostics] ${what}`];
  for (const n of fleet.nodes) {
    try {
      const r = (await status(n.url)).replication as unknown as Record<string, unknown>;
      const { peers: _peers, ...rest } = r;
      lines.push(`  ${n.id}: ${JSON.stringify(rest)}`);
    } catch (err) {
      lines.push(`  ${n.id}: ${(err as Error).message}`);
    }
  }
  for (const region of fleet.cluster.regions) {
    if (!region.running) continue;
    let nc: NatsConnection | undefined;
    try {
      nc = await connect({ servers: region.url, timeout: 1000, ...fleet.cluster.adminOptions() });
      const jsm = await nc.jetstreamManager({ timeout: 1000 });
      for (const stream of [regionStreamName(region.name), aggregateStreamName(region.name)]) {
        const si = await jsm.streams.info(stream);
        const parts = [`  ${stream}: last_seq ${si.state.last_seq}`];
        for (const src of si.sources ?? []) parts.push(`source ${src.name} lag ${src.lag} active ${src.active}`);
        for (const n of fleet.nodes.filter((x) => x.region === region.name)) {
          const ci = await jsm.consumers.info(stream, `node-${n.id}`).catch(() => undefined);
          if (ci) parts.push(`node-${n.id} delivered ${ci.delivered.stream_seq} ack_floor ${ci.ack_floor.stream_seq} pending ${ci.num_pending} ack_pending ${ci.num_ack_pending} waiting ${ci.num_waiting}`);
        }
        lines.push(parts.join('; '));
      }
    } catch (err) {
      lines.push(`  ${region.name}: ${(err as Error).message}`);
    } finally {
      await nc?.close();
    }
  }
  console.log(lines.join('\n'));
}

/** Largest p99 lag of `node`'s deltas as measured by the other nodes. */
function lagOf(statuses: readonly StatusBody[], node: string): number {
  let lag = 0;
  for (const s of statuses) for (const p of s.replication.peers) if (p.node === node) lag = Math.max(lag, p.lagP99Ms);
  return lag;
}

describe('replication across three regions (shared supercluster)', () => {
  let sc: Supercluster;
  let fleet: Fleet;
  /** Admitted requests per key across the tests of this block (usage must never move). */
  const admittedByKey = new Map<string, number>();

  beforeAll(async () => {
    const t0 = performance.now();
    // With its nodes: the servers require credentials and every node has its own permissions.
    sc = await startSupercluster({ regions: REGIONS, nodes: NODES });
    figure('supercluster start', `${Math.round(performance.now() - t0)} ms`);
    fleet = await Fleet.start({ cluster: sc, nodes: NODES, rules: RULES });
    await warmUp(fleet, 'warm:shared');
    admittedByKey.set('warm:shared', fleet.nodes.length);
    figure('shared set-up (3 nats-servers, 4 nodes, warm-up)', `${Math.round(performance.now() - t0)} ms`);
  }, 120_000);

  afterAll(async () => {
    await fleet?.stopAll();
    await sc?.stopAll();
  }, 60_000);

  it('keeps the admitted total of one key within limit + bound under concurrent load on every node, and converges exactly', async () => {
    const key = 'burst:load';
    const N = fleet.nodes.length;
    const targets = fleet.nodes.map((n) => new Target(n, key));
    // Estimates as the nodes report them, sampled during the load and after it.
    const estimates: Array<{ node: string; bound: number; nodes: number }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const ss = await Promise.all(fleet.nodes.map((n) => status(n.url)));
        for (const s of ss) for (const o of s.overshoot) if (o.ruleId === 'burst') estimates.push({ node: s.node, bound: o.bound, nodes: o.nodes });
        await sleep(100);
      }
    })();

    const t0 = performance.now();
    const load = startLoad(targets, { concurrency: 8, maxPerTarget: 300 });
    await load.finished;
    expect(load.outcomes.every((o) => o.status === 200 || o.status === 429), JSON.stringify(summarize(load.outcomes))).toBe(true);
    const admitted = load.admitted();
    {
      const lat = load.outcomes.map((o) => o.end - o.start);
      const admits = load.outcomes.filter((o) => o.status === 200).map((o) => o.end - t0).sort((a, b) => a - b);
      figure('load timing', `duration ${(Math.max(...load.outcomes.map((o) => o.end)) - t0).toFixed(0)} ms, latency p50 ${percentile(lat, 50).toFixed(1)} p99 ${percentile(lat, 99).toFixed(1)} ms, admissions at ${admits.filter((_, i) => i % 30 === 0).map((x) => x.toFixed(0)).join(',')}`);
    }
    const lastEnd = Math.max(...load.outcomes.map((o) => o.end));
    const convergedAt = await waitConverged(fleet.nodes, key, admitted, { intervalMs: 5, timeoutMs: 20_000 });
    const convergence = convergedAt - lastEnd;
    admittedByKey.set(key, admitted);

    // Rates are rolled up once a second: sample until the load's admissions show in an estimate
    // and at least 1.5 s (one roll-up after the load, whatever the phase) have passed.
    await waitFor('an overshoot estimate above 0 after the load', () => performance.now() - lastEnd >= 1500 && estimates.some((e) => e.bound > 0), {
      timeoutMs: 10_000,
      intervalMs: 50,
    }).catch(() => undefined); // asserted below
    sampling = false;
    await sampler;

    // The bound from measured figures: rate_j = node j's admissions per second during the
    // admission phase, lag_j = the largest p99 lag of j's deltas seen by any other node.
    const statuses = await Promise.all(fleet.nodes.map((n) => status(n.url)));
    let sum = 0;
    const perNode: Record<string, { admitted: number; ratePerS: number; lagP99Ms: number }> = {};
    for (const n of fleet.nodes) {
      const mine = load.outcomes.filter((o) => o.node === n.id && o.status === 200);
      const rate = mine.length === 0 ? 0 : (mine.length / Math.max(1, Math.max(...mine.map((o) => o.end)) - t0)) * 1000;
      const lag = lagOf(statuses, n.id);
      perNode[n.id] = { admitted: mine.length, ratePerS: Math.round(rate), lagP99Ms: lag };
      sum += (rate * 2 * lag) / 1000;
    }
    const bound = Math.min((N - 1) * L, sum);
    const overshoot = admitted - L;
    figure('load', `${load.outcomes.length} requests, admitted ${admitted} (limit ${L}, overshoot ${overshoot}), derived bound ${bound.toFixed(1)}`);
    figure('load per node', JSON.stringify(perNode));
    figure('convergence after load', `${convergence.toFixed(1)} ms`);
    const maxEstimate = Math.max(0, ...estimates.map((e) => e.bound));
    figure('nodes\' own overshoot estimate (max during/after load)', String(maxEstimate));

    expect(admitted).toBeGreaterThanOrEqual(L);
    // Slack: a batch is applied after its lag is measured, and on a busy 2-core machine the
    // event loop adds its own delay; twice the bound plus 10 covers both.
    expect(overshoot).toBeLessThanOrEqual(Math.min((N - 1) * L, 2 * sum + 10));
    expect(maxEstimate).toBeGreaterThan(0);
    expect(overshoot).toBeLessThanOrEqual(maxEstimate); // the nodes' estimate is an upper bound
    for (const e of estimates) expect(e.bound).toBeLessThanOrEqual((N - 1) * L);
    expect(convergence).toBeLessThanOrEqual(2000);

    // Convergence samples: small concurrent bursts on every node, time from the last answer
    // until every node reports the same (exact) count.
    const samples: number[] = [convergence];
    for (let i = 0; i < 20; i++) {
      const k = `conv:${i}`;
      const l = startLoad(fleet.nodes.map((n) => new Target(n, k)), { concurrency: 2, maxPerTarget: 3 });
      await l.finished;
      expect(l.admitted()).toBe(3 * N);
      const end = Math.max(...l.outcomes.map((o) => o.end));
      samples.push((await waitConverged(fleet.nodes, k, 3 * N, { intervalMs: 5, onSlow: (seen) => dumpReplication(fleet, `${k} slow to converge: ${JSON.stringify(seen)}`) })) - end);
      admittedByKey.set(k, 3 * N);
    }
    figure('convergence (ms) p50/p99/max', `${percentile(samples, 50).toFixed(1)} / ${percentile(samples, 99).toFixed(1)} / ${Math.max(...samples).toFixed(1)} over ${samples.length} samples`);
    const lags = statuses.flatMap((s) => s.replication.peers.map((p) => `${s.node}<-${p.node}: p50 ${p.lagP50Ms} p99 ${p.lagP99Ms}`));
    figure('replication lag (ms)', lags.join('; '));
    expect(percentile(samples, 99)).toBeLessThanOrEqual(2000);
  }, 90_000);

  /** Every key used so far reads exactly its admitted count on every running node. */
  async function expectAllKeysExact(nodes: readonly LimiterNode[], what: string): Promise<void> {
    for (const n of nodes) {
      const seen: Record<string, number> = {};
      const want: Record<string, number> = {};
      for (const [k, v] of admittedByKey) {
        seen[k] = await usage(n.url, k);
        want[k] = v;
      }
      expect(seen, `${what}: usage at ${n.id}`).toEqual(want);
    }
  }

  it('loses nothing admitted and doubles nothing when a node is killed with -9 under load and restarted with its data', async () => {
    const key = 'crash:node';
    const victim = fleet.node('us-east-2'); // durability sync: every 200 was committed before it was sent
    const targets = fleet.nodes.map((n) => new Target(n, key));
    const vt = targets.find((t) => t.node === victim)!;
    const load = startLoad(targets, { concurrency: 4 });
    await waitFor('the victim to admit 100 requests', () => load.admitted((o) => o.node === victim.id) >= 100, { timeoutMs: 30_000 });
    // The victim dies with deltas its stream has not acknowledged: its region's nats-server is
    // frozen for a moment (publishes hang; checks are answered from local state), and the
    // victim is killed with requests in flight (those fail: the client cannot know whether
    // they were counted) while the other nodes stay under load.
    const server = sc.region('us-east');
    let inflight: number;
    server.sigstop();
    try {
      const base = load.admitted((o) => o.node === victim.id);
      await waitFor('the victim to admit 10 more with its nats-server frozen', () => load.admitted((o) => o.node === victim.id) >= base + 10, { timeoutMs: 10_000 });
      vt.pause(); // no new requests; those in flight stay in flight
      inflight = vt.inflight;
      await victim.kill9();
    } finally {
      server.sigcont();
    }
    await waitFor('the victim\'s in-flight requests to fail', () => vt.inflight === 0, { timeoutMs: 10_000 });
    const victimAdmitted = load.admitted((o) => o.node === victim.id);
    const victimFailed = load.outcomes.filter((o) => o.node === victim.id && o.status === 0).length;
    // What the victim committed for this key, read from its data directory while it is down.
    const committed = committedOwn(victim, key, 'count');
    const othersAtKill = load.admitted();
    await waitFor('the others to admit 100 more while the victim is down', () => load.admitted() >= othersAtKill + 100, { timeoutMs: 30_000 });
    await victim.start(); // same node id, arguments and data directory
    await waitFor('the others to admit 100 more after the restart', () => load.admitted() >= othersAtKill + 200, { timeoutMs: 30_000 });
    await load.stop();
    const othersAdmitted = load.admitted((o) => o.node !== victim.id);
    // Nothing after the restart was sent to the victim: its admissions before the kill reach
    // the others through what it had shipped and, after the restart, through its restored
    // cells shipped again. Nothing lost, nothing doubled: the victim's contribution is every
    // admission it answered, plus at most the requests that failed (decided and shipped, but
    // killed before the answer).
    const agreed = await waitAgreed(fleet.nodes, key, { timeoutMs: 30_000 });
    const victimCounted = agreed - othersAdmitted;
    const after = await status(victim.url);
    figure(
      'kill -9 of a node',
      `victim had ${inflight} requests in flight, ${victimAdmitted} admitted, ${victimFailed} failed, ${committed} committed; after restart every node counts ${victimCounted} of the victim's (own batches replayed ${after.replication.ownReplayed}); others admitted ${othersAdmitted}`,
    );
    expect(load.outcomes.filter((o) => o.status !== 200 && o.node !== victim.id), JSON.stringify(summarize(load.outcomes))).toEqual([]);
    // sync durability: every 200 was committed; a failed request may or may not have been.
    expect(committed).toBeGreaterThanOrEqual(victimAdmitted);
    expect(committed).toBeLessThanOrEqual(victimAdmitted + victimFailed);
    expect(victimCounted).toBeGreaterThanOrEqual(committed);
    expect(victimCounted).toBeLessThanOrEqual(victimAdmitted + victimFailed);

    // The restarted node keeps counting from its restored contribution.
    const more = startLoad([new Target(victim, key)], { concurrency: 2, maxPerTarget: 30 });
    await more.finished;
    expect(more.admitted()).toBe(30);
    await waitConverged(fleet.nodes, key, agreed + 30, { timeoutMs: 30_000 });
    admittedByKey.set(key, agreed + 30);
    await expectAllKeysExact(fleet.nodes, 'after the node crash');
  }, 120_000);

  it('counts nothing twice when every delta is delivered twice and when a node replays the whole streams', async () => {
    await expectAllKeysExact(fleet.nodes, 'before the duplicates');
    const before = await Promise.all(fleet.nodes.map((n) => status(n.url)));
    // Publish a copy of every stored delta to its subject, without a msg id: JetStream stores
    // it again, the aggregates source it again, and every node receives it a second time.
    const nc: NatsConnection = await connect({ servers: sc.region('us-east').url, ...sc.adminOptions() });
    const copies = new Map<string, number>(); // subject -> copies
    let total = 0;
    const streamMessages: Record<string, number> = {};
    try {
      const jsm = await nc.jetstreamManager();
      const js = nc.jetstream();
      for (const region of REGIONS) {
        const stream = regionStreamName(region);
        const info = await jsm.streams.info(stream);
        streamMessages[stream] = info.state.messages;
        const seqs = Array.from({ length: info.state.last_seq - info.state.first_seq + 1 }, (_, i) => info.state.first_seq + i);
        for (let i = 0; i < seqs.length; i += 64) {
          const msgs = await Promise.all(seqs.slice(i, i + 64).map((seq) => jsm.streams.getMessage(stream, { seq })));
          const acks = await Promise.all(msgs.map((m) => js.publish(m.subject, m.data)));
          for (const [j, a] of acks.entries()) {
            expect(a.duplicate).toBe(false);
            expect(a.stream).toBe(stream);
            copies.set(msgs[j]!.subject, (copies.get(msgs[j]!.subject) ?? 0) + 1);
            total++;
          }
        }
      }
    } finally {
      await nc.close();
    }
    figure('duplicates', `republished ${total} deltas (${JSON.stringify(streamMessages)} stored before)`);
    expect(total).toBeGreaterThan(100);
    // Each node is handed every copy except those on its own subject.
    const expectedCopies = (n: LimiterNode) => [...copies].filter(([subject]) => !subject.endsWith(`.${n.id}`)).reduce((a, [, c]) => a + c, 0);
    await waitFor(
      'every node to receive every copy',
      async () => {
        const now = await Promise.all(fleet.nodes.map((n) => status(n.url)));
        return now.every((s, i) => s.replication.messages >= before[i]!.replication.messages + expectedCopies(fleet.nodes[i]!));
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    await expectAllKeysExact(fleet.nodes, 'after every delta was delivered twice');

    // Full replay: stop a node, forget its stream positions, start it again. It resumes from
    // sequence 1 of both streams it reads (duplicates included) while already serving from
    // its restored state; no usage may move during or after the replay.
    const node = fleet.node('eu-west-1');
    expect(await node.stop()).toBe(0);
    const db = new Database(join(node.dataDir, 'limiter.db'));
    try {
      expect((db.prepare('SELECT count(*) FROM positions').pluck().get() as number)).toBeGreaterThan(0);
      db.prepare('DELETE FROM positions').run();
    } finally {
      db.close();
    }
    await node.start();
    const jsStreams = ['LIMITER_EU_WEST', 'LIMITER_EU_WEST_AGG'];
    const moved: string[] = [];
    const replayed = await waitFor(
      `${node.id} to replay both streams`,
      async () => {
        const s = await status(node.url);
        // Usage is read while the replay runs, too.
        for (const [k, v] of admittedByKey) {
          const u = await usage(node.url, k);
          if (u !== v) moved.push(`${k}: ${u} (want ${v})`);
        }
        return s.replication.caughtUp && jsStreams.every((st) => (s.replication.streams[st]?.pending ?? 1) === 0) ? s : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const othersThanOwn = expectedCopies(node) * 2; // every delta of the others, original and copy
    figure('full replay', `${node.id} handled ${replayed.replication.messages} replayed deltas (${othersThanOwn} of other nodes in its streams)`);
    expect(moved, 'usage read during the replay').toEqual([]);
    expect(replayed.replication.messages).toBeGreaterThanOrEqual(othersThanOwn);
    await expectAllKeysExact(fleet.nodes, 'after the full replay');
  }, 120_000);

  it('a node restarted without its data directory does not undercount, and its new admissions count everywhere', async () => {
    const key = 'rebuild:key';
    const victim = fleet.node('us-east-1');
    const load = startLoad(fleet.nodes.map((n) => new Target(n, key)), { concurrency: 2, maxPerTarget: 60 });
    await load.finished;
    expect(load.admitted()).toBe(4 * 60);
    const admitted = load.admitted();
    await waitConverged(fleet.nodes, key, admitted, { timeoutMs: 30_000 });
    admittedByKey.set(key, admitted);

    await victim.kill9();
    victim.wipe();
    const t0 = performance.now();
    await victim.start(); // same node id, empty data directory: rebuilds from the streams first
    figure('rebuild from the streams', `${Math.round(performance.now() - t0)} ms to listening`);
    // Read at once, no polling: a node that says it listens must already count everything,
    // its own earlier admissions (60 of this key) included.
    expect(await usage(victim.url, key)).toBe(admitted);
    await expectAllKeysExact([victim], 'right after the rebuild');

    // New admissions of the new incarnation carry new message ids and continue from the
    // rebuilt contribution: the others must count them.
    const more = startLoad([new Target(victim, key)], { concurrency: 2, maxPerTarget: 40 });
    await more.finished;
    expect(more.admitted()).toBe(40);
    await waitConverged(fleet.nodes, key, admitted + 40, { timeoutMs: 30_000 });
    admittedByKey.set(key, admitted + 40);
    const s = await status(victim.url);
    expect(s.replication.shipping.messages).toBeGreaterThan(0);
    expect(s.replication.shipping.publishErrors).toBe(0);
    await expectAllKeysExact(fleet.nodes, 'after the rebuild');
  }, 120_000);
});

/** Starts a fresh supercluster and fleet for a test whose fault would leak into others. */
async function freshFleet(opts: { gatewayProxies?: boolean } = {}): Promise<{ sc: Supercluster; fleet: Fleet }> {
  const sc = await startSupercluster({ regions: REGIONS, nodes: NODES, gatewayProxies: opts.gatewayProxies });
  try {
    const fleet = await Fleet.start({ cluster: sc, nodes: NODES.map((n) => ({ ...n, durability: 'batch' as const })), rules: RULES });
    try {
      await warmUp(fleet, 'warm:fresh');
    } catch (err) {
      await fleet.stopAll();
      throw err;
    }
    return { sc, fleet };
  } catch (err) {
    await sc.stopAll();
    throw err;
  }
}

describe('replication across three regions: a region\'s nats-server killed with -9', () => {
  let sc: Supercluster;
  let fleet: Fleet;
  beforeAll(async () => {
    ({ sc, fleet } = await freshFleet());
  }, 120_000);
  afterAll(async () => {
    await fleet?.stopAll();
    await sc?.stopAll();
  }, 60_000);

  it('keeps answering during the outage, loses nothing acknowledged, reconnects and converges exactly', async () => {
    const key = 'outage:nats';
    const server = sc.region('us-east');
    const local = fleet.nodes.filter((n) => n.region === 'us-east');
    const load = startLoad(fleet.nodes.map((n) => new Target(n, key)), { concurrency: 2, paceMs: 5 });
    await waitFor('load to flow', () => load.admitted() >= 200, { timeoutMs: 30_000 });
    // Deltas JetStream acknowledged to the us-east nodes before the kill must all survive it.
    const acked = (await Promise.all(local.map((n) => status(n.url)))).reduce((a, s) => a + s.replication.shipping.messages, 0);
    await server.kill9();
    const killedAt = performance.now();
    await waitFor(
      'the us-east nodes to report degraded readiness',
      async () => {
        const rs = await Promise.all(local.map((n) => readyz(n.url)));
        return rs.every((r) => r.status === 200 && r.body.ready && r.body.degraded && r.body.reasons.some((x) => /NATS disconnected/.test(x)));
      },
      { timeoutMs: 15_000 },
    );
    const duringFrom = load.outcomes.length;
    await waitFor('4 s of outage', () => performance.now() - killedAt >= 4000, { timeoutMs: 10_000 });
    const during = load.outcomes.slice(duringFrom);
    await server.restart({ readyTimeoutMs: 30_000 });
    const restartedAt = performance.now();
    await waitFor(
      'every node to report ready and not degraded',
      async () => (await Promise.all(fleet.nodes.map((n) => readyz(n.url)))).every((r) => r.status === 200 && r.body.ready && !r.body.degraded),
      { timeoutMs: 30_000 },
    );
    const reconnected = performance.now() - restartedAt;
    await load.stop();
    const admitted = load.admitted();
    const converged = (await waitConverged(fleet.nodes, key, admitted, { timeoutMs: 60_000 })) - restartedAt;
    const byLocal = during.filter((o) => local.some((n) => n.id === o.node));
    figure('nats-server kill -9', `${during.length} checks answered during the outage (${byLocal.length} by us-east nodes), ready ${Math.round(reconnected)} ms and converged ${Math.round(converged)} ms after the restart; admitted ${admitted}`);

    expect(load.outcomes.filter((o) => o.status !== 200), JSON.stringify(summarize(load.outcomes))).toEqual([]);
    expect(byLocal.length).toBeGreaterThan(0);
    const nc = await connect({ servers: server.url, ...sc.adminOptions() });
    try {
      const info = await (await nc.jetstreamManager()).streams.info(regionStreamName('us-east'));
      expect(info.state.messages).toBeGreaterThanOrEqual(acked);
    } finally {
      await nc.close();
    }
  }, 150_000);
});

describe('replication across three regions: a region cut off for 10 s', () => {
  let sc: Supercluster;
  let fleet: Fleet;
  let control: Fleet;
  beforeAll(async () => {
    ({ sc, fleet } = await freshFleet({ gatewayProxies: true }));
    // A node without replication, loaded the same way at the same time: what "normal latency"
    // is on this machine right now.
    control = await Fleet.start({ cluster: sc, nodes: [{ id: 'control-1', region: 'us-east', standalone: true }], rules: RULES });
  }, 120_000);
  afterAll(async () => {
    await control?.stopAll();
    await fleet?.stopAll();
    await sc?.stopAll();
  }, 60_000);

  it('answers with normal latency in every region during the cut and converges exactly after heal', async () => {
    const key = 'partition:key';
    const cutRegion = sc.region('ap-south');
    const isolated = fleet.nodes.find((n) => n.region === 'ap-south')!;
    const controlNode = control.nodes[0]!;
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    const load = startLoad([...fleet.nodes, controlNode].map((n) => new Target(n, key)), { concurrency: 1, paceMs: 10 });
    const replicated = (o: Outcome) => o.node !== controlNode.id;
    await waitFor('load to flow', () => load.admitted(replicated) >= 100, { timeoutMs: 30_000 });
    const baseline = load.outcomes.filter(replicated).map((o) => o.end - o.start);
    const cutFrom = load.outcomes.length;
    loopDelay.enable();
    const cutAt = performance.now();
    cutRegion.cut('blackhole');
    const othersAtCut = load.admitted((o) => replicated(o) && o.node !== isolated.id);
    await waitFor('10 s of partition', () => performance.now() - cutAt >= 10_000, { timeoutMs: 15_000, intervalMs: 100 });
    const seenIsolated = await usage(isolated.url, key);
    const duringCut = load.outcomes.slice(cutFrom);
    loopDelay.disable();
    const othersNow = load.admitted((o) => replicated(o) && o.node !== isolated.id);
    const healedAt = performance.now();
    cutRegion.heal();
    await waitFor('load after heal', () => performance.now() - healedAt >= 1000, { timeoutMs: 5000 });
    await load.stop();
    const admitted = load.admitted(replicated);
    const converged = (await waitConverged(fleet.nodes, key, admitted, { timeoutMs: 60_000 })) - healedAt;

    const latencies = (filter: (o: Outcome) => boolean) => duringCut.filter(filter).map((o) => o.end - o.start);
    const describeLat = (xs: number[]) => `n=${xs.length} p50 ${percentile(xs, 50).toFixed(1)} p99 ${percentile(xs, 99).toFixed(1)} max ${Math.max(...xs).toFixed(1)}`;
    const controlLat = latencies((o) => o.node === controlNode.id);
    const lat: Record<string, string> = { control: describeLat(controlLat) };
    for (const region of REGIONS) lat[region] = describeLat(latencies((o) => replicated(o) && fleet.node(o.node).region === region));
    // p99 under 50 ms; only when the control node itself was slower than 25 ms at p99 (a busy
    // machine) the bound is twice the control's p99.
    const p99Bound = Math.max(50, 2 * percentile(controlLat, 99));
    figure('partition: check latency before the cut (ms)', describeLat(baseline));
    figure('partition: check latency during the cut (ms)', `${JSON.stringify(lat)}; bound ${p99Bound.toFixed(1)}`);
    figure('partition: test process event-loop delay during the cut (ms)', `p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} max ${(loopDelay.max / 1e6).toFixed(1)}`);
    figure('partition', `admitted ${admitted}; ap-south saw ${seenIsolated} at the end of the cut while the others had admitted ${othersNow}; converged ${Math.round(converged)} ms after heal`);

    expect(load.outcomes.filter((o) => o.status !== 200), JSON.stringify(summarize(load.outcomes))).toEqual([]);
    expect(othersNow - othersAtCut).toBeGreaterThan(100);
    // ap-south missed (nearly) everything the other regions admitted during the cut.
    expect(seenIsolated).toBeLessThan(load.admitted((o) => replicated(o) && o.end <= healedAt) - (othersNow - othersAtCut) / 2);
    for (const region of REGIONS) {
      const xs = latencies((o) => replicated(o) && fleet.node(o.node).region === region);
      expect(xs.length, region).toBeGreaterThan(50);
      expect(percentile(xs, 99), `p99 check latency in ${region} during the cut`).toBeLessThan(p99Bound);
    }
  }, 150_000);
});
