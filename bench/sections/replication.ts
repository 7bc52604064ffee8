/**
 * Section `replication`: three real nats-servers joined into a supercluster (one per region,
 * support/supercluster.ts, the generated layout), and limiter nodes as child processes
 * (bench/children/node.ts runs src/node.ts `startNode`). Four parts, run in this order (a later
 * node with a new data directory rebuilds from the streams, so the part that floods them runs
 * last):
 *
 * 1. Convergence: one node per region. Probes, one at a time: a check of a fresh key on one
 *    node, then GET /v1/usage of that key on the two others every ~1 ms until it shows; the
 *    time from the check's answer to the first poll answer that shows it (an upper bound: the
 *    poll resolution is reported). First at idle, then under a steady ~1000 checks/s spread over
 *    the three nodes and 1000 keys. The nodes' own view, per peer lag sentAt → applied
 *    (GET /v1/status), is reported beside it.
 * 2. Limits held across regions, on the same three nodes: sequential round robin (one client,
 *    awaited checks, node by node) on a fresh key with limit 10 and 100, and a burst of 5 × L
 *    checks sent at once spread over the three nodes; admitted counts per try, and the
 *    overshoot bound each node exports right after the burst next to the overshoot seen.
 * 3. HTTP cost: POST /v1/check (autocannon c=50, interleaved rounds as in the `http` section)
 *    against a node without --nats and a node with --nats (same rules, same process wiring),
 *    one key and 1000 keys, on keys the other parts did not touch.
 * 4. Shipping (bench/children/replication-ship.ts): key-updates per second through the shipper
 *    (drain → encode → JetStream publish → ack) with many distinct keys per round, bytes per
 *    key-update, and bytes per second at 10 000 checks/s over 1000 keys.
 *
 * Every target is printed beside the figure of the previous release (0.1.0: a 50 ms flush timer
 * cut the batches, shipped through a SQLite outbox), measured the same way on this machine.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { max, median, percentileSorted } from '../../support/stats.ts';
import { startSupercluster, type Supercluster } from '../../support/supercluster.ts';
import { sleep } from '../../support/wait.ts';
import { Child, runChild } from '../lib/child.ts';
import { HIGH_LIMIT, makeKeys, pkgVersion } from '../lib/fixtures.ts';
import { closeIdle, request } from '../lib/http-client.ts';
import { load } from '../lib/load.ts';
import { figure, interleave, measured, paired, type LoadServer, type Measured, type RoundStat, type Target } from '../lib/rounds.ts';
import { ms, round, si } from '../lib/format.ts';
import { check, type BenchContext, type Check, type Figure, type Section, type SectionResult } from '../lib/types.ts';

const NODE = 'bench/children/node.ts';
const SHIP = 'bench/children/replication-ship.ts';
const FLUSH_MS = 50;
const CONNECTIONS = 50;
const LOAD_KEYS = 1000;
const LOAD_RATE = 1000;
/** Keys per flush in the capacity runs; the first one carries the target. */
const SHIP_SIZES = [10_000, 1000];
const PROBE_TIMEOUT_MS = 5000;
/** Tries of each limit experiment (fresh key each). */
const TRIES = 3;
const RR_LIMITS = [10, 100];
const BURST_LIMIT = 100;

/** The previous release's figures (docs/PERFORMANCE.md, 0.1.0; the same probes on this machine). */
const BEFORE = {
  e2eP50Ms: 30.8,
  e2eP99Ms: 71.5,
  rr: { 10: [12, 12, 15], 100: [102, 104, 102] } as Record<number, number[]>,
  burst100: [134, 221, 300],
  shipPerS: 203_000,
  bytesPerUpdate: 16.5,
  http1: 0.95,
  http1000: 0.94,
};

/** Rules of the bench nodes: limits 10 and 100 per hour for the limit experiments, and a catch-all that admits everything. */
function rulesYaml(): string {
  return [
    'version: 1',
    'slotsPerWindow: 10',
    'rules:',
    ...RR_LIMITS.map((l) => `  - { id: l${l}, key: "l${l}:*", limits: [{ limit: ${l}, window: 1h, algorithm: fixed-window }] }`),
    `  - { id: off${BURST_LIMIT}, key: "off${BURST_LIMIT}:*", nearLimitSharing: false, limits: [{ limit: ${BURST_LIMIT}, window: 1h, algorithm: fixed-window }] }`,
    '  - id: bench',
    '    key: "*"',
    '    limits:',
    `      - { limit: ${HIGH_LIMIT}, window: 1m }`,
    '',
  ].join('\n');
}

interface NodeProc extends LoadServer {
  name: string;
  region: string;
  dataDir: string;
}

interface PeerStatus {
  node: string;
  messages: number;
  cells: number;
  lagP50Ms: number;
  lagP99Ms: number;
}

