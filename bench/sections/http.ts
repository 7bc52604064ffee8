/**
 * Section `http`: POST /v1/check under autocannon (c=50) next to a bare fastify route and
 * fastify + @fastify/rate-limit, the batch endpoint, and the cost of `sync` durability.
 *
 * Every server runs in its own child process (one core for the server, one for autocannon in
 * this process: the fair setup on a 2-core machine); only one is under load at a time, the
 * others idle. The load of each target is split into rounds; in every round each target runs
 * once, back to back (order rotated each round), so drift on a noisy machine hits every target
 * alike. Figures are medians over rounds; comparisons are medians over rounds of the per-round
 * ratio of two targets. All single checks hit one key (the peer rate limiter keys by client
 * IP: one key too).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Child } from '../lib/child.ts';
import { pkgVersion } from '../lib/fixtures.ts';
import { load } from '../lib/load.ts';
import { figure, interleave, measured, paired, r3, type LoadServer, type Measured, type RoundStat, type Target } from '../lib/rounds.ts';
import { ms, si } from '../lib/format.ts';
import { check, type BenchContext, type Check, type Figure, type Section, type SectionResult } from '../lib/types.ts';

const SERVER = 'bench/children/http-server.ts';
const CONNECTIONS = 50;
const BATCH_SIZE = 100;

interface Server extends LoadServer {
  dataDir?: string;
}

async function startServer(ctx: BenchContext, kind: string, args: string[] = []): Promise<Server> {
  let dataDir: string | undefined;
  if (kind === 'ours') {
    dataDir = mkdtempSync(join(tmpdir(), 'bench-http-'));
    args = [...args, '--data', dataDir];
  }
  const child = new Child(SERVER, [kind, ...args], { root: ctx.root, profileDir: ctx.profileDir, profileName: `http-${kind}${args.includes('sync') ? '-sync' : ''}${args.includes('--metrics') ? '-metrics' : ''}${args.includes('--tracing-noop') ? '-tracing' : ''}` });
  try {
    const m = await child.next(60_000);
    return { child, url: `http://127.0.0.1:${m.port as number}`, dataDir };
  } catch (err) {
    await child.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

async function stopServer(s: Server): Promise<void> {
  await s.child.stop();
  if (s.dataDir) rmSync(s.dataDir, { recursive: true, force: true });
}

export const httpSection: Section = {
  id: 'http',
  title: 'HTTP POST /v1/check vs bare fastify and @fastify/rate-limit (autocannon, servers in child processes)',
  estimateS: { full: 105, quick: 35 },
  async run(ctx: BenchContext): Promise<SectionResult> {
    const rounds = ctx.quick ? 3 : 11;
    const roundS = 1; // autocannon runs whole seconds
    const warmS = ctx.quick ? 1 : 2;
    const c1S = ctx.quick ? 1 : 3;
    const single = JSON.stringify({ key: 'user:1' });
    const batch = JSON.stringify({ checks: Array.from({ length: BATCH_SIZE }, (_, i) => ({ key: `user:${i}` })) });

    ctx.log('http: starting servers (bare, bare-headers, fastify-rate-limit, ours batch, ours sync, ours with metrics, ours with the tracing code)');
    const started = await Promise.allSettled([
      startServer(ctx, 'bare'),
      startServer(ctx, 'bare-headers'),
      startServer(ctx, 'fastify-rate-limit'),
      startServer(ctx, 'ours', ['--durability', 'batch']),
      startServer(ctx, 'ours', ['--durability', 'sync']),
      startServer(ctx, 'ours', ['--durability', 'batch', '--metrics']),
      startServer(ctx, 'ours', ['--durability', 'batch', '--tracing-noop']),
    ]);
    const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    try {
      const failed = started.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const [bareS, bareHS, frlS, oursS, syncS, metricsS, tracingS] = servers;
      const mk = (id: string, label: string, server: Server, path: string, body: string, connections = CONNECTIONS): Target => ({ id, label, server, path, body, connections, runs: [], serverCpuS: 0, loaderCpuS: 0 });
      const tBare = mk('bare', 'bare fastify', bareS, '/v1/check', single);
      const tBareH = mk('bareHeaders', 'bare fastify + RateLimit headers', bareHS, '/v1/check', single);
      const tFrl = mk('frl', '@fastify/rate-limit', frlS, '/v1/check', single);
      const tOurs = mk('ours', 'ours', oursS, '/v1/check', single);
      const tBatch = mk('batch', 'ours batch endpoint', oursS, '/v1/check/batch', batch);
      const tSync = mk('sync', 'ours sync', syncS, '/v1/check', single);
      const tMetrics = mk('metrics', 'ours with metrics', metricsS, '/v1/check', single);
      const tTracing = mk('tracingNoop', 'ours with the tracing code, tracing off', tracingS, '/v1/check', single);
      const main = [tBare, tBareH, tFrl, tOurs, tBatch, tSync, tMetrics, tTracing];

      ctx.log(`http: warm-up ${warmS} s per target`);
      for (const t of main) await load({ url: `${t.server.url}${t.path}`, body: t.body, connections: t.connections, durationS: warmS });
      // (warm-up runs are not kept)
      await interleave(ctx, 'http', main, rounds, roundS);
      const tOursC1 = mk('oursC1', 'ours c=1', oursS, '/v1/check', single, 1);
      const tSyncC1 = mk('syncC1', 'ours sync c=1', syncS, '/v1/check', single, 1);
      await interleave(ctx, 'http', [tOursC1, tSyncC1], 1, c1S);

      const bare = measured('bare fastify', tBare);
      const bareH = measured('bare fastify + headers', tBareH);
      const frl = measured('@fastify/rate-limit', tFrl);
      const ours = measured('ours /v1/check', tOurs);
      const oursBatch = measured('ours /v1/check/batch', tBatch);
      const sync = measured('ours sync', tSync);
      const withMetrics = measured('ours with metrics', tMetrics);
      const withTracing = measured('ours with the tracing code, tracing off', tTracing);
      const oursC1 = measured('ours c=1', tOursC1);
      const syncC1 = measured('ours sync c=1', tSyncC1);

      const figures: Figure[] = [
        figure('http.bare.check', `bare fastify POST route, c=${CONNECTIONS}`, bare),
        figure('http.bareHeaders.check', `bare fastify + static RateLimit headers, c=${CONNECTIONS}`, bareH),
        figure('http.fastifyRateLimit.check', `fastify + @fastify/rate-limit, c=${CONNECTIONS}`, frl),
        figure('http.ours.check', `ours POST /v1/check (batch durability), c=${CONNECTIONS}`, ours),
        figure('http.ours.batch', `ours POST /v1/check/batch × ${BATCH_SIZE}, c=${CONNECTIONS} (checks/s)`, oursBatch, 'checks/s', BATCH_SIZE),
        figure('http.oursSync.check', `ours POST /v1/check (sync durability), c=${CONNECTIONS}`, sync),
        figure('http.oursMetrics.check', `ours POST /v1/check with Prometheus metrics (batch durability), c=${CONNECTIONS}`, withMetrics),
        figure('http.oursTracingNoop.check', `ours POST /v1/check with the tracing code on every check, tracing off (OTel no-op tracer), c=${CONNECTIONS}`, withTracing),
        figure('http.ours.checkC1', 'ours POST /v1/check (batch durability), c=1', oursC1),
        figure('http.oursSync.checkC1', 'ours POST /v1/check (sync durability), c=1', syncC1),
      ];
      const rps = (m: Measured) => `${si(m.rps)} req/s`;
      const rpsRatio = (x: RoundStat, y: RoundStat) => x.rps / y.rps;
      const p50Diff = (x: RoundStat, y: RoundStat) => x.p50Ms - y.p50Ms;
      const p99Diff = (x: RoundStat, y: RoundStat) => x.p99Ms - y.p99Ms;
      const checks: Check[] = [
        check('http.ratio.fastifyRateLimit', 'req/s vs fastify + @fastify/rate-limit', rps(ours), rps(frl), paired(ours, frl, rpsRatio), '×', { op: '>=', value: 1.0 }),
        check('http.ratio.bare', 'req/s vs bare fastify', rps(ours), rps(bare), paired(ours, bare, rpsRatio), '×', { op: '>=', value: 0.9 }),
        check('http.ratio.metrics', 'req/s with Prometheus metrics on vs off', rps(withMetrics), rps(ours), paired(withMetrics, ours, rpsRatio), '×', { op: '>=', value: 0.97 }),
        check('http.ratio.tracingOff', 'req/s with the tracing code on every check, tracing off, vs without it', rps(withTracing), rps(ours), paired(withTracing, ours, rpsRatio), '×', { op: '>=', value: 0.98 }),
        check('http.p99.bare', 'p99 vs bare fastify p99', `p99 ${ms(ours.p99Ms)}`, `p99 ${ms(bare.p99Ms)}`, paired(ours, bare, p99Diff), 'ms', { op: '<=', value: 1 }),
        check(
          'http.ratio.batch',
          `batch checks/s (${BATCH_SIZE} per request) vs single-check req/s`,
          `${si(oursBatch.rps * BATCH_SIZE)} checks/s`,
          rps(ours),
          paired(oursBatch, ours, rpsRatio) * BATCH_SIZE,
          '×',
          { op: '>=', value: 10 },
        ),
        check('http.ratio.bareHeaders', 'req/s vs bare fastify sending the same RateLimit headers', rps(ours), rps(bareH), paired(ours, bareH, rpsRatio), '×'),
        check('http.ratio.bareHeadersVsBare', 'bare fastify: with RateLimit headers vs without', rps(bareH), rps(bare), paired(bareH, bare, rpsRatio), '×'),
        check('http.cpu.bare', 'server CPU per request vs bare fastify', `${ours.cpuUsPerReq.toFixed(1)} µs`, `${bare.cpuUsPerReq.toFixed(1)} µs`, ours.cpuUsPerReq / bare.cpuUsPerReq, '×'),
        check('http.cpu.fastifyRateLimit', 'server CPU per request vs @fastify/rate-limit', `${ours.cpuUsPerReq.toFixed(1)} µs`, `${frl.cpuUsPerReq.toFixed(1)} µs`, ours.cpuUsPerReq / frl.cpuUsPerReq, '×'),
        check('http.sync.p50', `sync vs batch durability, p50 at c=${CONNECTIONS}`, `p50 ${ms(sync.p50Ms)}`, `p50 ${ms(ours.p50Ms)}`, paired(sync, ours, p50Diff), 'ms'),
        check('http.sync.p99', `sync vs batch durability, p99 at c=${CONNECTIONS}`, `p99 ${ms(sync.p99Ms)}`, `p99 ${ms(ours.p99Ms)}`, paired(sync, ours, p99Diff), 'ms'),
        check('http.sync.rps', `sync vs batch durability, req/s at c=${CONNECTIONS}`, rps(sync), rps(ours), paired(sync, ours, rpsRatio), '×'),
        check('http.sync.p50c1', 'sync vs batch durability, p50 at c=1 (a commit per request)', `p50 ${ms(syncC1.p50Ms)}`, `p50 ${ms(oursC1.p50Ms)}`, paired(syncC1, oursC1, p50Diff), 'ms'),
        check('http.sync.p99c1', 'sync vs batch durability, p99 at c=1', `p99 ${ms(syncC1.p99Ms)}`, `p99 ${ms(oursC1.p99Ms)}`, paired(syncC1, oursC1, p99Diff), 'ms'),
      ];
      return {
        figures,
        checks,
        notes: [
          `autocannon ${pkgVersion(ctx.root, 'autocannon')} in this process, ${CONNECTIONS} connections, pipelining 1. Each target runs ${rounds} rounds of ${roundS} s (${r3(rounds * roundS)} s in all) after a ${warmS} s warm-up; in each round every target runs once, back to back, in an order rotated each round, so drift on a noisy machine hits them alike. Every server is in its own child process; only one is under load at a time.`,
          'A figure is the median of its rounds (min/max beside it; p50/p99/max over every response of every round, sub-ms precision). A comparison is the median over rounds of the per-round ratio (or p99 difference) of two targets measured back to back in that round. Server CPU per request (from /proc) is the least noise-sensitive view of the cost.',
          `Peers: fastify ${pkgVersion(ctx.root, 'fastify')} POST route with the same body/response JSON schemas and a Decision-shaped body; the same sending two static headers as long as our RateLimit and RateLimit-Policy headers (a reference: what those bytes alone cost, informational); the same with @fastify/rate-limit ${pkgVersion(ctx.root, '@fastify/rate-limit')} (memory store, max 1e9 per 60 s, keyed by client IP). Ours: buildApp + Engine (catch-all sliding window, limit 2^31−1 per 1 m) + SqliteStore/Persistence wired like src/node.ts; every check admitted, one key.`,
          `Batch: ${BATCH_SIZE} checks of ${BATCH_SIZE} distinct keys per request; checks/s = requests/s × ${BATCH_SIZE}.`,
          'Tracing off: the node without --otlp-endpoint does not wrap the limiter at all (no tracing instruction on a check); the tracing row measures more than that, the check span wrapper on every check around OpenTelemetry\'s no-op tracer (no SDK registered): the cost of the tracing code when it is present and off.',
          `Durability: batch flushes every 50 ms; sync awaits a group commit (synchronous=FULL; every request decided in one event-loop turn shares one transaction) before answering, through buildApp's commit hook. c=1 rows (${c1S} s each, one round): one commit per request.`,
        ],
      };
    } finally {
      await Promise.all(servers.map(stopServer));
    }
  },
};
