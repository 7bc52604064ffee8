/**
 * A limited key stays limited across restarts: graceful SIGTERM in both durability modes, and
 * kill -9 in `sync` mode (nothing admitted is lost) and in `batch` mode after a flush interval.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { check, startNodeProcess, type NodeProcess } from '../helpers/node-process.ts';

const dirs: string[] = [];
const running: NodeProcess[] = [];

function setup(): { data: string; rules: string } {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-restart-'));
  dirs.push(dir);
  const rules = join(dir, 'rules.yaml');
  writeFileSync(rules, 'rules:\n  - id: hourly\n    key: "*"\n    limits:\n      - { limit: 5, window: 1h }\n');
  return { data: join(dir, 'data'), rules };
}

async function start(data: string, rules: string, durability: string): Promise<NodeProcess> {
  const p = await startNodeProcess(['--data', data, '--rules', rules, '--durability', durability, '--node-id', 'restart-1', '--flush-interval', '50ms']);
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
    let node = await start(data, rules, 'batch');
    for (let i = 0; i < 5; i++) expect((await check(node.url, 'b')).status).toBe(200);
    // Wait well past one flush interval, then crash: everything was flushed.
    await new Promise((r) => setTimeout(r, 300));
    await node.kill9();
    node = await start(data, rules, 'batch');
    expect((await check(node.url, 'b')).status).toBe(429);
    await node.kill9();
  });
});
