/**
 * `npm run regions` end to end: runs `npm run regions -- --port-offset N --prometheus` as a child
 * process (N chosen so every shifted port is free), waits for its table of nodes, counts a key on
 * one region's node and sees the same usage on the other regions' nodes, finds every node up in
 * the Prometheus it started and the dashboard at the URL it printed, then sends SIGTERM to npm's
 * PID (what the user started) and checks that it exits 0 and leaves no process, port or temp dir
 * behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTopology } from '../../regions/topology.ts';
import { TEST_PORT_MIN, portFree } from '../../support/ports.ts';
import { descendants } from '../../support/processes.ts';
import { waitFor } from '../../support/wait.ts';

const root = resolve(import.meta.dirname, '../..');
/** Where the launcher's --prometheus listens, before the offset. */
const PROMETHEUS_PORT = 9090;
const topology = loadTopology();
const basePorts = topology.regions.flatMap((r) => [
  r.nats.clientPort,
  r.nats.clusterPort,
  r.nats.gatewayPort,
  r.nats.monitorPort,
  ...r.nodes.map((n) => n.httpPort),
]).concat([PROMETHEUS_PORT]);

/** Whether something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((done) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setTimeout(1000);
    sock.once('connect', () => {
      sock.destroy();
      done(true);
    });
    sock.once('timeout', () => {
      sock.destroy();
      done(true); // accepted by the kernel but not answered: still counts as in use
    });
    sock.once('error', () => done(false));
  });
}

/**
 * An offset that puts every port of the topology on a free port below the ephemeral range
 * (32768+ on Linux), so ports other tests get from the kernel cannot collide. Candidates are
 * tried in random order so two copies of this suite on one machine rarely pick the same one.
 */
