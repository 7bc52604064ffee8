/**
 * `npm pack` makes a package that works outside this repository: the tarball (compiled
 * JavaScript and type declarations in dist/, built by prepack) is installed with npm into an
 * empty project; there the `regionlimit` binary serves a node, the README's client example
 * talks to it, the embedded example runs, and a TypeScript file importing every entry point
 * type-checks against the declarations.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../support/ports.ts';
import { waitFor } from '../../support/wait.ts';
import { ROOT } from '../helpers/examples.ts';

const dir = mkdtempSync(join(tmpdir(), 'limiter-pack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run to the end without the repository's NODE_OPTIONS; rejects with the output on failure. */
function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const { NODE_OPTIONS: _drop, ...base } = process.env;
    const p = spawn(cmd, args, { cwd, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (out += b.toString()));
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out}`))));
  });
}

describe('npm pack', () => {
  it('installs into an empty project where the binary, the client and the embedded limiter work', async () => {
    await sh('npm', ['pack', '--pack-destination', dir, '--silent'], ROOT);
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    expect(tarball).toMatch(/^regionlimit-.*\.tgz$/);
    const proj = join(dir, 'app');
    await sh('mkdir', ['-p', proj], dir);
    writeFileSync(
      join(proj, 'package.json'),
      JSON.stringify({ name: 'app', private: true, type: 'module', allowScripts: { 'better-sqlite3': true, 'msgpackr-extract': true, esbuild: true }, overrides: { 'light-my-request': '6.6.0' } }),
    );
    const installed = await sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, tarball)], proj);
    expect(installed).not.toContain('EBADENGINE');

    // The binary serves a node from compiled JavaScript.
    writeFileSync(join(proj, 'rules.json'), JSON.stringify({ rules: [{ id: 'api', key: 'user:*', limits: [{ limit: 100, window: '1m' }] }] }));
    const [port] = await freePorts(1);
    const { NODE_OPTIONS: _drop, ...base } = process.env;
    const node = spawn(join(proj, 'node_modules', '.bin', 'regionlimit'), ['--rules', 'rules.json', '--data', 'data', '--port', String(port), '--log-level', 'warn'], { cwd: proj, env: base, stdio: 'ignore' });
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitFor('the installed binary to serve', () => fetch(`${url}/healthz`).then((r) => r.ok, () => false), { timeoutMs: 20_000, intervalMs: 50 });
      // The README's examples, as JavaScript files of the new project.
      copyFileSync(join(ROOT, 'examples/client.ts'), join(proj, 'client.mjs'));
      copyFileSync(join(ROOT, 'examples/embedded.ts'), join(proj, 'embedded.mjs'));
      expect((await sh('node', ['client.mjs'], proj, { LIMITER_URL: url })).trim()).toBe('allowed, 99 left');
      expect((await sh('node', ['embedded.mjs'], proj, { LIMITER_DATA: join(proj, 'embedded-data') })).trim()).toBe('allowed, 99 left');
    } finally {
      node.kill('SIGTERM');
      await new Promise((r) => (node.exitCode !== null ? r(null) : node.once('exit', r)));
    }

    // The declarations type-check in a project of its own (NodeNext resolution).
    writeFileSync(
      join(proj, 'check.ts'),
      [
        "import { createLimiter, type Decision } from 'regionlimit';",
        "import { LimiterClient, ClientError } from 'regionlimit/client';",
        "import { regionlimitExpress, RegionlimitStore } from 'regionlimit/middleware';",
        "export async function f(): Promise<Decision> { const l = await createLimiter({ rules: 'r.yaml', data: 'd' }); return l.check({ key: 'k' }); }",
        "export const c = new LimiterClient({ url: 'http://127.0.0.1:8080', onUnavailable: { limit: 1, window: '1s' } });",
        'export const x = [ClientError, regionlimitExpress, RegionlimitStore];',
        '',
      ].join('\n'),
    );
    writeFileSync(join(proj, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, skipLibCheck: true, noEmit: true }, files: ['check.ts'] }));
    await sh(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', proj], proj);
  }, 300_000);
});
