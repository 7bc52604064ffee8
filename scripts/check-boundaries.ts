/**
 * Layering check (run in CI):
 * - crdt/ is pure: it imports only crdt/ files and msgpackr; no node:* modules, no I/O
 *   packages, no clock or randomness reads.
 * - src/engine/ imports only crdt/ and src/engine/ (plus node:fs for reading the rules file);
 *   adapters (http, storage, replication, metrics) depend on the engine, never the reverse.
 * - No import cycles anywhere (dpdm).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { execFileSync } from 'node:child_process';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const problems: string[] = [];

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) out.push(m[1] ?? m[2]);
  return out;
}

function inside(file: string, dir: string): boolean {
  return !relative(join(root, dir), file).startsWith('..');
}

for (const f of files(join(root, 'crdt'))) {
  const rel = relative(root, f);
  for (const spec of imports(f)) {
    if (spec === 'msgpackr') continue;
    if (spec.startsWith('.')) {
      const target = resolve(dirname(f), spec);
      if (!inside(target, 'crdt')) problems.push(`${rel}: imports ${spec}, outside crdt/`);
      continue;
    }
    problems.push(`${rel}: imports "${spec}"; crdt/ may import only crdt/ and msgpackr`);
  }
  const text = readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
  for (const banned of ['Date.now', 'new Date(', 'performance.now', 'Math.random', 'process.', 'setTimeout', 'setInterval', 'require(']) {
    if (text.includes(banned)) problems.push(`${rel}: uses ${banned}; crdt/ takes time and randomness as parameters and does no I/O`);
  }
}

const ENGINE_NODE_ALLOWED = new Set(['node:fs']);
for (const f of files(join(root, 'src', 'engine'))) {
  const rel = relative(root, f);
  for (const spec of imports(f)) {
    if (spec.startsWith('.')) {
      const target = resolve(dirname(f), spec);
      if (!inside(target, 'crdt') && !inside(target, join('src', 'engine'))) problems.push(`${rel}: imports ${spec}; the engine depends only on crdt/ and itself`);
    } else if (spec.startsWith('node:') && !ENGINE_NODE_ALLOWED.has(spec)) {
      problems.push(`${rel}: imports ${spec}; the engine does no I/O besides reading its rules file`);
    }
  }
}

try {
  execFileSync(
    join(root, 'node_modules', '.bin', 'dpdm'),
    ['--no-warning', '--no-tree', '--no-progress', '--exit-code', 'circular:1', '-T', 'src/main.ts', 'crdt/index.ts', 'crdt/codec.ts'],
    { cwd: root, stdio: 'pipe' },
  );
} catch (err) {
  const e = err as { stdout?: Buffer; stderr?: Buffer };
  problems.push(`import cycle(s) found by dpdm:\n${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`);
}

if (problems.length > 0) {
  console.error(`boundary check failed:\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
console.log('boundary check passed: crdt/ is pure, the engine depends only on crdt/, no import cycles');
