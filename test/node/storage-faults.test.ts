/**
 * Storage faults lose nothing and stop nothing, for a node running alone (real node processes,
 * real SQLite files, real tmpfs mounts for a full disk and a read-only directory):
 * - a damaged or emptied database at start-up: the node serves (never exits), moves the file
 *   aside, and reports degraded with STORAGE_CORRUPT / STORAGE_LOST (it has nothing to rebuild from);
 * - a read-only data directory at start-up: it serves from the state it can read, reports
 *   STORAGE_UNAVAILABLE, and writes everything once the directory is writable again;
 * - a full disk while running: it keeps answering, reports STORAGE_FAILURE, keeps the rows and
 *   writes them all once space is freed;
 * - `--durability sync` on a full disk: a check whose commit fails is answered 503
 *   STORAGE_FAILURE and not counted.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { check, startNodeProcess, type NodeProcess } from '../../support/node-process.ts';
import { waitFor } from '../../support/wait.ts';
import { DB_FAULTS, truncateToZero } from '../helpers/db-faults.ts';
import { readyz, status, usage } from '../helpers/regions.ts';
import { mountTmpfs, unmountAll } from '../helpers/tmpfs.ts';

const dirs: string[] = [];
const running: NodeProcess[] = [];

afterAll(async () => {
  for (const p of running) await p.kill9();
  unmountAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function rulesFile(limit: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-storage-faults-'));
  dirs.push(dir);
  const rules = join(dir, 'rules.yaml');
  writeFileSync(rules, `rules:\n  - id: hourly\n    key: "*"\n    limits:\n      - { limit: ${limit}, window: 1h }\n`);
  return rules;
}

async function start(data: string, rules: string, extra: string[] = []): Promise<NodeProcess> {
  const p = await startNodeProcess(['--data', data, '--rules', rules, '--node-id', 'alone-1', '--flush-interval', '50ms', ...extra]);
  running.push(p);
  return p;
}

async function admit(url: string, key: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) expect((await check(url, key)).status).toBe(200);
}

/** A stopped node's data directory holding 50 keys × 3 admissions. */
async function populated(rules: string): Promise<string> {
  const data = join(mkdtempSync(join(tmpdir(), 'limiter-storage-faults-')), 'data');
  dirs.push(join(data, '..'));
  const node = await start(data, rules);
  for (let k = 0; k < 50; k++) await admit(node.url, `key-${k}`, 3);
  expect(await node.stop()).toBe(0);
  return data;
}

describe('a damaged database at start-up, node alone', () => {
  const cases: Array<[string, (file: string) => void, string]> = [
    ['truncated to half', DB_FAULTS['truncated to half'], 'STORAGE_CORRUPT'],
    ['a flipped bit in a middle page', DB_FAULTS['a flipped bit in a middle page'], 'STORAGE_CORRUPT'],
    ['truncated to 0 bytes', truncateToZero, 'STORAGE_LOST'],
  ];
  for (const [what, damage, code] of cases) {
    it(`${what}: serves (no exit), moves the file aside with one log line, reports degraded with ${code} in /readyz and /v1/status`, async () => {
      const rules = rulesFile(5);
      const data = await populated(rules);
      damage(join(data, 'limiter.db'));
      const node = await start(data, rules);
      const ready = await readyz(node.url);
      expect(ready.status).toBe(200);
      expect(ready.body.degraded).toBe(true);
      expect(ready.body.reasons.some((r) => r.startsWith(`storage: ${code}:`))).toBe(true);
      const st = await status(node.url);
      expect(st.storage.state).toBe('degraded');
      expect(st.storage.fault?.code).toBe(code);
      expect(st.storage.startup?.code).toBe(code);
      if (code === 'STORAGE_CORRUPT') {
        expect(st.storage.startup!.movedAside![0]).toMatch(/limiter\.db\.corrupt-/);
        expect(existsSync(st.storage.startup!.movedAside![0])).toBe(true);
        expect(node.logs.filter((l) => l.includes('moved aside'))).toHaveLength(1);
      }
      expect(node.logs.some((l) => l.includes('STARTED EMPTY'))).toBe(true);
      // It started empty (alone there is nothing to rebuild from) and counts from there.
      expect(await usage(node.url, 'key-1')).toBe(0);
      await admit(node.url, 'key-1', 2);
      expect(await node.stop()).toBe(0);
      // The new database keeps what the node counted after the fault.
      const again = await start(data, rules);
      expect(await usage(again.url, 'key-1')).toBe(2);
      expect(readdirSync(data).filter((f) => f.includes('.corrupt-') && !/-(wal|shm)$/.test(f)).length).toBe(code === 'STORAGE_CORRUPT' ? 1 : 0);
      await again.stop();
    });
  }
});

