/**
 * The README's copy-paste examples are files in examples/: a test checks that the README shows
 * each file verbatim, and runs the file itself (tsx or python3) against real components.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** The fenced code blocks of README.md, in order. */
export function readmeBlocks(): string[] {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  return [...text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** The example file's text, and whether README.md shows it whole in one block. */
export function exampleInReadme(rel: string): { text: string; shown: boolean } {
  const text = readFileSync(join(ROOT, rel), 'utf8');
  return { text, shown: readmeBlocks().some((b) => b === text) };
}

/** Run a command to its end; resolves with its exit code and output. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(cmd, args, { cwd: ROOT, env: { ...process.env, ...SOURCE_ENV, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      res({ code, stdout, stderr });
    });
  });
}

/** In the repository, `regionlimit` (the package's own name) resolves to its TypeScript sources. */
export const SOURCE_ENV = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=regionlimit-source`.trim() };

/** tsx, as installed with the project. */
export const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');

/** Start a long-running example (a server that prints `listening on {"port":…}`); resolves with its URL and a stop. */
export function startExample(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<{ url: string; output(): string; stop(): Promise<void> }> {
  const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...SOURCE_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  const stop = async () => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`${args.join(' ')} did not print "listening on" within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /listening on (\{.*\})/.exec(out);
      if (m) {
        clearTimeout(timer);
        const port = (JSON.parse(m[1]) as { port: number }).port;
        resolve({ url: `http://127.0.0.1:${port}`, output: () => out, stop });
      }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited before listening:\n${out}`));
    });
  });
}
