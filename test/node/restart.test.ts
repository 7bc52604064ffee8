/**
 * A limited key stays limited across restarts: graceful SIGTERM in both durability modes, and
 * kill -9 in `sync` mode (nothing admitted is lost) and in `batch` mode (at most what was
 * admitted since the last flush is lost).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { check, startNodeProcess, type NodeProcess } from '../../support/node-process.ts';
import { waitFor } from '../../support/wait.ts';

const dirs: string[] = [];
const running: NodeProcess[] = [];

function setup(): { data: string; rules: string } {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-restart-'));
  dirs.push(dir);
  const rules = join(dir, 'rules.yaml');
  writeFileSync(rules, 'rules:\n  - id: hourly\n    key: "*"\n    limits:\n      - { limit: 5, window: 1h }\n');
  return { data: join(dir, 'data'), rules };
}

async function start(data: string, rules: string, durability: string, flushInterval = '50ms'): Promise<NodeProcess> {
  const p = await startNodeProcess(['--data', data, '--rules', rules, '--durability', durability, '--node-id', 'restart-1', '--flush-interval', flushInterval]);
  running.push(p);
  return p;
}

afterAll(async () => {
  for (const p of running) await p.kill9();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('restart', () => {
  for (const durability of ['batch', 'sync']) {
    it(`keeps a limited key limited across SIGTERM (${durability})`, async () => {
      const { data, rules } = setup();
      let node = await start(data, rules, durability);
      for (let i = 0; i < 5; i++) expect((await check(node.url, 'k')).status).toBe(200);
      expect((await check(node.url, 'k')).status).toBe(429);
      expect(await node.stop()).toBe(0);
      node = await start(data, rules, durability);
      const after = await check(node.url, 'k');
      expect(after.status).toBe(429);
      expect((await check(node.url, 'other')).body.remaining).toBe(4);
      await node.stop();
    });
  }

  it('loses nothing admitted across kill -9 in sync mode', async () => {
    const { data, rules } = setup();
    let node = await start(data, rules, 'sync');
    // Each 200 below was committed before it was sent.
    for (let i = 0; i < 3; i++) expect((await check(node.url, 'crash')).status).toBe(200);
    await node.kill9();
    node = await start(data, rules, 'sync');
    const r = await check(node.url, 'crash');
    expect(r.status).toBe(200);
    expect(r.body.remaining).toBe(1); // 3 before the crash + this one = 4 of 5
    expect((await check(node.url, 'crash')).status).toBe(200);
    expect((await check(node.url, 'crash')).status).toBe(429);
    await node.kill9();
  });

  it('loses at most one flush interval across kill -9 in batch mode', async () => {
    const { data, rules } = setup();
    // A long interval, so the test controls which admissions a flush has written.
    let node = await start(data, rules, 'batch', '1500ms');
    const flushes = async () => ((await (await fetch(`${node.url}/v1/status`)).json()) as { persistence: { flushes: number } }).persistence.flushes;
    const usage = async () => ((await (await fetch(`${node.url}/v1/usage?key=b`)).json()) as { limits: { usage: number }[] }).limits[0].usage;
    const before = await flushes();
    for (let i = 0; i < 3; i++) expect((await check(node.url, 'b')).status).toBe(200);
    await waitFor('a flush to write the three admissions', async () => (await flushes()) > before, { timeoutMs: 5000, intervalMs: 20 });
    // One more right after that flush, then a crash well inside the next interval.
    expect((await check(node.url, 'b')).status).toBe(200);
    await node.kill9();
    node = await start(data, rules, 'batch', '1500ms');
    // Everything up to the last flush survived; only what came after it may be gone.
    const after = await usage();
    expect(after).toBeGreaterThanOrEqual(3);
    expect(after).toBeLessThanOrEqual(4);
    await node.kill9();
  });
});
