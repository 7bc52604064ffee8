/**
 * Writes the files generated from the region topology (regions/*.json):
 * regions/nats/<region>.conf, nats.conf and docker-compose.yml. Removes configs of regions that
 * no longer exist. `npm run gen:regions`; `--check` only reports stale files (exit 1).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTopology, renderGeneratedFiles } from '../regions/topology.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

const topology = loadTopology();
const files = renderGeneratedFiles(topology);
const stale: string[] = [];
for (const f of files) {
  const abs = join(root, f.path);
  const current = existsSync(abs) ? readFileSync(abs, 'utf8') : null;
  if (current === f.content) continue;
  stale.push(f.path);
  if (!check) {
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, f.content);
  }
}
const wanted = new Set(files.map((f) => f.path));
const natsDir = join(root, 'regions/nats');
if (existsSync(natsDir)) {
  for (const f of readdirSync(natsDir)) {
    const rel = `regions/nats/${f}`;
    if (f.endsWith('.conf') && !wanted.has(rel)) {
      stale.push(rel);
      if (!check) rmSync(join(natsDir, f));
    }
  }
}
if (check) {
  if (stale.length) {
    console.error(`stale generated files (run npm run gen:regions): ${stale.join(', ')}`);
    process.exit(1);
  }
  console.log('generated files are up to date');
} else {
  console.log(stale.length ? `updated: ${stale.join(', ')}` : 'generated files are up to date');
}
