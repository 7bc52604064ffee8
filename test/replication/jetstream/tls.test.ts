/**
 * TLS between a node and NATS, on a real nats-server that requires TLS and verifies client
 * certificates, with certificates generated in the test (support/tls.ts):
 * - a node given the CA and its client certificate connects, replicates and is ready;
 * - without the CA it refuses the server (unknown issuer); without a client certificate the
 *   server refuses it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { startNode, type RunningNode } from '../../../src/serve.ts';
import { JetStreamTransport, ReplicationError } from '../../../src/replication/jetstream/index.ts';
import { startSingleServer } from '../../../support/nats-server.ts';
import { makeTestCertificates, type TestCertificates } from '../../../support/tls.ts';
import { waitFor } from '../../../support/wait.ts';

let certs: TestCertificates;
let server: Awaited<ReturnType<typeof startSingleServer>>;
let node: RunningNode | undefined;
let dir: string;

beforeAll(async () => {
  certs = makeTestCertificates();
  server = await startSingleServer({ tls: { cert: certs.cert, key: certs.key, caFile: certs.caCert, clientCert: certs.clientCert, clientKey: certs.clientKey } });
  dir = mkdtempSync(join(tmpdir(), 'limiter-nats-tls-'));
  writeFileSync(join(dir, 'rules.yaml'), 'version: 1\nrules:\n  - id: k\n    key: "*"\n    limits: [{ limit: 10, window: 1m }]\n');
}, 60_000);

afterAll(async () => {
  await node?.close();
  await server?.stopAll();
  certs?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('a node with the CA and its client certificate connects over TLS and replicates', async () => {
  const config = loadConfig(
    ['--nats', server.url, '--nats-tls-ca', certs.caCert, '--nats-tls-cert', certs.clientCert, '--nats-tls-key', certs.clientKey, '--rules', join(dir, 'rules.yaml'), '--data', join(dir, 'data'), '--port', '0', '--log-level', 'silent'],
    {},
  );
  node = await startNode(config, { logger: pino({ level: 'silent' }) });
  await waitFor('node ready', async () => (await node!.app.inject({ method: 'GET', url: '/readyz' })).json().degraded === false, { timeoutMs: 20_000 });
  expect((await node.app.inject({ method: 'POST', url: '/v1/check', payload: { key: 'k1' } })).statusCode).toBe(200);
  await waitFor('the admission shipped', () => ((node!.status().replication as { shipping: { rounds: number } }).shipping.rounds ?? 0) >= 1, { timeoutMs: 10_000 });
}, 60_000);

it('refuses a server whose certificate it cannot verify, and the server refuses a client without a certificate', async () => {
  const noCa = new JetStreamTransport({ servers: server.url, region: 'local', regions: ['local'], nodeId: 'tls-no-ca', tls: { certFile: certs.clientCert, keyFile: certs.clientKey } });
  const e1 = await noCa.connect().then(() => null, (e: unknown) => e);
  expect(e1).toBeInstanceOf(ReplicationError);
  expect((e1 as Error).message).toMatch(/certificate/i);
  await noCa.close();
  const noCert = new JetStreamTransport({ servers: server.url, region: 'local', regions: ['local'], nodeId: 'tls-no-cert', tls: { caFile: certs.caCert } });
  const e2 = await noCert.connect().then(() => null, (e: unknown) => e);
  expect(e2).toBeInstanceOf(ReplicationError);
  await noCert.close();
}, 30_000);
