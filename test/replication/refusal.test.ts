/**
 * Replicated messages are hostile input: a node refuses, with its code, anything it cannot
 * decode, a payload whose origin is not the node its subject names, and cells of a node other
 * than the origin. Nothing of a refused message is applied, the refusal is counted, and the
 * consumer goes on with the next message. A real standalone nats-server, a real node.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { connect, type NatsConnection } from 'nats';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeDelta, RULES_KIND, WIRE_VERSION, type SlotEntry } from '../../crdt/index.ts';
import { loadConfig } from '../../src/config.ts';
import { startNode, type RunningNode } from '../../src/serve.ts';
import { nodeSubject } from '../../src/replication/subjects.ts';
import { startSingleServer } from '../../support/nats-server.ts';
import { waitFor } from '../../support/wait.ts';

const REGION = 'us-east';
let server: Awaited<ReturnType<typeof startSingleServer>>;
let node: RunningNode;
let nc: NatsConnection;
let dir: string;
let scope: string;
let slot: number;

async function usage(key: string): Promise<number> {
  const res = await node.app.inject({ method: 'GET', url: `/v1/usage?key=${encodeURIComponent(key)}` });
  expect(res.statusCode).toBe(200);
  return (res.json() as { limits: { usage: number }[] }).limits[0]!.usage;
}

interface ReplicationStatus {
  refused: number;
  messages: number;
  lastRefused: string | null;
  refusedByCode: Record<string, number>;
  refusedCells: Record<string, number>;
}

function replication(): ReplicationStatus {
  return node.status().replication as unknown as ReplicationStatus;
}

const env = (origin: string, entries: SlotEntry[]) => encodeDelta({ v: WIRE_VERSION, origin, seq: 1, sentAt: Date.now(), entries });

/** Publishes raw bytes into the region stream as if `from` had sent them. */
async function publishAs(from: string, bytes: Uint8Array): Promise<void> {
  await nc.jetstream().publish(nodeSubject(REGION, from), bytes);
}

function cell(key: string, node: string, p: number): SlotEntry {
  return { scope, key, slot, node, p, n: 0 };
}

beforeAll(async () => {
  server = await startSingleServer();
  dir = mkdtempSync(join(tmpdir(), 'limiter-refusal-'));
  const rules = join(dir, 'rules.yaml');
  // Near-limit sharing is off: this test counts 1000 checks in a row, without retrying a SHARE_WAIT.
  writeFileSync(rules, 'version: 1\nrules:\n  - id: k\n    key: "*"\n    nearLimitSharing: false\n    limits: [{ limit: 1000, window: 1h }]\n');
  const config = loadConfig(
    ['--node-id', 'us-east-1', '--region', REGION, '--nats', server.url, '--rules', rules, '--data', join(dir, 'data'), '--port', '0', '--log-level', 'silent'],
    {},
  );
  node = await startNode(config, { logger: pino({ level: 'silent' }) });
  await waitFor('node ready', async () => (await node.app.inject({ method: 'GET', url: '/readyz' })).json().degraded === false, { timeoutMs: 20_000 });
  nc = await connect({ servers: server.url });
  const cl = [...node.engine.allScopes()][0]!;
  scope = cl.scope;
  slot = Math.floor(Date.now() / cl.math.slotMs);
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await node?.close();
  await server?.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('refusing replicated messages', () => {
  it('refuses garbage, unknown versions, forged origins and foreign cells, applies nothing of them, and goes on', async () => {
    const before = replication().refused;

    await publishAs('evil-1', new Uint8Array([0xc1, 0x00, 0xff]));
    await waitFor('garbage refused', () => replication().refused === before + 1, { timeoutMs: 10_000 });
    expect(replication().lastRefused).toMatch(/^CODEC_/);

    await publishAs('evil-1', pack([RULES_KIND + 1, 'evil-1', 1, Date.now(), [], [], []]));
    await waitFor('unknown version refused', () => replication().refused === before + 2, { timeoutMs: 10_000 });
    expect(replication().lastRefused).toMatch(/^CODEC_UNSUPPORTED_VERSION/);

    // The subject names evil-1, the payload claims to come from eu-west-1.
    await publishAs('evil-1', env('eu-west-1', [cell('victim', 'eu-west-1', 500)]));
    await waitFor('forged origin refused', () => replication().refused === before + 3, { timeoutMs: 10_000 });
    expect(replication().lastRefused).toMatch(/^REPLICATION_FORGED/);

    // evil-1 is honest about itself but carries counts of another node.
    await publishAs('evil-1', env('evil-1', [cell('victim', 'evil-1', 1), cell('victim', 'eu-west-1', 500)]));
    await waitFor('foreign cells refused', () => replication().refused === before + 4, { timeoutMs: 10_000 });

    expect(await usage('victim')).toBe(0);

    // The consumer was not stuck on any of them: a valid message behind them is applied.
    await publishAs('evil-1', env('evil-1', [cell('victim', 'evil-1', 7)]));
    await waitFor('valid message applied', async () => (await usage('victim')) === 7, { timeoutMs: 10_000 });
    expect(replication().refused).toBe(before + 4);
  }, 60_000);

  it('keeps answering checks and its own count through refused messages', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await node.app.inject({ method: 'POST', url: '/v1/check', payload: { key: 'mine' } });
      expect(res.statusCode).toBe(200);
    }
    const before = replication().refused;
    await publishAs('evil-1', new Uint8Array(0));
    await publishAs('evil-1', env2());
    await waitFor('both refused', () => replication().refused === before + 2, { timeoutMs: 10_000 });
    expect(replication().lastRefused).toMatch(/^CODEC_INVALID_FIELD/);
    expect(await usage('mine')).toBe(3);
  }, 30_000);
});