interface ReplicationStatus {
  shipping: { messages: number; cells: number; publishErrors: number; heartbeats: number; priority: number; rounds: number; largestRound: number };
  messages: number;
  applied: number;
  refused: number;
  peers: PeerStatus[];
}

interface OvershootStatus {
  ruleId: string;
  bound: number;
  model: number;
  observed: number;
}

interface ShipCapacity {
  keysPerCycle: number;
  cycles: number;
  cells: number;
  messages: number;
  payloadBytes: number;
  wireBytes: number;
  shipMs: number;
  cellsPerS: number;
  cycleP50Ms: number;
  cycleMaxMs: number;
  drainMs: number;
  publishMs: number;
  decideMs: number;
}

interface ShipResult {
  capacity: ShipCapacity[];
  steady?: { seconds: number; checks: number; checksPerS: number; cells: number; messages: number; payloadBytes: number; wireBytes: number };
  publishErrors: number;
}

/** Deterministic xorshift32 in [0, 1): every run makes the same choices. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

async function startNodeChild(ctx: BenchContext, name: string, region: string, flags: string[]): Promise<NodeProc> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-repl-node-'));
  const args = ['--node-id', name, '--region', region, '--data', dataDir, '--port', '0', '--flush-interval', `${FLUSH_MS}ms`, '--log-level', 'warn', ...flags];
  const child = new Child(NODE, args, { root: ctx.root, profileDir: ctx.profileDir, profileName: `replication-${name}` });
  try {
    const m = await child.next(120_000);
    return { name, region, child, url: m.url as string, dataDir };
  } catch (err) {
    await child.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

async function stopNodes(nodes: NodeProc[]): Promise<void> {
  closeIdle();
  await Promise.all(
    nodes.map(async (n) => {
      await n.child.stop(10_000);
      rmSync(n.dataDir, { recursive: true, force: true });
    }),
  );
}

/** Start every node at once; if one fails, stop the others. */
async function startNodes(ctx: BenchContext, specs: { name: string; region: string; flags: string[] }[]): Promise<NodeProc[]> {
  const started = await Promise.allSettled(specs.map((s) => startNodeChild(ctx, s.name, s.region, s.flags)));
  const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await stopNodes(ok);
    throw (failed as PromiseRejectedResult).reason;
  }
  return ok;
}

async function usage(url: string, key: string): Promise<number> {
  const r = await request<{ limits: { usage: number }[] }>('GET', `${url}/v1/usage?key=${encodeURIComponent(key)}`);
  if (r.status !== 200) throw new Error(`GET /v1/usage on ${url}: HTTP ${r.status}`);
  return r.body.limits[0]?.usage ?? 0;
}

async function checkKey(url: string, key: string): Promise<void> {
  if (!(await admitted(url, key))) throw new Error(`POST /v1/check on ${url}: ${key} denied`);
}

/** One check: true when admitted (200), false when denied (429). */
async function admitted(url: string, key: string): Promise<boolean> {
  const r = await request<{ allowed: boolean }>('POST', `${url}/v1/check`, { key });
  if (r.status !== 200 && r.status !== 429) throw new Error(`POST /v1/check on ${url}: HTTP ${r.status}`);
  return r.body.allowed;
}

/** Sequential round robin: `n` awaited checks of `key`, node after node. Returns how many were admitted. */
async function roundRobin(nodes: NodeProc[], key: string, n: number): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) if (await admitted(nodes[i % nodes.length].url, key)) ok++;
  return ok;
}

/** One check: whether it was admitted and the denial's code. */
async function decision(url: string, key: string): Promise<{ allowed: boolean; code?: string }> {
  const r = await request<{ allowed: boolean; code?: string }>('POST', `${url}/v1/check`, { key });
  if (r.status !== 200 && r.status !== 429) throw new Error(`POST /v1/check on ${url}: HTTP ${r.status}`);
  return r.body;
}

/**
 * The cost of near-limit sharing on a skewed trace: 2 · L checks of one fresh key, 90 % to the
 * first node and 5 % to each other, 8 at a time. An exact global counter admits exactly L of
 * them; `missed` is what sharing denied of those (L − admitted, when positive); `waits` the
 * checks still answered SHARE_WAIT after waiting `--share-wait`; `longestWaitMs` the busy node's
 * slowest check (a check near the limit waits inside the request for its share to grow).
 */
async function skewTrace(nodes: NodeProc[], key: string, limit: number): Promise<{ admitted: number; missed: number; waits: number; longestWaitMs: number }> {
  const n = 2 * limit;
  const targets = Array.from({ length: n }, (_, i) => (i % 20 === 0 ? nodes[1] : i % 20 === 10 ? nodes[2] : nodes[0]));
  let next = 0;
  let admittedCount = 0;
  let waits = 0;
  let longest = 0;
  const worker = async () => {
    while (next < n) {
      const node = targets[next++];
      const sent = performance.now();
      const d = await decision(node.url, key);
      if (d.allowed) admittedCount++;
      if (d.code === 'SHARE_WAIT') waits++;
      if (node === nodes[0]) longest = Math.max(longest, performance.now() - sent);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { admitted: admittedCount, missed: Math.max(0, limit - admittedCount), waits, longestWaitMs: round(longest, 1) };
}

/** `n` checks of `key` sent at once, spread over the nodes. Returns how many were admitted. */
async function burst(nodes: NodeProc[], key: string, n: number): Promise<number> {
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => admitted(nodes[i % nodes.length].url, key)));
  return answers.filter(Boolean).length;
}

