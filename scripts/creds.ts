/**
 * `npm run creds`: generates the NATS users of the deployment in regions/*.json (one nkey user
 * per limiter node, and the admin user) into secrets/ (git-ignored, docker-ignored):
 * `<user>.nk` seed files (mode 0600) and `nats.env` with the public keys the generated server
 * configs reference. `--dev` generates the users of the development server (nats.conf) instead.
 *
 *   npm run creds -- [--dev] [--out DIR] [--force]
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { generateCredentials, writeCredentials } from '../regions/auth.ts';
import { DEV_NODE, loadTopology, SECRETS_DIR } from '../regions/topology.ts';

const { values } = parseArgs({
  options: { dev: { type: 'boolean' }, out: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  strict: true,
});
if (values.help) {
  process.stdout.write('usage: npm run creds -- [--dev] [--out DIR] [--force]\n\nWrites NATS nkey users (seeds and nats.env) for every node of regions/*.json (or, with --dev, of nats.conf) and the admin user.\n');
  process.exit(0);
}
const out = resolve(values.out ?? SECRETS_DIR);
if (existsSync(join(out, 'nats.env')) && !values.force) {
  process.stderr.write(`creds: ${out} already holds credentials; --force replaces them (servers and nodes then need restarting)\n`);
  process.exit(2);
}
const users = values.dev ? [DEV_NODE.id] : loadTopology().regions.flatMap((r) => r.nodes.map((n) => n.id));
const creds = generateCredentials(users);
writeCredentials(out, creds);
process.stdout.write(`wrote ${creds.size} NATS users (${[...creds.keys()].join(', ')}) to ${out}: <user>.nk seeds (keep them secret) and nats.env (public keys for the servers)\n`);
