/**
 * A real redis-server on a free port with no persistence, for the bench's Redis-backed peer
 * (rate-limiter-flexible's RateLimiterRedis). Debian's `redis-server` is installed through
 * apt-get when it is missing and this process runs as root; otherwise the error names the
 * command to run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { ensureDebianPackage } from './debian.ts';
import net from 'node:net';
import { freePorts } from './ports.ts';
import { waitFor } from './wait.ts';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server';

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
