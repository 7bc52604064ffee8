/**
 * The pretest step of `npm test`: with every program present it passes; when one is missing and
 * it cannot install it (not root), it stops at once naming the exact command.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/examples.ts';

const pretest = (env: NodeJS.ProcessEnv, uid?: number) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'scripts/pretest.ts'], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000, ...(uid !== undefined ? { uid, gid: uid } : {}) });

describe('pretest', () => {
  it('passes when every program the tests run is installed', () => {
    const r = pretest({});
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('without root, stops naming the command that installs a missing program', () => {
    // As root (CI), run it as nobody; otherwise as the user running the tests.
    const r = pretest({ NATS_SERVER_BIN: '/nonexistent/nats-server', HOME: '/tmp' }, process.getuid?.() === 0 ? 65534 : undefined);
    expect(r.stderr).toContain('/nonexistent/nats-server not found: install it with `sudo apt-get install -y nats-server`');
    expect(r.status).toBe(1);
  });
});