async function overshootStatus(n: NodeProc, ruleId: string): Promise<OvershootStatus> {
  const r = await request<{ overshoot: OvershootStatus[] }>('GET', `${n.url}/v1/status`);
  const o = r.body.overshoot.find((x) => x.ruleId === ruleId);
  if (!o) throw new Error(`GET /v1/status on ${n.name}: no overshoot entry for ${ruleId}`);
  return o;
}

/** The limit experiments of part 2, on the convergence part's nodes. */
async function limitExperiments(ctx: BenchContext, nodes: NodeProc[]) {
  const rr: Record<number, number[]> = {};
  for (const l of RR_LIMITS) {
    rr[l] = [];
    for (let t = 0; t < TRIES; t++) rr[l].push(await roundRobin(nodes, `l${l}:rr:${t}`, 2 * l));
    ctx.log(`replication: round robin, limit ${l}: admitted ${rr[l].join(', ')}`);
  }
  const bursts10: number[] = [];
  const burstsOff: number[] = [];
  const skews: Awaited<ReturnType<typeof skewTrace>>[] = [];
  for (let t = 0; t < TRIES; t++) {
    bursts10.push(await burst(nodes, `l10:burst:${t}`, 50));
    burstsOff.push(await burst(nodes, `off${BURST_LIMIT}:burst:${t}`, 5 * BURST_LIMIT));
    skews.push(await skewTrace(nodes, `l${BURST_LIMIT}:skew:${t}`, BURST_LIMIT));
  }
  ctx.log(`replication: burst of 50, limit 10: admitted ${bursts10.join(', ')}; limit ${BURST_LIMIT} without sharing: ${burstsOff.join(', ')}`);
  ctx.log(`replication: skewed trace (90 % on one node), limit ${BURST_LIMIT}: ${skews.map((x) => `admitted ${x.admitted}, SHARE_WAIT ${x.waits}, longest wait ${x.longestWaitMs} ms`).join('; ')}`);
  const bursts: { admitted: number; bounds: number[]; observed: number[] }[] = [];
  for (let t = 0; t < TRIES; t++) {
    const key = `l${BURST_LIMIT}:burst:${t}`;
    const got = await burst(nodes, key, 5 * BURST_LIMIT);
    // Right after the burst has converged everywhere: what each node exports.
    await waitForUsage(nodes, key, got);
    const st = await Promise.all(nodes.map((n) => overshootStatus(n, `l${BURST_LIMIT}`)));
    bursts.push({ admitted: got, bounds: st.map((s) => s.bound), observed: st.map((s) => s.observed) });
    ctx.log(`replication: burst of ${5 * BURST_LIMIT}, limit ${BURST_LIMIT}: admitted ${got}; exported bounds ${st.map((s) => s.bound).join(', ')}`);
    await sleep(200);
  }
  return { rr, bursts, bursts10, burstsOff, skews };
}

async function waitForUsage(nodes: NodeProc[], key: string, want: number): Promise<void> {
  const deadline = performance.now() + PROBE_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const u = await Promise.all(nodes.map((n) => usage(n.url, key)));
    if (u.every((x) => x === want)) return;
    await sleep(2);
  }
  throw new Error(`${key}: the nodes did not converge on ${want} within ${PROBE_TIMEOUT_MS} ms`);
}

interface ProbeSample {
  /**
   * The estimate: when the target's server handled the first poll showing the key, minus when
   * the origin's server handled the check, each taken at the middle of its request's round
   * trip; the arrival is put at the middle between the last poll not showing it and the first
   * showing it (uniform within the poll period), so the poll period adds no bias.
   */
  estMs: number;
  /** Check answered on the origin → first poll answer on the target that shows the key (an upper bound). */
  ms: number;
  /** Check answered → send of the last poll that did not show it yet (a lower bound). */
  lowerMs: number;
}

/**
 * One probe: count a fresh key on `origin`, then poll every target until its usage shows the
 * key. Resolves per target with the sample, or null after PROBE_TIMEOUT_MS.
 */
