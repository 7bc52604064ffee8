/**
 * `npm run sizing`: the table for a stated volume follows the bench JSON it is given, and a
 * bench JSON without a needed figure is refused naming the section to run.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..', '..');
const tsx = join(root, 'node_modules', '.bin', 'tsx');
const dir = mkdtempSync(join(tmpdir(), 'limiter-sizing-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function bench(cpuUs: number, perKey: number, perUpdate: number, without?: string): string {
  const sections: Record<string, unknown> = {
    http: { figures: [{ id: 'http.ours.check', value: 15000, detail: { serverCpuUsPerReq: cpuUs } }], checks: [] },
    memory: { figures: [], checks: [{ id: 'memory.perKey', measured: perKey }] },
    replication: { figures: [], checks: [{ id: 'replication.ship.bytes', measured: perUpdate }] },
  };
  if (without) delete sections[without];
  const file = join(dir, `bench-${cpuUs}-${without ?? 'all'}.json`);
  writeFileSync(file, JSON.stringify({ quick: false, startedAt: '2026-12-05T00:00:00Z', sections }));
  return file;
}

function sizing(...args: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(tsx, ['scripts/sizing.ts', ...args], { cwd: root, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

const row = (out: string, name: string) => out.split('\n').find((l) => l.startsWith(name))?.slice(name.length).trim().split(/\s{2,}/)[0];

describe('npm run sizing', () => {
  it('prints nodes, CPU, memory and NATS bandwidth for 1 M checks/s, 3 regions, 10 M keys from the bench figures', () => {
    const r = sizing('--bench', bench(60, 150, 20));
    expect(r.status, r.err).toBe(0);
    // 333 333 checks/s per region × 60 µs = 20 cores ÷ 0.6 → 34 nodes per region.
    expect(row(r.out, 'nodes per region')).toBe('34');
    expect(row(r.out, 'nodes in all')).toBe('102');
    expect(row(r.out, 'CPU, all nodes')).toBe('60 cores');
    // 10 M × 150 B × 1.5 + 150 MiB = 2.2 GiB.
    expect(row(r.out, 'memory per node')).toBe('2.2 GiB');
    // 333 333 updates/s × 20 B = 6.7 MB/s into each region; × 2 out through the gateways; 20 MB/s read per node.
    expect(row(r.out, 'NATS ingress per region')).toBe('6.7 MB/s');
    expect(row(r.out, 'gateway egress per region')).toBe('13.3 MB/s');
    expect(row(r.out, 'NATS read per node')).toBe('20 MB/s');
  });

  it('follows the measurements: twice the CPU per check, twice the nodes', () => {
    const r = sizing('--bench', bench(120, 150, 20), '--checks-per-s', '300000', '--regions', '3');
    expect(r.status, r.err).toBe(0);
    // 100 000 × 120 µs = 12 cores ÷ 0.6 = 20 nodes per region.
    expect(row(r.out, 'nodes per region')).toBe('20');
  });

  it('refuses a bench JSON without a needed figure, naming the section to run', () => {
    const r = sizing('--bench', bench(60, 150, 20, 'replication'));
    expect(r.status).toBe(1);
    expect(r.err).toContain('npm run bench -- --only replication');
  });
});
