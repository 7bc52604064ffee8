/**
 * The limiter nodes of the `replication` section: child processes running src/node.ts
 * `startNode` (bench/children/node.ts), the rules they load, and the HTTP calls every part makes
 * on them (check, usage, replication status). Measures nothing itself.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Child } from '../../lib/child.ts';
import { HIGH_LIMIT } from '../../lib/fixtures.ts';
import { closeIdle, request } from '../../lib/http-client.ts';
import type { LoadServer } from '../../lib/rounds.ts';
import type { BenchContext } from '../../lib/types.ts';

const NODE = 'bench/children/node.ts';
export const FLUSH_MS = 50;
export const LOAD_KEYS = 1000;
export const PROBE_TIMEOUT_MS = 5000;
export const RR_LIMITS = [10, 100];
export const BURST_LIMIT = 100;

/** Rules of the bench nodes: limits 10 and 100 per hour for the limit experiments, and a catch-all that admits everything. */
export function rulesYaml(): string {
  return [
    'version: 1',
    'slotsPerWindow: 10',
    'rules:',
    ...RR_LIMITS.map((l) => `  - { id: l${l}, key: "l${l}:*", limits: [{ limit: ${l}, window: 1h, algorithm: fixed-window }] }`),
    `  - { id: off${BURST_LIMIT}, key: "off${BURST_LIMIT}:*", nearLimitSharing: false, limits: [{ limit: ${BURST_LIMIT}, window: 1h, algorithm: fixed-window }] }`,
    '  - id: bench',
    '    key: "*"',
    '    limits:',
    `      - { limit: ${HIGH_LIMIT}, window: 1m }`,
    '',
  ].join('\n');
}

export interface NodeProc extends LoadServer {
  name: string;
  region: string;
  dataDir: string;
}

interface PeerStatus {
  node: string;
  messages: number;
  cells: number;
  lagP50Ms: number;
  lagP99Ms: number;
}

export interface ReplicationStatus {
  shipping: { messages: number; cells: number; publishErrors: number; heartbeats: number; priority: number; rounds: number; largestRound: number };
  messages: number;
  applied: number;
  refused: number;
  peers: PeerStatus[];
}

async function startNodeChild(ctx: BenchContext, name: string, region: string, flags: string[]): Promise<NodeProc> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-repl-node-'));
  const args = ['--node-id', name, '--region', region, '--data', dataDir, '--port', '0', '--flush-interval', `${FLUSH_MS}ms`, '--log-level', 'warn', ...flags];
  const child = new Child(NODE, args, { root: ctx.root, profileDir: ctx.profileDir, profileName: `replication-${name}` });
  try {
    const m = await child.next(120_000);
    return { name, region, child, url: m.url as string, dataDir };
  } catch (err) {
    await child.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

export async function stopNodes(nodes: NodeProc[]): Promise<void> {
  closeIdle();
  await Promise.all(
    nodes.map(async (n) => {
      await n.child.stop(10_000);
      rmSync(n.dataDir, { recursive: true, force: true });
    }),
  );
}

/** Start every node at once; if one fails, stop the others. */
export async function startNodes(ctx: BenchContext, specs: { name: string; region: string; flags: string[] }[]): Promise<NodeProc[]> {
  const started = await Promise.allSettled(specs.map((s) => startNodeChild(ctx, s.name, s.region, s.flags)));
  const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await stopNodes(ok);
    throw (failed as PromiseRejectedResult).reason;
  }
  return ok;
}

export async function usage(url: string, key: string): Promise<number> {
  const r = await request<{ limits: { usage: number }[] }>('GET', `${url}/v1/usage?key=${encodeURIComponent(key)}`);
  if (r.status !== 200) throw new Error(`GET /v1/usage on ${url}: HTTP ${r.status}`);
  return r.body.limits[0]?.usage ?? 0;
}

export async function checkKey(url: string, key: string): Promise<void> {
  if (!(await admitted(url, key))) throw new Error(`POST /v1/check on ${url}: ${key} denied`);
}

/** One check: true when admitted (200), false when denied (429). */
export async function admitted(url: string, key: string): Promise<boolean> {
  const r = await request<{ allowed: boolean }>('POST', `${url}/v1/check`, { key });
  if (r.status !== 200 && r.status !== 429) throw new Error(`POST /v1/check on ${url}: HTTP ${r.status}`);
  return r.body.allowed;
}

/** One check: whether it was admitted and the denial's code. */
export async function decision(url: string, key: string): Promise<{ allowed: boolean; code?: string }> {
  const r = await request<{ allowed: boolean; code?: string }>('POST', `${url}/v1/check`, { key });
  if (r.status !== 200 && r.status !== 429) throw new Error(`POST /v1/check on ${url}: HTTP ${r.status}`);
  return r.body;
}

export async function replicationStatus(n: NodeProc): Promise<ReplicationStatus> {
  const r = await request<{ replication: ReplicationStatus | null }>('GET', `${n.url}/v1/status`);
  if (r.status !== 200 || !r.body.replication) throw new Error(`GET /v1/status on ${n.name}: HTTP ${r.status}, replication ${JSON.stringify(r.body.replication)}`);
  return r.body.replication;
}