async function probe(origin: NodeProc, targets: NodeProc[], key: string): Promise<(ProbeSample | null)[]> {
  const c0 = performance.now();
  await checkKey(origin.url, key);
  const t0 = performance.now();
  const checkMid = (c0 + t0) / 2;
  return Promise.all(
    targets.map(async (t) => {
      let lastMiss = t0;
      let lastMissMid = checkMid;
      for (;;) {
        const sent = performance.now();
        const u = await usage(t.url, key);
        const got = performance.now();
        if (u > 0) return { estMs: (lastMissMid + (sent + got) / 2) / 2 - checkMid, ms: got - t0, lowerMs: lastMiss - t0 };
        if (got - t0 > PROBE_TIMEOUT_MS) return null;
        lastMiss = sent;
        lastMissMid = (sent + got) / 2;
        await sleep(1);
      }
    }),
  );
}

/**
 * ~`rate` checks/s over `keys`, spread round-robin over the nodes, paced in 10 ms ticks,
 * until `stop()`. At most 256 requests in flight (a slower answer skips, and is counted).
 */
function steadyLoad(nodes: NodeProc[], keys: string[], rate: number) {
  const rand = prng(0x5bd1e995);
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let skipped = 0;
  let inFlight = 0;
  const start = performance.now();
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    for (; sent + skipped < due; ) {
      if (inFlight >= 256) {
        skipped++;
        continue;
      }
      const node = nodes[sent % nodes.length];
      sent++;
      inFlight++;
      request('POST', `${node.url}/v1/check`, { key: keys[Math.floor(rand() * keys.length)] }).then(
        (r) => {
          inFlight--;
          if (r.status === 200) ok++;
          else errors++;
        },
        () => {
          inFlight--;
          errors++;
        },
      );
    }
  }, 10);
  return {
    async stop() {
      clearInterval(timer);
      const seconds = (performance.now() - start) / 1000;
      for (let i = 0; i < 500 && inFlight > 0; i++) await sleep(10);
      return { seconds, sent, ok, errors, skipped, perS: ok / seconds };
    },
  };
}

async function replicationStatus(n: NodeProc): Promise<ReplicationStatus> {
  const r = await request<{ replication: ReplicationStatus | null }>('GET', `${n.url}/v1/status`);
  if (r.status !== 200 || !r.body.replication) throw new Error(`GET /v1/status on ${n.name}: HTTP ${r.status}, replication ${JSON.stringify(r.body.replication)}`);
  return r.body.replication;
}

const pct = (sorted: number[], p: number) => percentileSorted(sorted, p);

async function convergence(ctx: BenchContext, sc: Supercluster, rulesFile: string) {
  const regions = sc.regions.map((r) => r.name);
  const durationS = ctx.quick ? 5 : 20;
  ctx.log(`replication: starting one node per region (${regions.join(', ')})`);
  const nodes = await startNodes(
    ctx,
    sc.regions.map((r) => ({ name: `conv-${r.name}`, region: r.name, flags: ['--nats', r.url, '--regions', regions.join(','), '--rules', rulesFile] })),
  );
  try {
    // Every region's aggregate must be sourcing before measuring: wait until a probe converges everywhere.
    const w0 = performance.now();
    for (let i = 0; ; i++) {
      const r = await probe(nodes[i % nodes.length], nodes.filter((_, j) => j !== i % nodes.length), `warm:${i}`);
      if (r.every((s) => s !== null)) break;
      if (performance.now() - w0 > 60_000) throw new Error('replication did not converge within 60 s of start-up');
    }
    const rand = prng(0x2545f491);
    let probes = 0;
    const probeFor = async (seconds: number, tag: string) => {
      const samples: ProbeSample[] = [];
      let timeouts = 0;
      const end = performance.now() + seconds * 1000;
      while (performance.now() < end) {
        const o = probes % nodes.length;
        const r = await probe(nodes[o], nodes.filter((_, j) => j !== o), `probe:${tag}:${probes}`);
        probes++;
        for (const s of r) if (s) samples.push(s);
        else timeouts++;
        // A random pause (0–FLUSH_MS) so probes land at every phase of the nodes' timers.
        await sleep(rand() * FLUSH_MS);
      }
      return { samples, timeouts };
    };
    ctx.log(`replication: convergence probes for ${durationS / 2} s at idle`);
    const idle = await probeFor(durationS / 2, 'idle');
    const keys = makeKeys(LOAD_KEYS);
    const loadGen = steadyLoad(nodes, keys, LOAD_RATE);
    await sleep(1000);
    ctx.log(`replication: convergence probes for ${durationS} s under ~${LOAD_RATE} checks/s over ${LOAD_KEYS} keys`);
    const loaded = await probeFor(durationS, 'load');
    const loadStats = await loadGen.stop();
    const statuses = await Promise.all(nodes.map(replicationStatus));
    ctx.log('replication: limits held across regions (round robin, bursts)');
    const limits = await limitExperiments(ctx, nodes);
    return { nodes: nodes.map((n) => n.name), samples: loaded.samples, timeouts: loaded.timeouts, idle, probes, loadStats, statuses, durationS, limits };
  } finally {
    await stopNodes(nodes);
  }
}

