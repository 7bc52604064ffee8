/**
 * `npm start` stops like a service: SIGTERM to the PID of npm, or Ctrl-C (SIGINT to the
 * terminal's process group), stops the node cleanly (it logs "stopped", npm exits 0) and leaves
 * no process that npm started running. (`npm run regions` is tested the same way in
 * test/regions/launcher.test.ts.)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../support/ports.ts';
import { alive, descendants } from '../../support/processes.ts';
import { waitFor } from '../../support/wait.ts';
import { ROOT } from '../helpers/examples.ts';

const dirs: string[] = [];
const started: number[] = [];
afterAll(() => {
  for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function npmStart(): Promise<{ pid: number; url: string; output: () => string; exited: Promise<{ code: number | null; signal: string | null }> }> {
  const dir = mkdtempSync(join(tmpdir(), 'limiter-signals-'));
  dirs.push(dir);
  const [port] = await freePorts(1);
  // detached: its own process group, as a terminal gives the command it runs.
  const p = spawn('npm', ['start', '--', '--port', String(port), '--data', join(dir, 'data')], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  p.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => p.once('exit', (code, signal) => r({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  await waitFor('npm start to serve', () => fetch(`${url}/healthz`).then((r) => r.ok, () => false), { timeoutMs: 30_000, intervalMs: 50, describe: () => out });
  started.push(p.pid!, ...descendants(p.pid!));
  return { pid: p.pid!, url, output: () => out, exited };
}

describe('npm start', () => {
  for (const how of ['SIGTERM to npm', 'Ctrl-C (SIGINT to the process group)'] as const) {
    it(`stops everything it started on ${how}`, async () => {
      const s = await npmStart();
      const tree = descendants(s.pid);
      expect(tree.length).toBeGreaterThan(0);
      if (how === 'SIGTERM to npm') process.kill(s.pid, 'SIGTERM');
      else process.kill(-s.pid, 'SIGINT');
      expect(await s.exited).toEqual({ code: 0, signal: null });
      await waitFor('every process npm started to exit', () => tree.every((pid) => !alive(pid)), { timeoutMs: 10_000, intervalMs: 50, describe: () => `still running: ${tree.filter(alive).join(', ')}\n${s.output()}` });
      expect(s.output()).toContain('"msg":"stopped"');
      await expect(fetch(`${s.url}/healthz`)).rejects.toThrow();
    });
  }
});
