/**
 * Section `replication`: three real nats-servers joined into a supercluster (one per region,
 * support/supercluster.ts, the generated layout), and limiter nodes as child processes
 * (bench/children/node.ts runs src/node.ts `startNode`, nodes.ts). Four parts, run in this order
 * (a later node with a new data directory rebuilds from the streams, so the part that floods them
 * runs last):
 *
 * 1. Convergence (convergence.ts): one node per region; probes of a fresh key checked on one
 *    node until GET /v1/usage shows it on the two others, at idle and under ~1000 checks/s, with
 *    the nodes' own per-peer lag beside it.
 * 2. Limits held across regions (limits.ts), on the same three nodes: round robin, bursts, a
 *    skewed trace, and the overshoot bound each node exports right after a burst.
 * 3. HTTP cost (http-cost.ts): POST /v1/check against a node without --nats and one with --nats.
 * 4. Shipping (shipping.ts, bench/children/replication-ship.ts): key-updates per second through
 *    the shipper, bytes per key-update, and bytes per second at 10 000 checks/s.
 *
 * This module starts the supercluster, runs the parts and turns their results into figures,
 * checks and notes. Every target is printed beside the figure of the previous release (0.1.0: a
 * 50 ms flush timer cut the batches, shipped through a SQLite outbox), measured the same way on
 * this machine.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { max, median, percentileSorted } from '../../../support/stats.ts';
import { startSupercluster, type Supercluster } from '../../../support/supercluster.ts';
import { pkgVersion } from '../../lib/fixtures.ts';
import { closeIdle } from '../../lib/http-client.ts';
import { figure, paired, type Measured, type RoundStat } from '../../lib/rounds.ts';
import { ms, round, si } from '../../lib/format.ts';
import { check, type BenchContext, type Check, type Figure, type Section, type SectionResult } from '../../lib/types.ts';
import { convergence, LOAD_RATE } from './convergence.ts';
import { CONNECTIONS, httpCost } from './http-cost.ts';
import { TRIES } from './limits.ts';
import { BURST_LIMIT, FLUSH_MS, LOAD_KEYS, RR_LIMITS, rulesYaml } from './nodes.ts';
import { shipping } from './shipping.ts';

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

const pct = (sorted: number[], p: number) => percentileSorted(sorted, p);

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

      const ship = await shipping(ctx, sc, tmp);

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