async function pickOffset(): Promise<number> {
  const max = Math.max(...basePorts);
  const candidates: number[] = [];
  // Below TEST_PORT_MIN: support/ports.ts hands out TEST_PORT_MIN..TEST_PORT_MAX to other tests.
  for (let off = 10_000; max + off < TEST_PORT_MIN; off += 100) candidates.push(off);
  candidates.sort(() => Math.random() - 0.5);
  for (const off of candidates) {
    let free = true;
    for (const p of basePorts) {
      if (!(await portFree(p + off))) {
        free = false;
        break;
      }
    }
    if (free) return off;
  }
  throw new Error('no port offset with every port free');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Usage {
  limits: Array<{ policy: string; usage: number; limit: number }>;
}

async function check(url: string, key: string): Promise<{ status: number; body: { allowed: boolean } }> {
  const res = await fetch(`${url}/v1/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key }),
    signal: AbortSignal.timeout(2000),
  });
  return { status: res.status, body: (await res.json()) as { allowed: boolean } };
}

async function usage(url: string, key: string): Promise<Usage> {
  const res = await fetch(`${url}/v1/usage?key=${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(2000) });
  expect(res.status).toBe(200);
  return (await res.json()) as Usage;
}

let launcher: ChildProcess | undefined;
const childPids: number[] = [];

afterAll(async () => {
  // Only after a failure: stop the launcher, then make sure none of its children survive.
  if (launcher && launcher.exitCode === null && launcher.signalCode === null) {
    launcher.kill('SIGTERM');
    await waitFor('launcher exit after SIGTERM', () => launcher!.exitCode !== null || launcher!.signalCode !== null, { timeoutMs: 30_000 }).catch(() => {
      launcher!.kill('SIGKILL');
    });
  }
  for (const pid of childPids) {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});

describe('npm run regions (scripts/regions.ts)', () => {
  it('starts every region, replicates a key across regions and stops cleanly on SIGTERM to npm', async () => {
    const offset = await pickOffset();
    const proc = spawn('npm', ['run', 'regions', '--', '--port-offset', String(offset), '--prometheus'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    launcher = proc;
    const out: string[] = [];
    createInterface({ input: proc.stdout! }).on('line', (l) => out.push(l));
    createInterface({ input: proc.stderr! }).on('line', (l) => out.push(`stderr: ${l}`));
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const output = () => `--- launcher output ---\n${out.join('\n')}`;
    // An early exit fails the wait at once instead of waiting out its deadline.
    const early = new AbortController();
    proc.once('exit', (code, signal) => {
      exit = { code, signal };
      early.abort(new Error(`launcher exited early (${JSON.stringify(exit)})\n${output()}`));
    });

    await waitFor('the launcher to print "ready:"', () => out.some((l) => l.startsWith('ready:')), {
      timeoutMs: 45_000,
      intervalMs: 100,
      describe: output,
      signal: early.signal,
    });

    // The tables: nodes (region, node, URL, NATS, pid) and nats-servers (region, name, monitor, pid).
    const nodes = out
      .map((l) => /^\s+(\S+)\s+(\S+)\s+(http:\/\/\S+)\s+(nats:\/\/\S+)\s+(\d+)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({ region: m[1]!, id: m[2]!, url: m[3]!, nats: m[4]!, pid: Number(m[5]) }));
    const servers = out
      .map((l) => /^\s+(\S+)\s+(nats-\S+)\s+(http:\/\/\S+)\s+(\d+)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => ({ region: m[1]!, monitor: m[3]!, pid: Number(m[4]) }));
    const dataDir = out.map((l) => /^data: (\S+)/.exec(l)?.[1]).find((d) => d !== undefined);
    childPids.push(...nodes.map((n) => n.pid), ...servers.map((s) => s.pid));

    const expectedNodes = topology.regions.flatMap((r) => r.nodes.map((n) => ({ region: r.name, id: n.id, port: n.httpPort + offset, nats: r.nats.clientPort + offset })));
    expect(nodes.map((n) => n.id).sort(), output()).toEqual(expectedNodes.map((n) => n.id).sort());
    for (const e of expectedNodes) {
      const n = nodes.find((x) => x.id === e.id)!;
      expect(n.region).toBe(e.region);
      expect(n.url).toBe(`http://127.0.0.1:${e.port}`);
      expect(n.nats).toBe(`nats://127.0.0.1:${e.nats}`);
    }
    expect(servers.map((s) => s.region).sort()).toEqual(topology.regions.map((r) => r.name).sort());
    expect(dataDir, output()).toBeDefined();
    expect(existsSync(dataDir!)).toBe(true);

    // A key counted in one region is counted everywhere.
    const [origin, ...others] = topology.regions.map((r) => nodes.find((n) => n.region === r.name)!);
    const key = 'launcher-test';
    const sent = 3;
    for (let i = 0; i < sent; i++) {
      const r = await check(origin!.url, key);
      expect(r.status).toBe(200);
      expect(r.body.allowed).toBe(true);
    }
    const local = await usage(origin!.url, key);
    expect(local.limits.length).toBeGreaterThan(0);
    for (const l of local.limits) expect(l.usage).toBe(sent);
    for (const n of others) {
      await waitFor(
        `usage of "${key}" on ${n.id} to reach ${sent}`,
        async () => {
          const u = await usage(n.url, key);
          return u.limits.length === local.limits.length && u.limits.every((l) => l.usage === sent);
        },
        { timeoutMs: 15_000, intervalMs: 100, describe: output },
      );
    }

    // The Prometheus it started scrapes every node; the dashboard URL it printed serves the page.
    const promUrl = out.map((l) => /^prometheus: (http:\/\/\S+)/.exec(l)?.[1]).find((u) => u !== undefined);
    expect(promUrl, output()).toBe(`http://127.0.0.1:${PROMETHEUS_PORT + offset}`);
    await waitFor(
      'every node up in Prometheus',
      async () => {
        const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('sum(up{job="regionlimit"})')}`, { signal: AbortSignal.timeout(2000) });
        const body = (await res.json()) as { data: { result: Array<{ value: [number, string] }> } };
        return Number(body.data.result[0]?.value[1]) === expectedNodes.length;
      },
      { timeoutMs: 30_000, intervalMs: 200, describe: output },
    );
    const dashboard = out.map((l) => /^dashboard: (http:\/\/\S+)/.exec(l)?.[1]).find((u) => u !== undefined);
    expect(dashboard, output()).toBeDefined();
    for (const n of nodes) expect(dashboard).toContain(n.url);
    const page = await fetch(dashboard!, { signal: AbortSignal.timeout(2000) });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('uPlot.iife.min.js');

    // SIGTERM to npm: exit 0, every child gone, every port closed, the temp dir removed.
    const tree = descendants(proc.pid!);
    proc.kill('SIGTERM');
    await waitFor('npm run regions to exit after SIGTERM', () => exit !== undefined, { timeoutMs: 30_000, intervalMs: 50, describe: output });
    expect(exit, output()).toEqual({ code: 0, signal: null });
    // Helpers of a process (tsx's esbuild service) end once their parent has: wait for that.
    const lingering = () => [...childPids, ...tree].filter((pid) => alive(pid));
    await waitFor('every process npm started to be gone', () => lingering().length === 0, { timeoutMs: 10_000, intervalMs: 50, describe: () => `still running: ${lingering().join(', ')}\n${output()}` });
    for (const p of basePorts) expect(await listening(p + offset), `port ${p + offset} still open`).toBe(false);
    expect(existsSync(dataDir!)).toBe(false);
    expect(out, output()).toContain('stopped');
  }, 90_000);
});
