/**
 * Runs a limiter node as a real process (`node --import tsx src/main.ts`: one process, so
 * `kill9()` kills the node itself) on a free port, for restart and crash tests. The URL is read
 * from the node's "listening" log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// Node itself with tsx's loader, not the `tsx` CLI: the CLI runs the program in a child process,
// so killing the CLI with SIGKILL would leave the node running (and holding its data directory).
const tsxLoader = pathToFileURL(join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export interface NodeProcess {
  url: string;
  proc: ChildProcess;
  logs: string[];
  /** Graceful stop (SIGTERM) and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** kill -9 and wait for exit. */
  kill9(): Promise<void>;
}

export async function startNodeProcess(args: string[], env: Record<string, string> = {}): Promise<NodeProcess> {
  const proc = spawn(process.execPath, ['--import', tsxLoader, join(root, 'src', 'main.ts'), '--port', '0', '--log-level', 'info', ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`node did not start in 30 s:\n${logs.join('\n')}`));
    }, 30_000);
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      logs.push(line);
      try {
        const j = JSON.parse(line) as { msg?: string; url?: string };
        if (j.msg === 'listening' && j.url) {
          clearTimeout(timer);
          resolve(j.url);
        }
      } catch {
        /* not JSON */
      }
    });
    createInterface({ input: proc.stderr! }).on('line', (l) => logs.push(l));
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code} before listening:\n${logs.join('\n')}`));
    });
  });
  const exited = once(proc, 'exit');
  return {
    url,
    proc,
    logs,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      return code;
    },
    async kill9() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export async function check(url: string, key: string, cost = 1): Promise<{ status: number; body: { allowed: boolean; remaining: number } }> {
  const res = await fetch(`${url}/v1/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key, cost }),
  });
  return { status: res.status, body: (await res.json()) as { allowed: boolean; remaining: number } };
}
