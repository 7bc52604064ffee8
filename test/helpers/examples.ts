/**
 * The README's copy-paste examples are files in examples/: a test checks that the README shows
 * each file verbatim, and runs the file itself (tsx or python3) against real components.
 */
import { execFile } from 'node:child_process';
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
    execFile(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      res({ code, stdout, stderr });
    });
  });
}

/** tsx, as installed with the project. */
export const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
