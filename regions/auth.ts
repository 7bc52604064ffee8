/**
 * NATS client authentication of a deployment: one nkey user per limiter node and one admin
 * user, and the `authorization` block of the generated nats-server configs.
 *
 * Nothing secret is ever in the repository. A config names each user's public key by an
 * environment variable (`$LIMITER_NKEY_<USER>`, resolved by nats-server at start); the seeds
 * (private keys) live in files the node reads (`--nats-nkey-file`). `npm run creds` generates
 * both into secrets/ (git-ignored): one `<user>.nk` seed file per user and `nats.env` with the
 * public keys for the servers. The permissions of a node's user are
 * src/replication/jetstream/permissions.ts; the admin user may do everything (stream
 * administration: `npm run provision`).
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nkeys } from 'nats';
import { nodePermissions } from '../src/replication/jetstream/permissions.ts';

/** The user that administers streams (never a node id: node ids are checked against it). */
export const ADMIN_USER = 'admin';

/** Environment variable holding a user's public nkey in the server configs: `LIMITER_NKEY_US_EAST_1`. */
export function nkeyEnvName(user: string): string {
  return `LIMITER_NKEY_${user.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export interface Credential {
  user: string;
  /** Seed (private key), e.g. `SUA…`: only the user's own process may read it. */
  seed: string;
  /** Public key, e.g. `UA…`: what the server config names. */
  publicKey: string;
}

/** New nkey pairs for `users` and the admin user. */
export function generateCredentials(users: readonly string[]): Map<string, Credential> {
  const out = new Map<string, Credential>();
  for (const user of [ADMIN_USER, ...users]) {
    const kp = nkeys.createUser();
    out.set(user, { user, seed: new TextDecoder().decode(kp.getSeed()), publicKey: kp.getPublicKey() });
  }
  return out;
}

/** What nats-server needs in its environment to resolve the configs' `$LIMITER_NKEY_*` references. */
export function serverEnv(creds: ReadonlyMap<string, Credential>): Record<string, string> {
  return Object.fromEntries([...creds.values()].map((c) => [nkeyEnvName(c.user), c.publicKey]));
}

/** Seed file of `user` in a credentials directory. */
export function seedFile(dir: string, user: string): string {
  return join(dir, `${user}.nk`);
}

/**
 * Writes `<user>.nk` (the seed, mode 0600) for every user and `nats.env` (the public keys,
 * `NAME=value` lines, as docker-compose's env_file and a shell's `set -a; . nats.env` read it).
 */
export function writeCredentials(dir: string, creds: ReadonlyMap<string, Credential>): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const c of creds.values()) {
    const f = seedFile(dir, c.user);
    writeFileSync(f, `${c.seed}\n`, { mode: 0o600 });
    chmodSync(f, 0o600);
  }
  const env = Object.entries(serverEnv(creds)).map(([k, v]) => `${k}=${v}`);
  writeFileSync(join(dir, 'nats.env'), `# public nkeys of the NATS users (not secret); the seeds are the .nk files\n${env.join('\n')}\n`);
}

const q = (s: string) => JSON.stringify(s);

/**
 * The `authorization` block of the server of `region`, whose limiter nodes are `nodes`, in a
 * deployment of `regions`.
 */
export function renderAuthorization(region: string, nodes: readonly string[], regions: readonly string[]): string[] {
  const lines = [
    '# Clients authenticate with nkeys; the public keys come from the environment',
    '# ($LIMITER_NKEY_<USER>: `npm run creds` writes them to secrets/nats.env beside the seeds).',
    '# The admin user administers the streams (`npm run provision`); each node may publish only',
    '# its own deltas and read what it needs (src/replication/jetstream/permissions.ts).',
    'authorization {',
    '  users: [',
    `    { nkey: $${nkeyEnvName(ADMIN_USER)} }`,
  ];
  for (const id of nodes) {
    const p = nodePermissions(region, id, regions);
    lines.push(
      '    {',
      `      nkey: $${nkeyEnvName(id)}`,
      '      permissions: {',
      '        publish: { allow: [',
      ...p.publish.map((s) => `          ${q(s)}`),
      '        ] }',
      '        subscribe: { allow: [',
      ...p.subscribe.map((s) => `          ${q(s)}`),
      '        ] }',
      '      }',
      '    }',
    );
  }
  lines.push('  ]', '}', '');
  return lines;
}
