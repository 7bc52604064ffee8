/**
 * Storage faults lose nothing from a replicating node's count (real node processes, a real
 * nats-server, real SQLite files, a real tmpfs for the full disk):
 * - a damaged or emptied database at start-up is moved aside and the node's counts, its own
 *   included, come back from the streams before it listens: what was admitted before the
 *   damage is enforced after it, and the node is not degraded;
 * - 500 admissions made while the disk is full, then SIGTERM: the shutdown retries, says
 *   loudly what it could not write, and after the restart (disk freed) they are all counted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSingleServer } from '../../support/nats-server.ts';
import { check, startNodeProcess, type NodeProcess } from '../../support/node-process.ts';
import { waitFor } from '../../support/wait.ts';
import { DB_FAULTS, truncateToZero } from '../helpers/db-faults.ts';
import { readyz, status, usage } from '../helpers/regions.ts';
import { mountTmpfs, unmountAll } from '../helpers/tmpfs.ts';

let server: Awaited<ReturnType<typeof startSingleServer>>;
const dirs: string[] = [];
const running: NodeProcess[] = [];

beforeAll(async () => {
  server = await startSingleServer();
}, 60_000);

afterAll(async () => {
  for (const p of running) await p.kill9();
  await server?.stopAll();
  unmountAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-storage-nats-'));
  dirs.push(dir);
  return dir;
}

function rulesFile(limit: number): string {
  const rules = join(tempDir(), 'rules.yaml');
  writeFileSync(rules, `rules:\n  - id: hourly\n    key: "*"\n    limits:\n      - { limit: ${limit}, window: 1h }\n`);
  return rules;
}

async function start(nodeId: string, data: string, rules: string): Promise<NodeProcess> {
  // A region (so streams) per node: a node of an earlier case would otherwise be a silent peer.
  const p = await startNodeProcess(['--node-id', nodeId, '--region', `r-${nodeId}`, '--nats', server.url, '--data', data, '--rules', rules, '--flush-interval', '50ms']);
  running.push(p);
  return p;
}

async function notDegraded(node: NodeProcess): Promise<void> {
  await waitFor('the node to be ready and not degraded', async () => {
    const r = await readyz(node.url);
    return r.status === 200 && !r.body.degraded;
  }, { describe: () => node.logs.slice(-20).join('\n') });
}

describe('a damaged database at start-up, replicating node', () => {
  const cases: Array<[string, (file: string) => void, string]> = [
    ['a garbage page 2', DB_FAULTS['a garbage page 2'], 'STORAGE_CORRUPT'],
    ['truncated to 0 bytes', truncateToZero, 'STORAGE_LOST'],
  ];
  for (const [what, damage, code] of cases) {
    it(`${what}: the counts admitted before it are enforced after it (rebuilt from the streams, its own included), not degraded`, async () => {
      const nodeId = `n-${code.toLowerCase().replace('_', '-')}`;
      const rules = rulesFile(5);
      const data = join(tempDir(), 'data');
      let node = await start(nodeId, data, rules);
      await notDegraded(node);
      for (let i = 0; i < 5; i++) expect((await check(node.url, `${nodeId}-victim`)).status).toBe(200);
      expect((await check(node.url, `${nodeId}-victim`)).status).toBe(429);
      for (let k = 0; k < 20; k++) expect((await check(node.url, `${nodeId}-k${k}`, 2)).status).toBe(200);
      expect(await node.stop()).toBe(0);

      damage(join(data, 'limiter.db'));
      node = await start(nodeId, data, rules);
      // It rebuilt before listening: the limited key is still limited, every count is back.
      expect((await check(node.url, `${nodeId}-victim`)).status).toBe(429);
      expect(await usage(node.url, `${nodeId}-victim`)).toBe(5);
      for (let k = 0; k < 20; k++) expect(await usage(node.url, `${nodeId}-k${k}`)).toBe(2);
      await notDegraded(node);
      const st = await status(node.url);
      expect(st.storage.state).toBe('ok');
      expect(st.storage.startup?.code).toBe(code);
      expect(node.logs.some((l) => l.includes('rebuilt state from the streams'))).toBe(true);
      // Its new admissions build on the rebuilt count, and the new database keeps them.
      expect((await check(node.url, `${nodeId}-k0`)).status).toBe(200);
      expect(await node.stop()).toBe(0);
      node = await start(nodeId, data, rules);
      expect(await usage(node.url, `${nodeId}-k0`)).toBe(3);
      expect((await status(node.url)).storage.startup).toBeNull();
      await node.stop();
    });
  }
});

describe('a full disk while running, replicating node', () => {
  it('500 admissions while the disk is full, SIGTERM: reported as not written, and all counted after the restart', async () => {
    const nodeId = 'n-full';
    const rules = rulesFile(1000);
    const fs = mountTmpfs(16);
    const data = join(fs.dir, 'data');
    let node = await start(nodeId, data, rules);
    await notDegraded(node);
    // One check of cost 10: one change, so the next row written is the whole of it.
    const written = (await status(node.url)).persistence.rowsWritten;
    expect((await check(node.url, 'full-before', 10)).status).toBe(200);
    await waitFor('the first admission on disk', async () => (await status(node.url)).persistence.rowsWritten > written);

    fs.fill();
    // 50 keys × 10: the database has to grow to hold them, so every write fails.
    for (let i = 0; i < 10; i++) {
      await Promise.all(Array.from({ length: 50 }, async (_, k) => expect((await check(node.url, `full-${k}`)).status).toBe(200)));
    }
    await waitFor('degraded with the storage reason', async () => (await readyz(node.url)).body.reasons.some((r) => r.startsWith('storage: STORAGE_FAILURE:')));
    expect((await status(node.url)).persistence.retryRows).toBeGreaterThanOrEqual(50);

    expect(await node.stop()).toBe(0);
    const lost = node.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => typeof l.msg === 'string' && l.msg.startsWith('NOT WRITTEN'));
    expect(lost, node.logs.slice(-10).join('\n')).toBeDefined();
    expect(lost).toMatchObject({ level: 60, keys: 50, admittedUnits: 500, replicating: true });

    fs.free();
    node = await start(nodeId, data, rules);
    await notDegraded(node);
    let total = 0;
    for (let k = 0; k < 50; k++) {
      const u = await usage(node.url, `full-${k}`);
      expect(u).toBe(10);
      total += u;
    }
    expect(total).toBe(500);
    expect(await usage(node.url, 'full-before')).toBe(10);
    // And they reach the disk this time.
    await waitFor('the recovered counts on disk', async () => (await status(node.url)).persistence.retryRows === 0 && (await status(node.url)).persistence.rowsWritten >= 50);
    expect(await node.stop()).toBe(0);
    node = await start(nodeId, data, rules);
    expect(await usage(node.url, 'full-3')).toBe(10);
    await node.stop();
  });
});
