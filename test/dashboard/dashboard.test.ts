/**
 * The live convergence dashboard in a real headless Chromium against three regions (real node
 * processes, real nats-server supercluster with credentials and gateway proxies to cut a
 * region): the page loads without console errors, the chart of a key under load draws points
 * from all three regions, the three views come apart while a region is cut off and come
 * together after it heals; a screenshot is kept in .tmp/artifacts/dashboard.png.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSupercluster, type Supercluster } from '../../support/supercluster.ts';
import { waitFor } from '../../support/wait.ts';
import { launchChromium, openPage } from '../helpers/browser.ts';
import { Fleet, REGIONS, startLoad, Target, usage, type NodeSpec } from '../helpers/regions.ts';

const RULES = `version: 1
rules:
  - id: conv
    key: "conv:*"
    limits: [{limit: 1000000, window: 1h}]
`;
const NODES: NodeSpec[] = REGIONS.map((region) => ({ id: `${region}-1`, region }));
const KEY = 'conv:dashboard';
export const ARTIFACTS = join(import.meta.dirname, '..', '..', '.tmp', 'artifacts');

/** The last sampled usage of the key per node id, as the page holds it. */
async function lastViews(page: Page): Promise<Record<string, number | null>> {
  const series = (await page.evaluate(() => (globalThis as unknown as { dashboard: { usage(): Record<string, Array<number | null>> } }).dashboard.usage())) as Record<string, Array<number | null>>;
  return Object.fromEntries(Object.entries(series).map(([node, v]) => [node, v.length > 0 ? v[v.length - 1] : null]));
}

describe('GET /dashboard in Chromium, three regions', () => {
  let sc: Supercluster | undefined;
  let fleet: Fleet | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    sc = await startSupercluster({ regions: REGIONS, nodes: NODES, gatewayProxies: true });
    fleet = await Fleet.start({ cluster: sc, nodes: NODES, rules: RULES });
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await fleet?.stopAll();
    await sc?.stopAll();
  }, 60_000);

  it('draws every region\'s view of a key under load, apart while a region is cut off and together after it heals, without console errors', async () => {
    const f = fleet!;
    const { page, errors } = await openPage(browser!);
    const urls = f.nodes.map((n) => n.url).join(',');
    await page.goto(`${f.nodes[0].url}/dashboard?key=${encodeURIComponent(KEY)}&nodes=${encodeURIComponent(urls)}`);
    const ids = f.nodes.map((n) => n.id).sort();

    const load = startLoad(f.nodes.map((n) => new Target(n, KEY)), { paceMs: 25 });
    let stopped = false;
    try {
      // Points from all three regions, drawn by uPlot (a canvas in the usage chart).
      await waitFor('the usage chart to hold points of all three nodes', async () => {
        const v = await lastViews(page);
        return ids.every((id) => (v[id] ?? 0) > 0);
      }, { timeoutMs: 30_000, describe: () => errors.join('\n') });
      expect(await page.locator('#chart-usage canvas').count()).toBeGreaterThan(0);
      expect(await page.locator('#nodes tbody tr').count()).toBe(3);

      // Cut ap-south off: its own count keeps rising with its own admissions only, the others
      // stop seeing them, and the page shows the views apart.
      const cut = sc!.region('ap-south');
      cut.cut('blackhole');
      const apart = await waitFor('the views to come apart', async () => {
        const v = await lastViews(page);
        const vals = ids.map((id) => v[id] ?? 0);
        return Math.max(...vals) - Math.min(...vals) >= 20 ? v : undefined;
      }, { timeoutMs: 30_000 });
      expect(Object.keys(apart).sort()).toEqual(ids);

      // Heal, stop the load: every view converges on the same count, which is every admission.
      cut.heal();
      await load.stop();
      stopped = true;
      const admitted = load.admitted();
      let seen: Record<string, number | null> = {};
      await waitFor('the views to come together on every admission', async () => {
        seen = await lastViews(page);
        return ids.every((id) => seen[id] === admitted);
      }, { timeoutMs: 60_000, describe: () => `admitted ${admitted}, views ${JSON.stringify(seen)}` });
      for (const n of f.nodes) expect(await usage(n.url, KEY)).toBe(admitted);
    } finally {
      if (!stopped) await load.stop();
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    expect(errors).toEqual([]);
  }, 180_000);
});
