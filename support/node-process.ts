/**
 * A limiter node as a real process, for the tests and scripts/regions.ts: `node --import tsx
 * src/main.ts ARGS`, its URL read from the node's "listening" log line.
 *
 * Node itself with tsx's loader, not the `tsx` CLI: the CLI runs the program in a second process
 * and relays signals, so each node would be two processes, and a SIGKILL of the CLI would leave
 * the node running (and holding its data directory).
 *
 * `startNodeProcess` (tests): a free port, info logs, resolves once listening.
 * `spawnNodeProcess`: the caller's arguments and output handling; returns at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsxLoader = pathToFileURL(join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export interface NodeProcessOptions {
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Run in its own process group (a terminal's Ctrl-C then reaches only the parent). */
  detached?: boolean;
  /** Called with every output line (stdout and stderr). */
  onLine?: (line: string) => void;
  /** How long to wait for the "listening" line (default 30 s); the process is then killed. */
  listenTimeoutMs?: number;
  /** The process in error messages (default "node"). */
  name?: string;
  /** Keep only the last this many lines in `logs` (default: every line). */
  maxLogLines?: number;
}

export interface NodeProcess {
  url: string;
  proc: ChildProcess;
  /** Output lines (stdout and stderr). */
  logs: string[];
  /** Graceful stop (SIGTERM) and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** kill -9 and wait for exit. */
  kill9(): Promise<void>;
}

export interface SpawnedNodeProcess extends Omit<NodeProcess, 'url'> {
  /** The URL from the "listening" line; rejects when the process exits first or after the timeout. */
  listening: Promise<string>;
}

/** Starts `node --import tsx src/main.ts ...args` (cwd: the repository root) without waiting. */
export function spawnNodeProcess(args: string[], opts: NodeProcessOptions = {}): SpawnedNodeProcess {
  const name = opts.name ?? 'node';
  const timeoutMs = opts.listenTimeoutMs ?? 30_000;
  const proc = spawn(process.execPath, ['--import', tsxLoader, join(root, 'src', 'main.ts'), ...args], {
    cwd: root,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.detached ?? false,
  });
  const logs: string[] = [];
  const keep = (line: string) => {
    logs.push(line);
    if (opts.maxLogLines !== undefined && logs.length > opts.maxLogLines) logs.splice(0, logs.length - opts.maxLogLines);
    opts.onLine?.(line);
  };
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${name} did not log "listening" within ${timeoutMs / 1000} s:\n${logs.join('\n')}`));
    }, timeoutMs);
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      keep(line);
      try {
        const j = JSON.parse(line) as { msg?: unknown; url?: unknown };
        if (j.msg === 'listening' && typeof j.url === 'string') {
          clearTimeout(timer);
          resolve(j.url);
        }
      } catch {
        /* not JSON */
      }
    });
    createInterface({ input: proc.stderr! }).on('line', keep);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code ?? signal} before listening:\n${logs.join('\n')}`));
    });
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${name} failed to start: ${err.message}`));
    });
  });
  const done = () => proc.exitCode !== null || proc.signalCode !== null;
  return {
    proc,
    logs,
    listening,
    async stop() {
      if (done()) return proc.exitCode;
      proc.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (done()) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** Starts a node on a free port (`--port 0 --log-level info` before `args`) and waits until it listens. */
export async function startNodeProcess(args: string[], env: Record<string, string> = {}): Promise<NodeProcess> {
  const p = spawnNodeProcess(['--port', '0', '--log-level', 'info', ...args], { env });
  const url = await p.listening;
  return { url, proc: p.proc, logs: p.logs, stop: p.stop, kill9: p.kill9 };
}

/** POST /v1/check {key, cost} to a node. */
export async function check(url: string, key: string, cost = 1): Promise<{ status: number; body: { allowed: boolean; remaining: number } }> {
  const res = await fetch(`${url}/v1/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key, cost }),
  });
  return { status: res.status, body: (await res.json()) as { allowed: boolean; remaining: number } };
}
