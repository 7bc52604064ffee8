/**
 * Section `client`: the ways an application asks the limiter, side by side in one run.
 *
 * 1. Automatic batching. A node in a child process (bench/children/node.ts, a catch-all rule
 *    that always admits); in this process 256 concurrent callers, each awaiting its check then
 *    making the next (its own key), through one LimiterClient with batching on, and through one
 *    with `batch: false` (one HTTP request per check, the same keep-alive pool of 16
 *    connections). Figures: checks/s and each check's latency (p50, p99) as its caller saw it.
 *    Target: batched ≥ 5 × the checks/s of one request per check, p99 no worse.
 * 2. One in flight. A single caller awaiting each check: the embedded limiter (`createLimiter`,
 *    SQLite state in a temp directory, in this process), the HTTP client against the node, and
 *    rate-limiter-flexible's RateLimiterRedis (ioredis, a local redis-server without
 *    persistence; Debian's package installed when missing). Target: embedded ≥ 100 × Redis.
 *
 * Rounds are interleaved (A, B, B, A, …); figures are medians of rounds.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { LimiterClient } from '../../src/client/index.ts';
import { createLimiter } from '../../src/embedded.ts';
import { percentile, median } from '../../support/stats.ts';
import { startRedisServer } from '../../support/redis-server.ts';
import { Child } from '../lib/child.ts';
import { HIGH_LIMIT, catchAllRulesYaml, pkgVersion } from '../lib/fixtures.ts';
import { ms, ratio, si } from '../lib/format.ts';
import { check, type BenchContext, type Figure, type Section, type SectionResult } from '../lib/types.ts';

const CALLERS = 256;

interface Round {
  rate: number;
  p50: number;
  p99: number;
}

/**
 * `callers` loops, each awaiting `once(i)` again and again for `durationMs`. Reading the clock
 * costs about as much as an embedded check, so a loop reads it once per block of `block` calls
 * and times the block's first call only (latency percentiles are over those samples); `block`
 * is 1 for anything slower than a few microseconds a call (see `blockFor`).
 */
async function drive(callers: number, durationMs: number, once: (i: number) => Promise<unknown>, block = 1): Promise<Round> {
  const lat: number[] = [];
  let n = 0;
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: callers }, async (_, i) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await once(i);
        lat.push(performance.now() - t0);
        for (let k = 1; k < block; k++) await once(i);
        n += block;
      }
    }),
  );
  const took = performance.now() - start;
  lat.sort((a, b) => a - b);
  return { rate: n / (took / 1000), p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

/** Calls per clock reading: enough that a block takes about 20 µs (1 for calls slower than that). */
function blockFor(warmUp: Round, callers: number): number {
  const perCallUs = (1e6 * callers) / warmUp.rate;
  return Math.max(1, Math.min(64, Math.floor(20 / perCallUs)));
}

interface Side {
  id: string;
  label: string;
  callers: number;
  once: (i: number) => Promise<unknown>;
  rounds: Round[];
  /** Calls per clock reading (from the warm-up). */
  block?: number;
}

async function interleaved(ctx: BenchContext, sides: Side[], rounds: number, roundMs: number): Promise<void> {
  for (const s of sides) s.block = blockFor(await drive(s.callers, Math.min(500, roundMs), s.once), s.callers); // warm-up
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const s of order) {
      const m = await drive(s.callers, roundMs, s.once, s.block);
      s.rounds.push(m);
      ctx.log(`client: ${s.label} round ${r + 1}: ${si(m.rate)} checks/s, p99 ${ms(m.p99)}`);
    }
  }
}

function fig(s: Side): Figure {
  const rate = median(s.rounds.map((r) => r.rate));
  return {
    id: `client.${s.id}`,
    label: s.label,
    value: Math.round(rate),
    unit: 'checks/s',
    detail: { p50_ms: median(s.rounds.map((r) => r.p50)), p99_ms: median(s.rounds.map((r) => r.p99)), callers: s.callers },
    rounds: s.rounds.map((r) => Math.round(r.rate)),
  };
}

