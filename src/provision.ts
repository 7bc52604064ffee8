/**
 * `npm run provision`: creates (or adopts and updates) every replication stream of a
 * deployment, as the NATS admin user. Nodes' own NATS users may not administer streams
 * (docs/SECURITY.md), so this runs once before the nodes start, and again after a region is
 * added or the retention changes. Idempotent.
 *
 *   npm run provision -- --nats URL --regions A,B,C --nkey-file secrets/admin.nk [--stream-max-age 24h]
 *   npm run provision -- --dev        (the development server of nats.conf: region "local")
 *
 * Exit 0 when every stream exists as configured, 1 when NATS failed, 2 for a usage error.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from './engine/duration.ts';
import type { Problem } from './engine/errors.ts';
import { provisionDeployment, redactUrl } from './replication/jetstream/index.ts';
import { regionNameProblem } from './replication/subjects.ts';

const USAGE = `usage: npm run provision -- --nats URL[,URL] --regions A,B,C [options]

Creates every replication stream of the deployment as the NATS admin user.

options:
  --nats URLS            NATS server URL(s) of any region (env LIMITER_NATS)
  --regions A,B,C        every region of the deployment (env LIMITER_REGIONS)
  --nkey-file FILE       the admin user's nkey seed (env LIMITER_NATS_NKEY_FILE; default secrets/admin.nk)
  --stream-max-age DUR   how long streams keep deltas (env LIMITER_STREAM_MAX_AGE; default 24h)
  --timeout DUR          how long to wait for JetStream to be ready (default 60s)
  --dev                  the development server: --nats nats://127.0.0.1:4222 --regions local
  --help, -h             show this help
`;

function fail(message: string, code: number): never {
  process.stderr.write(`provision: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nats: { type: 'string' },
      regions: { type: 'string' },
      'nkey-file': { type: 'string' },
      'stream-max-age': { type: 'string' },
      timeout: { type: 'string' },
      dev: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const env = process.env;
  const nats = (values.nats ?? env.LIMITER_NATS ?? (values.dev ? 'nats://127.0.0.1:4222' : '')).split(',').filter(Boolean);
  const regions = (values.regions ?? env.LIMITER_REGIONS ?? (values.dev ? 'local' : '')).split(',').filter(Boolean);
  const problems: Problem[] = [];
  if (nats.length === 0) problems.push({ code: 'FIELD_MISSING', path: '/nats', message: '--nats is required' });
  if (regions.length === 0) problems.push({ code: 'FIELD_MISSING', path: '/regions', message: '--regions is required' });
  regions.forEach((r, i) => {
    const p = regionNameProblem(r, `/regions/${i}`);
    if (p) problems.push({ ...p, message: `region ${JSON.stringify(r)}: ${p.message}` });
  });
  const notDuration = (path: string, flag: string, example: string) => problems.push({ code: 'TYPE_MISMATCH', path, message: `--${flag} must be a duration like ${example}` });
  const maxAgeMs = parseDuration(values['stream-max-age'] ?? env.LIMITER_STREAM_MAX_AGE ?? '24h') ?? notDuration('/streamMaxAge', 'stream-max-age', '24h');
  const timeoutMs = parseDuration(values.timeout ?? '60s') ?? notDuration('/timeout', 'timeout', '60s');
  const seedFile = values['nkey-file'] ?? env.LIMITER_NATS_NKEY_FILE ?? 'secrets/admin.nk';
  let seed = '';
  try {
    seed = readFileSync(seedFile, 'utf8').trim();
  } catch (err) {
    problems.push({ code: 'CONFIG_UNREADABLE', path: '/nkeyFile', file: seedFile, message: `cannot read the admin nkey seed: ${(err as Error).message} (npm run creds writes it)` });
  }
  if (problems.length) fail(`${problems.map((p) => `${p.code} ${p.file ?? ''}${p.file ? ' ' : ''}at ${p.path}: ${p.message}`).join('\n  ')}\n\n${USAGE}`, 2);

  const done = await provisionDeployment({ servers: nats, regions, nkeySeed: seed, maxAgeMs: maxAgeMs as number, timeoutMs: timeoutMs as number });
  for (const d of done) process.stdout.write(`${d.stream}: ${d.outcome}\n`);
  process.stdout.write(`provisioned ${done.length} streams for ${regions.join(', ')} at ${nats.map(redactUrl).join(',')}\n`);
}

main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err), 1));