async function httpCost(ctx: BenchContext, sc: Supercluster, rulesFile: string) {
  const rounds = ctx.quick ? 3 : 9;
  const roundS = 1;
  const warmS = ctx.quick ? 1 : 2;
  const regions = sc.regions.map((r) => r.name);
  const home = sc.regions[0];
  ctx.log('replication: starting a node without --nats and one with --nats');
  const [alone, repl] = await startNodes(ctx, [
    { name: 'http-alone', region: home.name, flags: ['--rules', rulesFile] },
    { name: 'http-nats', region: home.name, flags: ['--rules', rulesFile, '--nats', home.url, '--regions', regions.join(',')] },
  ]);
  try {
    // Keys the convergence part did not touch: the --nats node rebuilt that part's state from the
    // streams, and a key holding other nodes' cells costs more to count and to flush (the flush
    // rewrites every node's cells of a changed key), which is not the cost of shipping.
    const single = JSON.stringify({ key: 'http:1' });
    const many = Array.from({ length: LOAD_KEYS }, (_, i) => JSON.stringify({ key: `http:${i}` }));
    // The nats-servers' CPU is counted for every target: they share the machine with the node.
    const natsPids = sc.regions.map((r) => r.pid);
    const mk = (id: string, label: string, server: LoadServer, bodies?: string[]): Target => ({
      id,
      label,
      server,
      path: '/v1/check',
      body: single,
      bodies,
      connections: CONNECTIONS,
      runs: [],
      serverCpuS: 0,
      loaderCpuS: 0,
      extraCpu: { name: 'natsServers', pids: natsPids, seconds: 0 },
    });
    const targets = [
      mk('alone1', 'without --nats, 1 key', alone),
      mk('nats1', 'with --nats, 1 key', repl),
      mk('alone1000', `without --nats, ${LOAD_KEYS} keys`, alone, many),
      mk('nats1000', `with --nats, ${LOAD_KEYS} keys`, repl, many),
    ];
    ctx.log(`replication: HTTP warm-up ${warmS} s per target`);
    for (const t of targets) await load({ url: `${t.server.url}${t.path}`, body: t.body, bodies: t.bodies, connections: t.connections, durationS: warmS });
    await interleave(ctx, 'replication', targets, rounds, roundS);
    const m = targets.map((t) => measured(t.label, t));
    const status = await replicationStatus(repl);
    return { m, rounds, roundS, warmS, status };
  } finally {
    await stopNodes([alone, repl]);
  }
}

