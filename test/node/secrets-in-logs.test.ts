/**
 * A node never writes NATS credentials to its log: URLs are logged without `user:password@`,
 * and the nkey seed it reads is never printed. A real standalone nats-server (which takes any
 * credentials when it has no authorization configured), a real node, its log captured.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { nkeys } from 'nats';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { redactUrl } from '../../src/replication/jetstream/index.ts';
import { startNode, type RunningNode } from '../../src/serve.ts';
import { startSingleServer } from '../../support/nats-server.ts';
import { waitFor } from '../../support/wait.ts';

let server: Awaited<ReturnType<typeof startSingleServer>> | undefined;
let node: RunningNode | undefined;
const dir = mkdtempSync(join(tmpdir(), 'limiter-logs-'));

afterAll(async () => {
  await node?.close();
  await server?.stopAll();
  rmSync(dir, { recursive: true, force: true });
});

it('redactUrl drops user and password from NATS URLs', () => {
  expect(redactUrl('nats://alice:s3cr3t@host:4222')).toBe('nats://host:4222');
  expect(redactUrl('tls://token@nats.example:4443')).toBe('tls://nats.example:4443');
  expect(redactUrl('nats://host:4222')).toBe('nats://host:4222');
});

it('logs neither the password in --nats nor the nkey seed', async () => {
  server = await startSingleServer();
  const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
  writeFileSync(join(dir, 'node.nk'), `${seed}\n`);
  writeFileSync(join(dir, 'rules.yaml'), 'version: 1\nrules:\n  - id: k\n    key: "*"\n    limits: [{ limit: 10, window: 1m }]\n');
  let log = '';
  const sink = new Writable({ write: (chunk, _enc, cb) => ((log += String(chunk)), cb()) });
  const url = server.url.replace('nats://', 'nats://alice:s3cr3t-pw@');
  const config = loadConfig(['--nats', url, '--nats-nkey-file', join(dir, 'node.nk'), '--rules', join(dir, 'rules.yaml'), '--data', join(dir, 'data'), '--port', '0'], {});
  node = await startNode(config, { logger: pino({ level: 'trace' }, sink) });
  await waitFor('the node to listen', () => log.includes('"listening"'), { timeoutMs: 20_000 });
  expect(log).toContain(server.url.replace('nats://', ''));
  expect(log).not.toContain('s3cr3t-pw');
  expect(log).not.toContain(seed);
  expect(log).not.toContain(seed.slice(2, 20));
});
