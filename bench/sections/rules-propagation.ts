/**
 * Section `rules`: how long a rules change takes to be in force everywhere. Three local regions
 * (three nats-servers in a supercluster, each node its own NATS user), one limiter process per
 * region; each round a `PUT /v1/rules` on the next node in turn, then every node is polled
 * (every 2 ms) until it answers the new version. The figure is the time until the last node
 * has it, per change; target: p99 ≤ 1 s.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seedFile } from '../../regions/auth.ts';
import { startNodeProcess, type NodeProcess } from '../../support/node-process.ts';
import { measurePropagation } from '../../support/rules-admin.ts';
import { max, median, percentileSorted } from '../../support/stats.ts';
import { startSupercluster } from '../../support/supercluster.ts';
import { round } from '../lib/format.ts';
import { check, type BenchContext, type Section, type SectionResult } from '../lib/types.ts';

const TOKEN = 'bench-rules-admin-token-0123';
const REGIONS = ['us-east', 'eu-west', 'ap-south'];
const doc = (limit: number) => ({ version: 1, rules: [{ id: 'api', key: 'k:*', limits: [{ limit, window: '1h' }] }, { id: 'other', key: '*', limits: [{ limit: 1_000_000, window: '1h' }] }] });

async function run(ctx: BenchContext): Promise<SectionResult> {
  const rounds = ctx.quick ? 10 : 100;
  const nodes = REGIONS.map((region) => ({ id: `${region}-1`, region }));
  const root = mkdtempSync(join(tmpdir(), 'bench-rules-'));
  const sc = await startSupercluster({ nodes });
  const procs: NodeProcess[] = [];
  try {
    const rulesFile = join(root, 'rules.json');
    writeFileSync(rulesFile, JSON.stringify(doc(100)));
    ctx.log('rules: starting one node per region');
    const started = await Promise.allSettled(
      nodes.map((n) =>
        startNodeProcess([
          '--node-id', n.id, '--region', n.region, '--regions', REGIONS.join(','), '--nats', sc.region(n.region).url,
          '--nats-nkey-file', seedFile(sc.secretsDir!, n.id), '--rules', rulesFile, '--data', join(root, n.id),
        ], { LIMITER_ADMIN_TOKEN: TOKEN }),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') procs.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    const urls = procs.map((p) => p.url);
    // One change first: connections and consumers warm.
    await measurePropagation(urls, TOKEN, 1, () => doc(99));
    ctx.log(`rules: ${rounds} changes, each on the next node in turn`);
    const times = await measurePropagation(urls, TOKEN, rounds, (i) => doc(10 + i));
    const sorted = [...times].sort((a, b) => a - b);
    const p99 = percentileSorted(sorted, 99);
    return {
      figures: [
        {
          id: 'rules.propagation',
          label: 'rules change in force on every node (3 regions)',
          value: round(median(times), 1),
          unit: 'ms',
          detail: { p50_ms: round(percentileSorted(sorted, 50), 1), p99_ms: round(p99, 1), max_ms: round(max(times), 1), changes: rounds },
          rounds: times.map((t) => round(t, 1)),
        },
      ],
      checks: [check('rules.propagation.p99', 'rules change: p99 time until every node enforces it', `${round(p99, 1)} ms`, '', round(p99, 1), 'ms', { op: '<=', value: 1000 })],
      notes: [
        'One limiter process and one nats-server per region on this machine (gateway links over loopback): the figure is the replication path and the apply, not a WAN.',
        'Time from sending the PUT to the moment the last node answers GET /v1/rules with the new version (a node installs a version in its engine before it reports it), polled every 2 ms.',
      ],
    };
  } finally {
    await Promise.allSettled(procs.map((p) => p.stop()));
    await sc.stopAll();
    rmSync(root, { recursive: true, force: true });
  }
}

export const rulesPropagationSection: Section = { id: 'rules-propagation', title: 'rules changes: propagation to every region', estimateS: { full: 40, quick: 25 }, run };
