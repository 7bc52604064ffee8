/**
 * A real redis-server on a free port with no persistence, for the bench's Redis-backed peer
 * (rate-limiter-flexible's RateLimiterRedis). Debian's `redis-server` is installed through
 * apt-get when it is missing and this process runs as root; otherwise the error names the
 * command to run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { freePorts } from './ports.ts';
import { waitFor } from './wait.ts';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server';

function runnable(bin: string): boolean {
  return spawnSync(bin, ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Install a Debian package when `bin` is missing (root only); throws naming the command otherwise. */
export function ensureDebianPackage(bin: string, pkg: string, log: (m: string) => void = () => {}): void {
  if (runnable(bin)) return;
  const cmd = `apt-get install -y ${pkg}`;
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

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
}

export async function startRedisServer(log?: (m: string) => void): Promise<RedisServer> {
  ensureDebianPackage(REDIS_SERVER_BIN, 'redis-server', log);
  const [port] = await freePorts(1);
  const proc: ChildProcess = spawn(REDIS_SERVER_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const ping = () =>
    new Promise<boolean>((done) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => s.write('PING\r\n'));
      s.once('data', (b) => {
        s.destroy();
        done(b.toString().startsWith('+PONG'));
      });
      s.once('error', () => done(false));
    });
  await waitFor('redis-server to answer PING', ping, { timeoutMs: 10_000, intervalMs: 20 });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  process.once('exit', () => proc.kill('SIGKILL'));
  return { port, url: `redis://127.0.0.1:${port}`, stop };
}