describe('limits on what a peer can claim', () => {
  it('refuses counts no node could have admitted, refunds of more than was admitted and far-future slots, cell by cell, and counts them', async () => {
    const cells0 = { ...replication().refusedCells };
    const messages0 = replication().messages;
    // Limit 1000 per hour: a ghost count of 2^32 − 1 on one key, a refund of 2^32 − 1 on
    // another (which would drive its usage negative), and a cell 25 hours ahead.
    await publishAs('evil-2', env('evil-2', [cell('ghost', 'evil-2', 0xffff_ffff)]));
    await publishAs('evil-2', env('evil-2', [{ scope, key: 'refunded', slot, node: 'evil-2', p: 0, n: 0xffff_ffff }]));
    await publishAs('evil-2', env('evil-2', [{ scope, key: 'ahead', slot: slot + 25, node: 'evil-2', p: 5, n: 0 }]));
    // One message mixing a possible cell with an impossible one: only the possible one applies.
    await publishAs('evil-2', env('evil-2', [cell('mixed', 'evil-2', 9), cell('mixed2', 'evil-2', 1001)]));
    await waitFor('all four messages handled', () => replication().messages === messages0 + 4, { timeoutMs: 10_000 });
    const cells = replication().refusedCells;
    expect(cells.CELL_OVER_CAPACITY! - (cells0.CELL_OVER_CAPACITY ?? 0)).toBe(2);
    expect(cells.CELL_REFUND_EXCEEDS_ADMITTED! - (cells0.CELL_REFUND_EXCEEDS_ADMITTED ?? 0)).toBe(1);
    expect(cells.CELL_SLOT_AHEAD! - (cells0.CELL_SLOT_AHEAD ?? 0)).toBe(1);
    expect(await usage('ghost')).toBe(0);
    expect(await usage('ahead')).toBe(0);
    expect(await usage('mixed2')).toBe(0);
    expect(await usage('mixed')).toBe(9);
    // The refund changed nothing: 1000 admitted, the 1001st denied.
    for (let i = 0; i < 1000; i++) {
      const res = await node.app.inject({ method: 'POST', url: '/v1/check', payload: { key: 'refunded' } });
      expect(res.statusCode).toBe(200);
    }
    const res = await node.app.inject({ method: 'POST', url: '/v1/check', payload: { key: 'refunded' } });
    expect(res.statusCode).toBe(429);
  }, 60_000);

  it('refuses a batch of more cells than a node ships in one, applying none of it', async () => {
    const before = replication().refusedByCode.REPLICATION_BATCH_TOO_LARGE ?? 0;
    const many = Array.from({ length: 40_000 }, (_, i) => cell(`flood-${i}`, 'evil-3', 1));
    await publishAs('evil-3', env('evil-3', many));
    await waitFor('the flood refused', () => (replication().refusedByCode.REPLICATION_BATCH_TOO_LARGE ?? 0) === before + 1, { timeoutMs: 10_000 });
    expect(await usage('flood-0')).toBe(0);
    expect(await usage('flood-39999')).toBe(0);
    expect(replication().lastRefused).toMatch(/^REPLICATION_BATCH_TOO_LARGE: batch from evil-3 carries 40000 cells, max 4096/);
  }, 30_000);
});

/** An envelope that decodes but claims a negative count (a wrong range). */
function env2(): Uint8Array {
  return pack([WIRE_VERSION, 'evil-1', 2, Date.now(), [[scope, slot]], ['evil-1'], [0, 'mine', 0, 0, -5, 0]]);
}
