/**
 * A real Prometheus (Debian's prometheus) scrapes the three local regions (real node processes
 * replicating through a real nats-server supercluster that requires credentials), and what it
 * stored is read back through its HTTP query API: checks, replication lag and the overshoot
 * bound are there for every region. The same Prometheus loads docs/alerts.yml, and every
 * metric docs/alerts.yml and docs/grafana-dashboard.json query is one it scraped.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrometheus, type PrometheusServer } from '../../support/prometheus.ts';
import { startSupercluster, type Supercluster } from '../../support/supercluster.ts';
import { waitFor } from '../../support/wait.ts';
import { Fleet, REGIONS, startLoad, Target, type NodeSpec } from '../helpers/regions.ts';

const RULES = `version: 1
rules:
  - id: burst
    key: "burst:*"
    limits: [{limit: 50, window: 1h}]
  - id: count
    key: "*"
    limits: [{limit: 1000000, window: 1h}]
`;

const NODES: NodeSpec[] = REGIONS.map((region) => ({ id: `${region}-1`, region }));
const DOCS = resolve(import.meta.dirname, '..', '..', 'docs');

/** Metric names a PromQL text uses (histogram series by their base name's _bucket). */
function metricNames(text: string): string[] {
  return [...new Set([...text.matchAll(/\b((?:regionlimit|process|nodejs)_[a-z0-9_]+|up)\b/g)].map((m) => m[1]))];
}

describe('Prometheus scraping three regions', () => {
  let sc: Supercluster | undefined;
  let fleet: Fleet | undefined;
  let prom: PrometheusServer | undefined;

  beforeAll(async () => {
    sc = await startSupercluster({ regions: REGIONS, nodes: NODES });
    fleet = await Fleet.start({ cluster: sc, nodes: NODES, rules: RULES });
    prom = await startPrometheus({
      targets: fleet.nodes.map((n) => ({ metricsUrl: `${n.url}/metrics`, node: n.id, region: n.region })),
      files: { 'alerts.yml': readFileSync(join(DOCS, 'alerts.yml'), 'utf8') },
      ruleFiles: ['alerts.yml'],
    });
  }, 120_000);

  afterAll(async () => {
    await prom?.stop();
    await fleet?.stopAll();
    await sc?.stopAll();
  }, 60_000);

  it('reads checks, replication lag and the overshoot bound of every region back from Prometheus', async () => {
    const p = prom!;
    const f = fleet!;
    const load = startLoad(
      f.nodes.flatMap((n) => [new Target(n, 'burst:shared'), new Target(n, `count:${n.region}`)]),
      { paceMs: 20 },
    );
    const byRegion = async (promql: string) => {
      const rows = await p.query(promql);
      return new Map(rows.map((r) => [r.metric.region, r.value]));
    };
    const allRegions = (m: Map<string, number>, ok: (v: number) => boolean) => REGIONS.every((r) => m.has(r) && ok(m.get(r)!));
    try {
      // Every node is up as a target.
      await waitFor('all three targets up', async () => allRegions(await byRegion('up{job="regionlimit"}'), (v) => v === 1), { timeoutMs: 30_000, describe: () => p.logs() });
      // Checks allowed in every region, and denials of the shared burst key once it is spent.
      await waitFor('allowed checks of every region in Prometheus', async () => allRegions(await byRegion('sum by (region) (regionlimit_checks_total{outcome="allowed"})'), (v) => v > 0), { timeoutMs: 30_000 });
      await waitFor('denied checks of the burst rule in Prometheus', async () => (await p.query('sum(regionlimit_checks_total{rule="burst",outcome="denied"})'))[0]?.value > 0, { timeoutMs: 30_000 });
      // Each region's node reports the lag of both of its peers.
      await waitFor('p99 lag of two peers per region', async () => allRegions(await byRegion('count by (region) (regionlimit_replication_lag_seconds{quantile="0.99"})'), (v) => v === 2), { timeoutMs: 30_000 });
      const lag = await p.query('regionlimit_replication_lag_seconds{quantile="0.99"}');
      for (const s of lag) {
        expect(s.value).toBeGreaterThanOrEqual(0);
        expect(s.value).toBeLessThan(5); // local loopback lag: milliseconds, in seconds
        expect(s.metric.peer).not.toBe(s.metric.node);
      }
      // The overshoot bound of every policy in every region; the burst limit is 50.
      await waitFor('overshoot bounds of both policies per region', async () => allRegions(await byRegion('count by (region) (regionlimit_overshoot_bound)'), (v) => v === 2), { timeoutMs: 30_000 });
      const limits = await p.query('regionlimit_limit{rule="burst"}');
      expect(limits.map((s) => s.value)).toEqual([50, 50, 50]);
      // Staleness of live peers stays small while they heartbeat.
      const stale = await byRegion('max by (region) (regionlimit_peer_staleness_seconds)');
      expect(allRegions(stale, (v) => v < 5)).toBe(true);
    } finally {
      await load.stop();
    }
  }, 180_000);

  it('loads docs/alerts.yml, and every metric it and docs/grafana-dashboard.json query is scraped', async () => {
    const p = prom!;
    const groups = await p.rules();
    expect(groups.map((g) => g.name)).toEqual(['regionlimit']);
    await waitFor('every rule evaluated without error', async () => (await p.rules())[0].rules.every((r) => r.health === 'ok'), { timeoutMs: 15_000 });
    const used = [...metricNames(readFileSync(join(DOCS, 'alerts.yml'), 'utf8')), ...metricNames(JSON.stringify(JSON.parse(readFileSync(join(DOCS, 'grafana-dashboard.json'), 'utf8'))))];
    expect(used.length).toBeGreaterThan(20);
    const scraped = new Set(await p.metricNames());
    expect([...new Set(used)].filter((n) => !scraped.has(n)).sort()).toEqual([]);
    // The node labels are the targets' own (no exported_node duplicates).
    const info = await p.query('regionlimit_node_info');
    expect(info.map((s) => `${s.metric.region}/${s.metric.node}`).sort()).toEqual(NODES.map((n) => `${n.region}/${n.id}`).sort());
    expect(info.every((s) => s.metric.exported_node === undefined)).toBe(true);
  }, 60_000);
});
