/**
 * Child processes for the benchmarks: TypeScript entry points run by Node with the tsx loader,
 * talking to the parent over the IPC channel. Servers under load, memory and restart figures
 * are measured in children so that the load generator (or a previous measurement's heap) does
 * not share the process being measured.
 *
 * Protocol (child → parent): `{type: 'ready', ...}` once listening, `{type: 'result', data}`
 * with the figures, `{type: 'error', message}` on failure. Parent → child: `{type: 'stop'}`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export interface ChildMessage {
  type: 'ready' | 'result' | 'error';
  [k: string]: unknown;
}

export interface ForkOptions {
  root: string;
  /** Extra node flags (e.g. --expose-gc). */
  nodeArgs?: string[];
  /** Write a CPU profile of the child into this directory. */
  profileDir?: string;
  /** Name prefix of the child's profile directory. */
  profileName?: string;
}

export class Child {
  readonly proc: ChildProcess;
  private readonly queue: ChildMessage[] = [];
  private waiter: ((m: ChildMessage) => void) | undefined;
  private exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exitPromise: Promise<void>;
  private stderr = '';

  constructor(script: string, args: string[], opts: ForkOptions) {
    const nodeArgs = ['--import', 'tsx', ...(opts.nodeArgs ?? [])];
    // One directory per child: Node writes one profile per thread (the main thread's is the
    // largest; tsx's loader runs in a worker) with default names that never collide.
    if (opts.profileDir) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', join(opts.profileDir, `${opts.profileName ?? 'child'}-${Date.now()}`));
    this.proc = fork(join(opts.root, script), args, {
      cwd: opts.root,
      execArgv: nodeArgs,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
    this.proc.stderr?.on('data', (b: Buffer) => {
      this.stderr += b.toString();
      if (this.stderr.length > 20_000) this.stderr = this.stderr.slice(-20_000);
    });
    this.proc.on('error', (err) => {
      this.stderr += `\n${err.message}`;
    });
    this.proc.on('message', (m: ChildMessage) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(m);
      } else this.queue.push(m);
    });
    this.exitPromise = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exited = { code, signal };
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          w({ type: 'error', message: `child ${script} exited (code ${code}, signal ${signal}) before answering\n${this.stderr.trim()}` });
        }
        resolve();
      });
    });
  }

  /** The next message from the child (an `error` message or an early exit rejects). */
  async next(timeoutMs: number): Promise<ChildMessage> {
    const m = this.queue.shift() ?? (await this.waitMessage(timeoutMs));
    if (m.type === 'error') throw new Error(String(m.message));
    return m;
  }

  private waitMessage(timeoutMs: number): Promise<ChildMessage> {
    if (this.exited) return Promise.resolve({ type: 'error', message: `child exited (code ${this.exited.code}) before answering\n${this.stderr.trim()}` });
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = undefined;
        resolve({ type: 'error', message: `child did not answer within ${timeoutMs} ms\n${this.stderr.trim()}` });
      }, timeoutMs);
      this.waiter = (m) => {
        clearTimeout(t);
        resolve(m);
      };
    });
  }

  /** Ask the child to stop cleanly; kill it if it has not exited after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    // The channel may already be closed (the child disconnected after its result): ignore that.
    if (this.proc.connected) this.proc.send({ type: 'stop' }, () => undefined);
    const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exitPromise;
    clearTimeout(t);
  }

  get exitCode(): number | null | undefined {
    return this.exited?.code;
  }
}

/** Run a child that answers one `result` message, then wait for it to exit. */
export async function runChild<T>(script: string, args: string[], opts: ForkOptions, timeoutMs: number): Promise<T> {
  const c = new Child(script, args, opts);
  try {
    const m = await c.next(timeoutMs);
    if (m.type !== 'result') throw new Error(`unexpected message ${m.type} from ${script}`);
    return m.data as T;
  } finally {
    await c.stop();
  }
}

// ---- child side ----

/** Send a message to the parent (printed as JSON when run by hand, without IPC). */
export function send(m: ChildMessage): void {
  if (process.send) process.send(m);
  else process.stdout.write(`${JSON.stringify(m)}\n`);
}

/** Run a child's main function: report its result or its error, then exit. */
export function childMain(fn: () => Promise<unknown>): void {
  fn().then(
    (data) => {
      send({ type: 'result', data });
      process.disconnect?.();
    },
    (err: unknown) => {
      send({ type: 'error', message: (err as Error)?.stack ?? String(err) });
      process.exitCode = 1;
      process.disconnect?.();
    },
  );
}

/** Resolves when the parent asks the child to stop (or the IPC channel closes). */
export function stopRequested(): Promise<void> {
  return new Promise((resolve) => {
    process.on('message', (m: { type?: string }) => {
      if (m?.type === 'stop') resolve();
    });
    process.on('disconnect', () => resolve());
  });
}
