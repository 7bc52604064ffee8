/**
 * OpenTelemetry tracing with --otlp-endpoint (two real nodes replicating through a real
 * nats-server, spans exported over OTLP/HTTP to a receiving HTTP server): sampled `check`
 * spans with rule and outcome (never the key), `replication.publish` on the sender and
 * `replication.apply` on the receiver, with the node in the resource; and the options' checks.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startNode, type RunningNode } from '../../src/serve.ts';
import { startSingleServer } from '../../support/nats-server.ts';
import { waitFor } from '../../support/wait.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp.ts';

const dir = mkdtempSync(join(tmpdir(), 'limiter-tracing-'));
const nodes: RunningNode[] = [];
let server: Awaited<ReturnType<typeof startSingleServer>> | undefined;
let receiver: OtlpReceiver | undefined;
afterAll(async () => {
  for (const n of nodes) await n.close();
  await server?.stopAll();
  await receiver?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(id: string, extra: string[]): Promise<RunningNode> {
  const config = loadConfig(['--node-id', id, '--rules', join(dir, 'rules.yaml'), '--data', join(dir, id), '--port', '0', '--log-level', 'silent', ...extra], {});
  const n = await startNode(config);
  nodes.push(n);
  return n;
}

async function check(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }) });
  await res.arrayBuffer();
  return res.status;
}

describe('tracing', () => {
  it('exports sampled check spans and replication publish and apply spans over OTLP/HTTP', async () => {
    writeFileSync(join(dir, 'rules.yaml'), 'rules:\n  - id: traced\n    key: "t:*"\n    limits: [{ limit: 3, window: 1m }]\n');
    server = await startSingleServer();
    receiver = await startOtlpReceiver();
    const r = receiver;
    const sender = await start('trace-a', ['--nats', server.url, '--otlp-endpoint', r.url, '--otlp-check-sample', '2']);
    const peer = await start('trace-b', ['--nats', server.url, '--otlp-endpoint', r.url]);
    // 4 checks of one key: 3 allowed, 1 denied; one in two is traced.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push(await check(sender.url, 't:secret-key'));
    expect(statuses).toEqual([200, 200, 200, 429]);
    await waitFor('check, publish and apply spans', () => {
      const names = r.spans.map((s) => `${s.resource['service.instance.id']}:${s.name}`);
      return names.includes('trace-a:check') && names.includes('trace-a:replication.publish') && names.includes('trace-b:replication.apply');
    }, { timeoutMs: 20_000, describe: () => JSON.stringify(r.requests) });
    await waitFor('both sampled checks', () => r.spans.filter((s) => s.name === 'check').length === 2, { timeoutMs: 10_000 });
    const checks = r.spans.filter((s) => s.name === 'check');
    // Checks 2 and 4: allowed, then denied.
    expect(checks.map((s) => s.attributes['regionlimit.allowed'])).toEqual([true, false]);
    for (const s of checks) {
      expect(s.attributes['regionlimit.rule']).toBe('traced');
      expect(s.resource['service.name']).toBe('regionlimit');
      expect(s.resource['cloud.region']).toBe('local');
    }
    expect(JSON.stringify(r.spans)).not.toContain('secret-key');
    const apply = r.spans.find((s) => s.name === 'replication.apply' && s.resource['service.instance.id'] === 'trace-b')!;
    expect(apply.attributes['regionlimit.peer']).toBe('trace-a');
    expect(apply.attributes['regionlimit.cells']).toBeGreaterThan(0);
    expect(r.requests.every((q) => q.startsWith('POST /v1/traces application/json'))).toBe(true);
    expect(peer.config.otlpEndpoint).toBe(r.url);
  }, 60_000);

  it('refuses an --otlp-endpoint that is not an http(s) URL, and a sample of 0', () => {
    const base = ['--rules', join(dir, 'rules.yaml')];
    expect(() => loadConfig([...base, '--otlp-endpoint', 'collector:4318'], {})).toThrow(/otlpEndpoint/);
    expect(() => loadConfig([...base, '--otlp-check-sample', '0'], {})).toThrow(/otlpCheckSample/);
    expect(loadConfig([...base, '--otlp-endpoint', 'https://collector.example:4318/v1/traces'], {}).otlpEndpoint).toBe('https://collector.example:4318/v1/traces');
  });
});