describe('a read-only data directory at start-up, node alone', () => {
  it('serves from the state it reads, reports STORAGE_UNAVAILABLE, and writes everything once the directory is writable again', async () => {
    const rules = rulesFile(10);
    const fs = mountTmpfs(16);
    const data = join(fs.dir, 'data');
    let node = await start(data, rules);
    await admit(node.url, 'ro', 3);
    expect(await node.stop()).toBe(0);

    fs.readOnly();
    node = await start(data, rules);
    const ready = await readyz(node.url);
    expect(ready.body.degraded).toBe(true);
    expect(ready.body.reasons.some((r) => r.startsWith('storage: STORAGE_UNAVAILABLE:'))).toBe(true);
    expect((await status(node.url)).storage).toMatchObject({ state: 'degraded', writable: false });
    // The counts on the read-only disk are enforced, and new ones are kept in memory.
    expect(await usage(node.url, 'ro')).toBe(3);
    await admit(node.url, 'ro', 4);
    await admit(node.url, 'new-key', 2);

    fs.writable();
    await waitFor('the node to write to its directory again', async () => !(await readyz(node.url)).body.degraded, { timeoutMs: 10_000 });
    expect((await status(node.url)).storage).toMatchObject({ state: 'ok', writable: true, fault: null });
    expect(await node.stop()).toBe(0);
    node = await start(data, rules);
    expect(await usage(node.url, 'ro')).toBe(7);
    expect(await usage(node.url, 'new-key')).toBe(2);
    await node.stop();
  });
});

describe('a full disk while running, node alone', () => {
  it('keeps answering, reports degraded with the reason, keeps the rows, and writes them all once space is freed', async () => {
    const rules = rulesFile(1000);
    const fs = mountTmpfs(16);
    const data = join(fs.dir, 'data');
    const node = await start(data, rules);
    await admit(node.url, 'before', 5);
    fs.fill();
    // New keys make the database grow: writes fail while the disk is full.
    for (let k = 0; k < 100; k++) await admit(node.url, `full-${k}`, 3);
    const ready = await waitFor('degraded with the storage reason', async () => {
      const r = await readyz(node.url);
      return r.body.reasons.some((x) => x.startsWith('storage: STORAGE_FAILURE:')) && r;
    });
    expect(ready.status).toBe(200);
    expect(ready.body.reasons.join(' ')).toMatch(/full|SQLITE_FULL/i);
    expect((await status(node.url)).persistence.retryRows).toBeGreaterThan(0);
    expect(await usage(node.url, 'full-7')).toBe(3);

    fs.free();
    await waitFor('the node to recover by itself', async () => !(await readyz(node.url)).body.degraded, { timeoutMs: 10_000 });
    const st = await status(node.url);
    expect(st.storage.state).toBe('ok');
    expect(st.persistence.retryRows).toBe(0);
    expect(st.persistence.droppedRows).toBe(0);
    expect(await node.stop()).toBe(0);
    const again = await start(data, rules);
    expect(await usage(again.url, 'before')).toBe(5);
    for (let k = 0; k < 100; k++) expect(await usage(again.url, `full-${k}`)).toBe(3);
    await again.stop();
  });

  it('--durability sync: a check whose commit fails answers 503 STORAGE_FAILURE and is not counted', async () => {
    const rules = rulesFile(1000);
    const fs = mountTmpfs(16);
    const data = join(fs.dir, 'data');
    const node = await start(data, rules, ['--durability', 'sync']);
    await admit(node.url, 'sync', 2);
    fs.fill();
    let refused = 0;
    // Each refusal leaves the count as it was (and the keys that were refused at 0).
    for (let k = 0; k < 20; k++) {
      const r = await fetch(`${node.url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: `sync-${k}`, cost: 3 }) });
      if (r.status === 503) {
        expect(((await r.json()) as { error: string }).error).toBe('STORAGE_FAILURE');
        expect(await usage(node.url, `sync-${k}`)).toBe(0);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    const before = await usage(node.url, 'sync');
    expect((await check(node.url, 'sync')).status).toBe(503);
    expect(await usage(node.url, 'sync')).toBe(before);

    fs.free();
    await waitFor('a check to be admitted again', async () => (await check(node.url, 'sync')).status === 200, { timeoutMs: 10_000 });
    expect(await usage(node.url, 'sync')).toBe(before + 1);
    expect(await node.stop()).toBe(0);
    const again = await start(data, rules, ['--durability', 'sync']);
    expect(await usage(again.url, 'sync')).toBe(before + 1);
    await again.stop();
  });
});