export const replicationSection: Section = {
  id: 'replication',
  title: 'Replication: convergence across three regions, key-updates shipped per second and bytes, HTTP cost of --nats',
  estimateS: { full: 100, quick: 45 },
  async run(ctx: BenchContext): Promise<SectionResult> {
    const tmp = mkdtempSync(join(tmpdir(), 'bench-repl-'));
    const rulesFile = join(tmp, 'rules.yaml');
    writeFileSync(rulesFile, rulesYaml());
    let sc: Supercluster | undefined;
    try {
      ctx.log('replication: starting three nats-servers joined into a supercluster');
      sc = await startSupercluster();
      const regions = sc.regions.map((r) => r.name);

      const conv = await convergence(ctx, sc, rulesFile);
      const cost = await httpCost(ctx, sc, rulesFile);

      const capacityS = ctx.quick ? 1 : 2.5;
      const steadyS = ctx.quick ? 2 : 5;
      ctx.log(`replication: shipping capacity (${SHIP_SIZES.join(', ')} keys per flush) and bytes at 10 000 checks/s`);
      const ship = await runChild<ShipResult>(
        SHIP,
        [sc.regions[0].url, regions[0], regions.join(','), tmp, String(capacityS), String(steadyS), SHIP_SIZES.join(',')],
        { root: ctx.root, profileDir: ctx.profileDir, profileName: 'replication-ship' },
        120_000,
      );

      // ---- figures ----
      const figures: Figure[] = [];
      const checks: Check[] = [];
      const e2e = conv.samples.map((s) => s.estMs).sort((a, b) => a - b);
      const upper = conv.samples.map((s) => s.ms).sort((a, b) => a - b);
      const gaps = conv.samples.map((s) => s.ms - s.lowerMs).sort((a, b) => a - b);
      const e2eP50 = pct(e2e, 50);
      const e2eP99 = pct(e2e, 99);
      const pairs = conv.statuses.flatMap((s) => s.peers);
      const lagP50 = median(pairs.map((p) => p.lagP50Ms));
      const lagP99 = max(pairs.map((p) => p.lagP99Ms));
      const idle = conv.idle.samples.map((x) => x.estMs).sort((a, b) => a - b);
      const idleUpper = conv.idle.samples.map((x) => x.ms).sort((a, b) => a - b);
      const idleP99 = pct(idle, 99);
      figures.push(
        {
          id: 'replication.convergence.idle',
          label: 'end to end at idle: check answered on one node → visible in GET /v1/usage on another (p50)',
          value: round(pct(idle, 50), 2),
          unit: 'ms',
          detail: {
            p99Ms: round(idleP99, 2),
            maxMs: round(idle[idle.length - 1] ?? NaN, 2),
            upperBoundP50Ms: round(pct(idleUpper, 50), 2),
            upperBoundP99Ms: round(pct(idleUpper, 99), 2),
            samples: idle.length,
            timeouts: conv.idle.timeouts,
          },
        },
        {
          id: 'replication.convergence.e2e',
          label: `end to end: check answered on one node → visible in GET /v1/usage on another (p50; ${conv.nodes.length} regions, ~${LOAD_RATE} checks/s)`,
          value: round(e2eP50, 2),
          unit: 'ms',
          detail: {
            p90Ms: round(pct(e2e, 90), 2),
            p99Ms: round(e2eP99, 2),
            maxMs: round(e2e[e2e.length - 1] ?? NaN, 2),
            samples: e2e.length,
            probes: conv.probes,
            timeouts: conv.timeouts,
            upperBoundP50Ms: round(pct(upper, 50), 2),
            upperBoundP99Ms: round(pct(upper, 99), 2),
            pollResolutionP50Ms: round(pct(gaps, 50), 2),
          },
        },
        {
          id: 'replication.convergence.lag',
          label: 'replicator lag sentAt → applied, per peer (GET /v1/status; median of the 6 pairs\u2019 p50, max of their p99)',
          value: round(lagP50, 2),
          unit: 'ms',
          detail: { p99Ms: round(lagP99, 2), minP50Ms: round(Math.min(...pairs.map((p) => p.lagP50Ms)), 2), pairs: pairs.length, messages: pairs.reduce((a, p) => a + p.messages, 0) },
        },
        {
          id: 'replication.convergence.load',
          label: `background load during the probes (POST /v1/check over ${LOAD_KEYS} keys, round-robin over the nodes)`,
          value: Math.round(conv.loadStats.perS),
          unit: 'checks/s',
          detail: {
            seconds: round(conv.loadStats.seconds, 1),
            errors: conv.loadStats.errors,
            skipped: conv.loadStats.skipped,
            published: conv.statuses.reduce((a, s) => a + s.shipping.messages, 0),
            publishErrors: conv.statuses.reduce((a, s) => a + s.shipping.publishErrors, 0),
            largestRound: max(conv.statuses.map((s) => s.shipping.largestRound)),
          },
        },
      );
      const before = (x: string) => `0.1.0: ${x}`;
      checks.push(
        check('replication.convergence.p50', `convergence p50 at ~${LOAD_RATE} checks/s, end to end`, `p50 ${ms(e2eP50)}`, before(ms(BEFORE.e2eP50Ms)), e2eP50, 'ms at p50', { op: '<=', value: 5 }),
        check('replication.convergence.p99', `convergence p99 at ~${LOAD_RATE} checks/s, end to end`, `p99 ${ms(e2eP99)}`, before(ms(BEFORE.e2eP99Ms)), e2eP99, 'ms at p99', { op: '<=', value: 25 }),
        check('replication.convergence.idleP99', 'convergence p99 at idle, end to end', `p99 ${ms(idleP99)}`, '', idleP99, 'ms at p99', { op: '<=', value: 10 }),
        check('replication.lag.p99', 'replicator lag sentAt → applied p99 (worst peer pair)', `p99 ${ms(lagP99)}`, '', lagP99, 'ms at p99'),
        check('replication.lag.p50', 'replicator lag sentAt → applied p50 (median pair)', `p50 ${ms(lagP50)}`, '', lagP50, 'ms at p50'),
      );

      const lim = conv.limits;
      for (const l of RR_LIMITS) {
        const worst = max(lim.rr[l]);
        checks.push(
          check(`replication.roundRobin.${l}`, `sequential round robin over the 3 regions, limit ${l}: most admitted of ${TRIES} tries`, lim.rr[l].join(', '), before(BEFORE.rr[l].join(', ')), worst, 'admitted', { op: '<=', value: l === 10 ? 11 : 102 }),
        );
      }
      const burstMax = max(lim.bursts.map((b) => b.admitted));
      checks.push(
        check(
          'replication.burst',
          `burst of ${5 * BURST_LIMIT} checks at once over the 3 regions, limit ${BURST_LIMIT}: most admitted of ${TRIES} tries`,
          lim.bursts.map((b) => b.admitted).join(', '),
          before(BEFORE.burst100.join(', ')),
          burstMax,
          'admitted',
          { op: '<=', value: 1.1 * BURST_LIMIT },
        ),
        check('replication.burst10', `burst of 50 checks at once over the 3 regions, limit 10: most admitted of ${TRIES} tries`, lim.bursts10.join(', '), before('28–30'), max(lim.bursts10), 'admitted', { op: '<=', value: 12 }),
        check('replication.burst.off', `the same burst of ${5 * BURST_LIMIT}, limit ${BURST_LIMIT}, rule with nearLimitSharing: false`, lim.burstsOff.join(', '), '', max(lim.burstsOff), 'admitted'),
        check(
          'replication.skew.missed',
          `skewed trace (2 · L checks, 90 % on one node, 8 at a time), limit ${BURST_LIMIT}: share of the L an exact counter admits that sharing denied (worst try)`,
          lim.skews.map((x) => `${x.admitted} admitted, ${x.waits} SHARE_WAIT`).join('; '),
          '',
          round((100 * max(lim.skews.map((x) => x.missed))) / BURST_LIMIT, 1),
          '%',
        ),
        check('replication.skew.wait', 'skewed trace: the busy node\'s slowest check (waiting inside the request for its share to grow)', lim.skews.map((x) => ms(x.longestWaitMs)).join(', '), '', max(lim.skews.map((x) => x.longestWaitMs)), 'ms'),
        check(
          'replication.burst.boundHonest',
          'overshoot bound exported right after each burst, lowest over nodes − overshoot seen (≥ 0: never below)',
          lim.bursts.map((b) => `${Math.min(...b.bounds)} ≥ ${Math.max(0, b.admitted - BURST_LIMIT)}`).join('; '),
          '',
          Math.min(...lim.bursts.map((b) => Math.min(...b.bounds) - Math.max(0, b.admitted - BURST_LIMIT))),
          'admissions',
          { op: '>=', value: 0 },
        ),
      );

      const [alone1, nats1, alone1000, nats1000] = cost.m;
      const rpsRatio = (x: RoundStat, y: RoundStat) => x.rps / y.rps;
      const rps = (x: Measured) => `${si(x.rps)} req/s`;
      figures.push(
        figure('replication.http.alone1', `POST /v1/check without --nats, 1 key, c=${CONNECTIONS}`, alone1),
        figure('replication.http.nats1', `POST /v1/check with --nats, 1 key, c=${CONNECTIONS}`, nats1),
        figure('replication.http.alone1000', `POST /v1/check without --nats, ${LOAD_KEYS} keys, c=${CONNECTIONS}`, alone1000),
        figure('replication.http.nats1000', `POST /v1/check with --nats, ${LOAD_KEYS} keys, c=${CONNECTIONS}`, nats1000),
      );
      checks.push(
        check('replication.http.ratio1', `req/s with --nats / without, 1 key (0.1.0: ${BEFORE.http1}×)`, rps(nats1), rps(alone1), paired(nats1, alone1, rpsRatio), '×', { op: '>=', value: 0.9 }),
        check('replication.http.ratio1000', `req/s with --nats / without, ${LOAD_KEYS} keys (0.1.0: ${BEFORE.http1000}×)`, rps(nats1000), rps(alone1000), paired(nats1000, alone1000, rpsRatio), '×', { op: '>=', value: 0.9 }),
        check('replication.http.cpu1', 'server CPU per request with --nats / without, 1 key', `${nats1.cpuUsPerReq.toFixed(1)} µs`, `${alone1.cpuUsPerReq.toFixed(1)} µs`, nats1.cpuUsPerReq / alone1.cpuUsPerReq, '×'),
        check('replication.http.cpu1000', `server CPU per request with --nats / without, ${LOAD_KEYS} keys`, `${nats1000.cpuUsPerReq.toFixed(1)} µs`, `${alone1000.cpuUsPerReq.toFixed(1)} µs`, nats1000.cpuUsPerReq / alone1000.cpuUsPerReq, '×'),
      );

      for (const [i, c] of ship.capacity.entries()) {
        const per = (x: number) => round(x / c.cycles, 2);
        figures.push({
          id: `replication.ship.${c.keysPerCycle}`,
          label: `key-updates shipped/s, ${si(c.keysPerCycle)} keys per round (drain → encode → JetStream publish → ack)`,
          value: Math.round(c.cellsPerS),
          unit: 'key-updates/s',
          detail: {
            rounds: c.cycles,
            messages: c.messages,
            roundP50Ms: round(c.cycleP50Ms, 2),
            roundMaxMs: round(c.cycleMaxMs, 2),
            // per round, ms:
            drainMsPerRound: per(c.drainMs),
            publishAckMsPerRound: per(c.publishMs),
            decideMsPerRound: per(c.decideMs),
          },
        });
        if (i === 0) {
          checks.push(
            check(
              'replication.ship.rate',
              `key-updates shipped per second, ${si(c.keysPerCycle)} distinct keys per round`,
              `${si(c.cellsPerS)}/s`,
              before(`${si(BEFORE.shipPerS)}/s`),
              Math.round(c.cellsPerS),
              'key-updates/s',
              { op: '>=', value: 200_000 },
            ),
            check('replication.ship.bytes', 'payload bytes per key-update (msgpack v1, 4096 cells per message max)', `${round(c.payloadBytes / c.cells, 2)} B`, before(`${BEFORE.bytesPerUpdate} B`), c.payloadBytes / c.cells, 'B', { op: '<=', value: 40 }),
          );
        }
      }
      if (ship.steady) {
        const s = ship.steady;
        figures.push({
          id: 'replication.ship.steady',
          label: `bytes shipped per second by one node at ${si(s.checksPerS)} checks/s over ${LOAD_KEYS} keys (payload)`,
          value: Math.round(s.payloadBytes / s.seconds),
          unit: 'B/s',
          detail: {
            checksPerS: Math.round(s.checksPerS),
            keyUpdatesPerS: Math.round(s.cells / s.seconds),
            messagesPerS: round(s.messages / s.seconds, 1),
            bytesPerKeyUpdate: round(s.payloadBytes / s.cells, 2),
            withHeadersBytesPerS: Math.round(s.wireBytes / s.seconds),
          },
        });
        checks.push(check('replication.ship.steadyBytes', `bytes/s per node at 10 k checks/s over ${LOAD_KEYS} keys (payload)`, `${si(s.payloadBytes / s.seconds)} B/s`, '', s.payloadBytes / s.seconds / 1000, 'kB/s'));
      }
      if (ship.publishErrors > 0) throw new Error(`shipping: ${ship.publishErrors} publish errors`);

      return {
        figures,
        checks,
        notes: [
          `nats-server ${natsVersion(sc)} × 3 (one per region: ${regions.join(', ')}), joined by gateways into a supercluster, JetStream file storage, the layout of regions/topology.ts; nats ${pkgVersion(ctx.root, 'nats')} client. Nodes are src/node.ts startNode() in child processes, --flush-interval ${FLUSH_MS}ms (SQLite only: shipping does not wait for it), rules: limits 10 and 100 per hour (fixed window) for the limit experiments, a catch-all sliding window (limit 2^31−1 per 1 m) for everything else. Everything (servers, nodes, load generator) shares this machine’s cores.`,
          `Convergence: ${conv.probes} probes, ${conv.durationS / 2} s at idle then ${conv.durationS} s under load, one at a time, rotating the origin node; each counts a fresh key on its origin and polls GET /v1/usage on the two other regions’ nodes every ~1 ms. A sample is the time from when the origin handled the check to when the target showed the key, each request placed at the middle of its round trip and the arrival at the middle between the last poll not showing the key and the first showing it; the upper bound (check answered → first poll answer showing it) is in the detail, with the poll resolution. It includes the shipper’s publish, JetStream sourcing into the other regions’ aggregate streams, delivery to their consumers and the merge. The replicator lag (sentAt = when the batch was cut → merged on the peer) is each node’s own view; each node keeps its last 512 samples per peer (heartbeats included).`,
          `Limits: one client, keep-alive HTTP (at most 64 sockets per node). Round robin: ${RR_LIMITS.map((l) => 2 * l).join(' and ')} awaited checks of one fresh key, node after node. Burst: ${5 * BURST_LIMIT} checks of one fresh key sent at once, check i to node i mod 3; after the nodes agree on the count, each node’s GET /v1/status overshoot bound for the rule is read.`,
          `HTTP cost: autocannon ${pkgVersion(ctx.root, 'autocannon')} c=${CONNECTIONS}, ${cost.rounds} interleaved rounds of ${cost.roundS} s after a ${cost.warmS} s warm-up per target (as the http section). Both nodes are the same child (startNode), fresh data directories, in the same region, one with --nats (all three regions; it rebuilt the convergence part's state from the streams before serving). With 1 key a flush ships one cell (coalescing); with ${LOAD_KEYS} keys (bodies in turn) a flush ships a few hundred. The keys (http:<n>) are not those of the convergence part, so both nodes count them from the same empty state. natsServersCpuPct: the three nats-servers' CPU during the target's rounds (they share the 2 cores with the node and autocannon). The --nats node published ${cost.status.shipping.messages} messages, ${cost.status.shipping.publishErrors} errors.`,
          `Shipping: one node wired like src/node.ts (Engine, Persistence over a SqliteStore with its own timer, Replicator and its Shipper, JetStreamTransport) against the ${regions[0]} server; the two other regions’ aggregates source every message. A round counts N distinct keys in one turn (decide(), not timed as shipping) and waits until the shipper has had every cell acknowledged (drain, encode into messages of ≤ 4096 cells, publish them together, acks); rounds do not overlap. Bytes/s: 10 000 checks/s through decide() over ${LOAD_KEYS} uniformly random keys, the shipper coalescing on its own; "with headers" adds the Nats-Msg-Id header (nats.js stats, protocol lines excluded).`,
        ],
      };
    } finally {
      closeIdle();
      await sc?.stopAll();
      rmSync(tmp, { recursive: true, force: true });
    }
  },
};

function natsVersion(sc: Supercluster): string {
  const m = /nats-server: v?([\d.]+)/i.exec(sc.regions[0].logs()) ?? /Version:\s+([\d.]+)/.exec(sc.regions[0].logs());
  return m?.[1] ?? '?';
}
