/**
 * Programs the tests and the bench run for real (nginx, redis-server, python3): installed from
 * Debian's packages through apt-get when missing and this process runs as root; otherwise the
 * error names the exact command to run.
 */
import { spawnSync } from 'node:child_process';

export function runnable(bin: string): boolean {
  return spawnSync(bin, [versionFlag(bin)], { encoding: 'utf8' }).status === 0;
}

/** Install a Debian package when `bin` is missing (root only); throws naming the command otherwise. */
export function ensureDebianPackage(bin: string, pkg: string, log: (m: string) => void = () => {}): void {
  if (runnable(bin)) return;
  const cmd = `apt-get install -y ${pkg}`;
  if (!runnable('apt-get')) throw new Error(`${bin} not found: install it (Debian: \`${cmd}\`)`);
  if (process.getuid?.() !== 0) throw new Error(`${bin} not found: install it with \`sudo ${cmd}\``);
  log(`${bin} not found: ${cmd}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync('apt-get', ['install', '-y', '-qq', pkg], { encoding: 'utf8', env });
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { encoding: 'utf8', env });
    r = spawnSync('apt-get', ['install', '-y', '-qq', pkg], { encoding: 'utf8', env });
  }
  if (r.status !== 0 || !runnable(bin)) throw new Error(`${cmd} failed: ${(r.stderr || r.stdout || String(r.error)).trim().slice(-500)}`);
}

function versionFlag(bin: string): string {
  if (/nginx$/.test(bin)) return '-v';
  if (/openssl$/.test(bin)) return 'version';
  return '--version';
}