export const clientSection: Section = {
  id: 'client',
  title: 'Client: automatic batching, embedded limiter vs HTTP client vs RateLimiterRedis',
  estimateS: { full: 90, quick: 20 },
  async run(ctx: BenchContext): Promise<SectionResult> {
    const rounds = ctx.quick ? 1 : 3;
    const roundMs = ctx.quick ? 2000 : 5000;
    const dir = mkdtempSync(join(tmpdir(), 'bench-client-'));
    const rulesFile = join(dir, 'rules.yaml');
    writeFileSync(rulesFile, catchAllRulesYaml(HIGH_LIMIT));
    const node = new Child('bench/children/node.ts', ['--rules', rulesFile, '--data', join(dir, 'node'), '--port', '0', '--log-level', 'warn'], {
      root: ctx.root,
      profileDir: ctx.profileDir,
      profileName: 'client-node',
    });
    const closers: (() => Promise<unknown>)[] = [async () => node.stop(10_000)];
    try {
      const url = (await node.next(60_000)).url as string;
      const batched = new LimiterClient({ url, timeoutMs: 10_000 });
      const single = new LimiterClient({ url, timeoutMs: 10_000, batch: false });
      closers.push(() => batched.close(), () => single.close());
      const keys = Array.from({ length: CALLERS }, (_, i) => `user:${i}`);

      ctx.log(`client: ${CALLERS} concurrent callers, batched vs one request per check`);
      const sBatched: Side = { id: 'batched', label: `HTTP client, ${CALLERS} callers, batched`, callers: CALLERS, once: (i) => batched.check({ key: keys[i] }), rounds: [] };
      const sSingle: Side = { id: 'unbatched', label: `HTTP client, ${CALLERS} callers, one request per check`, callers: CALLERS, once: (i) => single.check({ key: keys[i] }), rounds: [] };
      await interleaved(ctx, [sBatched, sSingle], rounds, roundMs);

      ctx.log('client: one in flight: embedded vs HTTP client vs RateLimiterRedis');
      const embedded = await createLimiter({ rules: rulesFile, data: join(dir, 'embedded'), nodeId: 'bench-embedded' });
      const embeddedNoIds = await createLimiter({ rules: rulesFile, data: join(dir, 'embedded-noids'), nodeId: 'bench-embedded-2', refunds: false });
      closers.push(() => embedded.close(), () => embeddedNoIds.close());
      const redis = await startRedisServer(ctx.log);
      closers.push(() => redis.stop());
      const ioredis = new Redis({ port: redis.port, host: '127.0.0.1', enableAutoPipelining: false, lazyConnect: false });
      closers.push(async () => ioredis.quit());
      const rl = new RateLimiterRedis({ storeClient: ioredis, points: HIGH_LIMIT, duration: 60, keyPrefix: 'bench' });
      const sEmbedded: Side = { id: 'embedded.1', label: 'embedded check(), 1 in flight', callers: 1, once: () => embedded.check({ key: 'user:1' }), rounds: [] };
      const sEmbeddedNoIds: Side = { id: 'embedded.noids.1', label: 'embedded check(), refunds: false, 1 in flight', callers: 1, once: () => embeddedNoIds.check({ key: 'user:1' }), rounds: [] };
      const sHttp: Side = { id: 'http.1', label: 'HTTP client, 1 in flight', callers: 1, once: () => single.check({ key: 'user:1' }), rounds: [] };
      const sRedis: Side = { id: 'redis.1', label: `RateLimiterRedis ${pkgVersion(ctx.root, 'rate-limiter-flexible')}, 1 in flight`, callers: 1, once: () => rl.consume('user:1'), rounds: [] };
      await interleaved(ctx, [sEmbedded, sEmbeddedNoIds, sHttp, sRedis], rounds, roundMs);

      const figures = [sBatched, sSingle, sEmbedded, sEmbeddedNoIds, sHttp, sRedis].map(fig);
      const [fb, fs, fe, fn, fh, fr] = figures;
      const p99 = (f: Figure) => f.detail!.p99_ms;
      return {
        figures,
        checks: [
          check('client.batching.rate', `${CALLERS} callers: batched / one request per check`, `${si(fb.value)}/s`, `${si(fs.value)}/s`, fb.value / fs.value, '×', { op: '>=', value: 5 }),
          check('client.batching.p99', `${CALLERS} callers: p99 batched − p99 one request per check`, ms(p99(fb)), ms(p99(fs)), p99(fb) - p99(fs), 'ms', { op: '<=', value: 0 }),
          check('client.embedded.vsRedis', 'embedded check() / RateLimiterRedis, 1 in flight', `${si(fe.value)}/s`, `${si(fr.value)}/s`, fe.value / fr.value, '×', { op: '>=', value: 100 }),
          check('client.embedded.noids.vsRedis', 'embedded check() without admission ids / RateLimiterRedis, 1 in flight', `${si(fn.value)}/s`, `${si(fr.value)}/s`, fn.value / fr.value, '×'),
          check('client.http.vsRedis', 'HTTP client / RateLimiterRedis, 1 in flight', `${si(fh.value)}/s`, `${si(fr.value)}/s`, fh.value / fr.value, '×'),
        ],
        notes: [
          `${rounds} interleaved round(s) of ${roundMs / 1000} s per side; figures are medians of rounds; latency is what each caller awaited. A caller reads the clock once per block of calls (sized in the warm-up so a block takes ~20 µs: 1 call for the HTTP client and Redis, more for the embedded limiter, whose check costs about what a clock reading does) and times the block's first call.`,
          'The node runs in a child process; the callers, the embedded limiter and the Redis client run in the bench process; redis-server runs without persistence.',
          `Ratios: batching ${ratio(fb.value / fs.value)}, embedded vs Redis ${ratio(fe.value / fr.value)}.`,
        ],
      };
    } finally {
      for (const c of closers.reverse()) await c().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
