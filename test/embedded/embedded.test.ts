/**
 * The embedded limiter (createLimiter from the package root): the same Decision as a node, the
 * HTTP API's validation codes, refunds by admission id, the same SQLite persistence across a
 * close and a new limiter on the same directory, and replication with a node over a real
 * nats-server in both directions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLimiter, LimiterError, loadConfig, startNode, type Limiter, type RunningNode } from 'regionlimit';
import { startSingleServer } from '../../support/nats-server.ts';
import { waitFor } from '../../support/wait.ts';
import { exampleInReadme, run, TSX } from '../helpers/examples.ts';

const dirs: string[] = [];
const open: { close(): Promise<void> }[] = [];
const rules = { rules: [{ id: 'per-user', key: 'user:*', limits: [{ limit: 3, window: '1h' }] }] };

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'limiter-embedded-'));
  dirs.push(d);
  return d;
}

async function limiter(o: Parameters<typeof createLimiter>[0]): Promise<Limiter> {
  const l = await createLimiter(o);
  open.push(l);
  return l;
}

afterAll(async () => {
  for (const l of open.reverse()) await l.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('createLimiter', () => {
  it('answers Decisions, refunds by admission id and keeps counts across a restart on the same data directory', async () => {
    const data = join(tempDir(), 'data');
    const l = await createLimiter({ rules, data });
    const first = await l.check({ key: 'user:1' });
    expect(first).toMatchObject({ allowed: true, limit: 3, remaining: 2, ruleId: 'per-user', retryAfterMs: 0 });
    expect(first.admissionId).toMatch(/^embedded-.+\..+\..+$/);
    await l.check({ key: 'user:1' });
    await l.check({ key: 'user:1' });
    const denied = await l.check({ key: 'user:1' });
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBeGreaterThan(0);
    expect(await l.refund(first.admissionId!)).toEqual({ ruleId: 'per-user', refunded: 1 });
    await expect(l.refund(first.admissionId!)).rejects.toMatchObject({ code: 'ADMISSION_ALREADY_REFUNDED' });
    expect(l.usage('user:1').limits[0]).toMatchObject({ usage: 2, limit: 3 });
    await l.close();
    await expect(l.check({ key: 'user:1' })).rejects.toMatchObject({ code: 'LIMITER_CLOSED' });

    const again = await limiter({ rules, data });
    expect(again.usage('user:1').limits[0].usage).toBe(2);
    expect((await again.check({ key: 'user:1' })).remaining).toBe(0);
    expect((await again.check({ key: 'user:1' })).allowed).toBe(false);
  });

  it('reads a rules file and answers checkMany in order', async () => {
    const dir = tempDir();
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, 'rules:\n  - id: tiny\n    key: "t:*"\n    limits:\n      - { limit: 1, window: 1m }\n');
    const l = await limiter({ rules: file, data: join(dir, 'data') });
    const [a, b, c] = await l.checkMany([{ key: 't:1' }, { key: 't:1' }, { key: 'free' }]);
    expect([a.allowed, b.allowed, c.allowed]).toEqual([true, false, true]);
    expect(c.ruleId).toBeNull();
  });

  it('checkAll: several dimensions all counted, or none when one is denied', async () => {
    const dir = tempDir();
    const l = await limiter({ rules: { rules: [{ id: 'ip', key: 'ip:*', limits: [{ limit: 10, window: '1m' }] }, { id: 'user', key: 'u:*', limits: [{ limit: 1, window: '1m' }] }] }, data: join(dir, 'data') });
    const ok = await l.checkAll([{ key: 'ip:1' }, { key: 'u:1' }]);
    expect(ok).toMatchObject({ allowed: true, binding: 1 });
    expect(typeof ok.decisions[0].admissionId).toBe('string');
    const no = await l.checkAll([{ key: 'ip:1' }, { key: 'u:1' }]);
    expect(no).toMatchObject({ allowed: false, binding: 1 });
    expect(l.usage('ip:1').limits[0].usage).toBe(1);
    expect(((await l.checkAll([]).catch((e: unknown) => e)) as LimiterError).code).toBe('BATCH_INVALID');
  });

  it('refuses bad input with the HTTP API codes and counts nothing for a refused batch', async () => {
    const l = await limiter({ rules, data: join(tempDir(), 'data') });
    const code = async (p: Promise<unknown>) => ((await p.catch((e: unknown) => e)) as LimiterError).code;
    expect(await code(l.check({ key: '' }))).toBe('KEY_EMPTY');
    expect(await code(l.check({ key: 'user:\u0001' }))).toBe('KEY_INVALID');
    expect(await code(l.check({ key: 'user:1', cost: 0 }))).toBe('COST_INVALID');
    expect(await code(l.check({ key: 'user:1', extra: 1 } as never))).toBe('UNKNOWN_FIELD');
    expect(await code(l.checkMany([{ key: 'user:2' }, { key: 'x'.repeat(600) }]))).toBe('KEY_TOO_LONG');
    expect(await code(l.refund('nonsense'))).toBe('ADMISSION_ID_INVALID');
    expect(l.usage('user:2').limits[0].usage).toBe(0);
    const err = await l.check({ key: '' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LimiterError);
  });

  it('issues an admission id when it is first read or serialised, and holds none for ids never read', async () => {
    const l = await limiter({ rules, data: join(tempDir(), 'data') });
    const a = await l.check({ key: 'user:lazy' });
    const b = await l.check({ key: 'user:lazy' });
    expect(l.status().admissions.held).toBe(0);
    const id = a.admissionId;
    expect(id).toMatch(/^embedded-/);
    expect(a.admissionId).toBe(id);
    expect(JSON.parse(JSON.stringify(b)).admissionId).toBe(b.admissionId);
    expect(l.status().admissions.held).toBe(2);
    expect(await l.refund(id!)).toEqual({ ruleId: 'per-user', refunded: 1 });
    expect(l.usage('user:lazy').limits[0].usage).toBe(1);
  });

  it('with refunds: false issues no admission ids and refuses refunds', async () => {
    const l = await limiter({ rules, data: join(tempDir(), 'data'), refunds: false });
    const d = await l.check({ key: 'user:9' });
    expect(d.allowed).toBe(true);
    expect(d.admissionId).toBeUndefined();
    await expect(l.refund('x.y.z')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect(l.status().admissions.held).toBe(0);
  });

  it('refuses bad options with every problem listed', async () => {
    await expect(createLimiter({ rules: { rules: [{ id: 'x', key: '*', limits: [{ limit: 0, window: 'soon' }] }] }, data: join(tempDir(), 'd') })).rejects.toMatchObject({ code: expect.stringMatching(/^RULE_|CONFIG_/) });
    await expect(createLimiter({ rules, data: join(tempDir(), 'd'), durability: 'eventually' as never })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

describe('createLimiter with NATS', () => {
  it('replicates with a node both ways over a real nats-server', async () => {
    const nats = await startSingleServer();
    open.push({ close: () => nats.stopAll() });
    const dir = tempDir();
    writeFileSync(join(dir, 'rules.json'), JSON.stringify(rules));
    const node: RunningNode = await startNode(
      loadConfig(['--rules', join(dir, 'rules.json'), '--data', join(dir, 'node'), '--node-id', 'node-1', '--nats', nats.url, '--port', '0', '--log-level', 'warn'], {}),
    );
    open.push(node);
    const emb = await limiter({ rules, data: join(dir, 'embedded'), nats: nats.url, nodeId: 'app-1' });

    // Two admissions in the embedded limiter reach the node.
    await emb.check({ key: 'user:7' });
    await emb.check({ key: 'user:7' });
    const usageOnNode = async () => ((await (await fetch(`${node.url}/v1/usage?key=user:7`)).json()) as { limits: { usage: number }[] }).limits[0].usage;
    await waitFor('the node to see the embedded admissions', async () => (await usageOnNode()) === 2, { timeoutMs: 10_000, intervalMs: 20 });

    // The node's admission reaches the embedded limiter, which then denies the fourth.
    expect((await fetch(`${node.url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'user:7' }) })).status).toBe(200);
    await waitFor('the embedded limiter to see the node admission', () => emb.usage('user:7').limits[0].usage === 3, { timeoutMs: 10_000, intervalMs: 20 });
    expect((await emb.check({ key: 'user:7' })).allowed).toBe(false);
    expect(emb.status().replication).not.toBeNull();
  });
});

describe('README example', () => {
  it('examples/embedded.ts is shown verbatim in the README and runs', async () => {
    const { shown } = exampleInReadme('examples/embedded.ts');
    expect(shown, 'README.md must show examples/embedded.ts whole in one code block').toBe(true);
    const r = await run(TSX, ['examples/embedded.ts'], { LIMITER_DATA: join(tempDir(), 'data') });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('allowed, 99 left');
    expect(r.code).toBe(0);
  });
});
