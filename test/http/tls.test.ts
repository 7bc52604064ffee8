/**
 * TLS on the HTTP listener (--tls-cert / --tls-key) with a certificate generated for the test:
 * a node process answers over HTTPS to a client that trusts the test CA, refuses plain HTTP,
 * and a client that does not trust the CA cannot connect.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNodeProcess, startNodeProcess, type NodeProcess } from '../../support/node-process.ts';
import { makeTestCertificates, type TestCertificates } from '../../support/tls.ts';
import { request } from './helpers.ts';

let certs: TestCertificates;
let dir: string;
let node: NodeProcess;

beforeAll(async () => {
  certs = makeTestCertificates();
  dir = mkdtempSync(join(tmpdir(), 'limiter-tls-node-'));
  const rules = join(dir, 'rules.yaml');
  writeFileSync(rules, 'rules:\n  - id: all\n    key: "*"\n    limits: [{ limit: 3, window: 1m }]\n');
  node = await startNodeProcess(['--rules', rules, '--data', join(dir, 'data'), '--tls-cert', certs.cert, '--tls-key', certs.key]);
});
afterAll(async () => {
  await node?.stop();
  certs?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('TLS listener', () => {
  it('serves checks over HTTPS to a client that trusts the CA', async () => {
    expect(node.url).toMatch(/^https:\/\//);
    const r = await request(node.url, '/v1/check', { body: { key: 'alice' }, ca: certs.caPem });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ allowed: true, remaining: 2, ruleId: 'all' });
  });

  it('answers admission ids and reports how many it holds in /v1/status', async () => {
    const d = (await request(node.url, '/v1/check', { body: { key: 'bob' }, ca: certs.caPem })).json<{ admissionId: string }>();
    expect(d.admissionId).toMatch(/^local-1\./);
    const st = (await request(node.url, '/v1/status', { ca: certs.caPem })).json<{ admissions: { held: number; forgottenEarly: number } }>();
    expect(st.admissions.held).toBeGreaterThanOrEqual(1);
    expect(st.admissions.forgottenEarly).toBe(0);
    const r = await request(node.url, '/v1/refund', { body: { admissionId: d.admissionId }, ca: certs.caPem });
    expect(r.json()).toEqual({ ruleId: 'all', refunded: 1 });
  });

  it('a client that does not trust the certificate cannot connect', async () => {
    await expect(request(node.url, '/v1/check', { body: { key: 'alice' } })).rejects.toThrow(/certificate/i);
  });

  it('plain HTTP on the TLS port gets no answer from the API', async () => {
    const r = await request(node.url.replace('https:', 'http:'), '/v1/check', { body: { key: 'alice' } }).catch((e: Error) => e);
    expect(r).toBeInstanceOf(Error);
    expect((r as Error).message).toMatch(/socket hang up|ECONNRESET|Parse Error/i);
  });

  it('a certificate without its key stops start-up with CONFIG_INVALID', async () => {
    const p = spawnNodeProcess(['--rules', join(dir, 'rules.yaml'), '--data', join(dir, 'data2'), '--tls-cert', certs.cert]);
    await expect(p.listening).rejects.toThrow(/exited with 2/);
    expect(p.logs.join('\n')).toMatch(/TLS needs both a certificate and a key/);
  });
});
