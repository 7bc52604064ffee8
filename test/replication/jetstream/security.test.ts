/**
 * NATS credentials and permissions, on real nats-server processes configured as the generated
 * configs are (regions/auth.ts): two regions, us-east with nodes us-east-1 and us-east-2,
 * eu-west with eu-west-1; every node its own nkey user; the streams provisioned by the admin.
 *
 * - a client without credentials, or with unknown ones, cannot connect;
 * - a node's user cannot publish on another node's subject, administer streams, touch another
 *   node's consumers, or read anything but its own deliveries and replies;
 * - a node's user cannot create the streams: the node waits (REPLICATION_NOT_PROVISIONED)
 *   until the admin provisions them;
 * - real nodes with their own credentials replicate across the regions, and a compromised
 *   node's forged deltas (another node's cells, impossible counts) change no node's count.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, ErrorCode, nkeyAuthenticator, nkeys, type NatsConnection, type NatsError } from 'nats';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeDelta, WIRE_VERSION, type SlotEntry } from '../../../crdt/index.ts';
import { generateCredentials, seedFile, writeCredentials, type Credential } from '../../../regions/auth.ts';
import { topologyFromNames, type Topology } from '../../../regions/topology.ts';
import { loadConfig } from '../../../src/config.ts';
import { startNode, type RunningNode } from '../../../src/serve.ts';
import { JetStreamTransport, ReplicationError, provisionDeployment } from '../../../src/replication/jetstream/index.ts';
import { deliverSubject, durableName, nodeSubject, regionStreamName } from '../../../src/replication/subjects.ts';
import { startSupercluster, type Supercluster } from '../../../support/supercluster.ts';
import { waitFor } from '../../../support/wait.ts';

const REGIONS = ['eu-west', 'us-east'];
const NODES: Record<string, string> = { 'us-east-1': 'us-east', 'us-east-2': 'us-east', 'eu-west-1': 'eu-west' };

const topology: Topology = topologyFromNames(REGIONS, Object.entries(NODES).map(([id, region]) => ({ id, region })));

let sc: Supercluster;
let creds: Map<string, Credential>;
let dir: string;
const nodes = new Map<string, RunningNode>();
const conns: NatsConnection[] = [];

const urlOf = (region: string) => sc.region(region).url;
const seedOf = (user: string) => new TextEncoder().encode(creds.get(user)!.seed);

async function connectAs(user: string, region = NODES[user] ?? 'us-east'): Promise<NatsConnection> {
  const nc = await connect({ servers: urlOf(region), authenticator: nkeyAuthenticator(seedOf(user)), inboxPrefix: `_INBOX.${user}` });
  conns.push(nc);
  return nc;
}

async function rejection(p: Promise<unknown>): Promise<NatsError> {
  try {
    await p;
  } catch (err) {
    return err as NatsError;
  }
  throw new Error('expected a rejection');
}

/** A stream's state as the admin sees it (the nodes keep publishing heartbeats meanwhile). */
async function streamState(stream: string): Promise<{ messages: number; firstSeq: number; lastSeq: number; deleted: number }> {
  const nc = await connectAs('admin', 'us-east');
  const st = (await (await nc.jetstreamManager()).streams.info(stream)).state;
  return { messages: st.messages, firstSeq: st.first_seq, lastSeq: st.last_seq, deleted: st.num_deleted ?? 0 };
}

/** The payloads stored in a stream after sequence `after`. */
async function payloadsAfter(stream: string, after: number): Promise<string[]> {
  const nc = await connectAs('admin', 'us-east');
  const jsm = await nc.jetstreamManager();
  const last = (await jsm.streams.info(stream)).state.last_seq;
  const out: string[] = [];
  for (let seq = after + 1; seq <= last; seq++) out.push(Buffer.from((await jsm.streams.getMessage(stream, { seq })).data).toString('latin1'));
  return out;
}

async function usage(node: RunningNode, key: string): Promise<number> {
  const res = await node.app.inject({ method: 'GET', url: `/v1/usage?key=${encodeURIComponent(key)}` });
  return (res.json() as { limits: { usage: number }[] }).limits[0]!.usage;
}

beforeAll(async () => {
  creds = generateCredentials(Object.keys(NODES));
  // Not provisioned by the start: the second test provisions as the admin.
  sc = await startSupercluster({ topology, credentials: creds, pingInterval: '2s', ready: false });
  await sc.waitReady();
  dir = mkdtempSync(join(tmpdir(), 'limiter-security-'));
  writeCredentials(join(dir, 'secrets'), creds);
  writeFileSync(join(dir, 'rules.yaml'), 'version: 1\nrules:\n  - id: k\n    key: "*"\n    limits: [{ limit: 10, window: 1h, algorithm: fixed-window }]\n');
}, 60_000);

afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  for (const n of nodes.values()) await n.close().catch(() => {});
  await sc?.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('NATS credentials', () => {
  it('a client without credentials, or with credentials the servers do not know, cannot connect', async () => {
    for (const region of REGIONS) {
      expect((await rejection(connect({ servers: urlOf(region), reconnect: false }))).code).toBe(ErrorCode.AuthorizationViolation);
      const stranger = nkeys.createUser().getSeed();
      expect((await rejection(connect({ servers: urlOf(region), reconnect: false, authenticator: nkeyAuthenticator(stranger) }))).code).toBe(ErrorCode.AuthorizationViolation);
    }
    const t = new JetStreamTransport({ servers: urlOf('us-east'), region: 'us-east', regions: REGIONS, nodeId: 'us-east-1', nkeySeed: new TextDecoder().decode(nkeys.createUser().getSeed()) });
    const err = await rejection(t.connect());
    expect(err).toBeInstanceOf(ReplicationError);
    expect((err as unknown as ReplicationError).code).toBe('REPLICATION_UNAUTHORIZED');
    await t.close();
  });

  it("a node's user cannot create the streams: its node waits, REPLICATION_NOT_PROVISIONED, until the admin provisions them", async () => {
    const t = new JetStreamTransport({ servers: urlOf('us-east'), region: 'us-east', regions: REGIONS, nodeId: 'us-east-1', nkeySeed: creds.get('us-east-1')!.seed, setupTimeoutMs: 1500 });
    const err = (await rejection(t.start())) as unknown as ReplicationError;
    expect(err.code).toBe('REPLICATION_NOT_PROVISIONED');
    expect(err.message).toMatch(/npm run provision/);
    await t.close();
    const done = await provisionDeployment({ servers: urlOf('us-east'), regions: REGIONS, nkeySeed: creds.get('admin')!.seed, maxAgeMs: 3_600_000 });
    expect(done.map((d) => d.stream).sort()).toEqual(['LIMITER_EU_WEST', 'LIMITER_EU_WEST_AGG', 'LIMITER_US_EAST', 'LIMITER_US_EAST_AGG']);
    expect(done.every((d) => d.outcome === 'created')).toBe(true);
    // Running it again changes nothing.
    const again = await provisionDeployment({ servers: urlOf('eu-west'), regions: REGIONS, nkeySeed: creds.get('admin')!.seed, maxAgeMs: 3_600_000 });
    expect(again.every((d) => d.outcome === 'unchanged')).toBe(true);
  }, 60_000);

  it('nodes with their own credentials replicate across the regions', async () => {
    for (const [id, region] of Object.entries(NODES)) {
      const config = loadConfig(
        ['--node-id', id, '--region', region, '--regions', REGIONS.join(','), '--nats', urlOf(region), '--nats-nkey-file', seedFile(join(dir, 'secrets'), id), '--rules', join(dir, 'rules.yaml'), '--data', join(dir, 'data', id), '--port', '0', '--log-level', 'silent'],
        {},
      );
      nodes.set(id, await startNode(config, { logger: pino({ level: 'silent' }) }));
    }
    for (const n of nodes.values()) {
      await waitFor('node ready', async () => (await n.app.inject({ method: 'GET', url: '/readyz' })).json().degraded === false, { timeoutMs: 30_000 });
    }
    for (let i = 0; i < 3; i++) expect((await nodes.get('us-east-1')!.app.inject({ method: 'POST', url: '/v1/check', payload: { key: 'shared' } })).statusCode).toBe(200);
    for (const n of nodes.values()) await waitFor('every node to see 3', async () => (await usage(n, 'shared')) === 3, { timeoutMs: 10_000 });
  }, 90_000);
});

describe("a node's permissions", () => {
  it("cannot publish on another node's subject, of its region or another", async () => {
    const nc = await connectAs('us-east-2');
    const js = nc.jetstream();
    const before = await streamState(regionStreamName('us-east'));
    // A payload no node sends, so that the nodes' own heartbeats stored meanwhile do not matter.
    const forged = new TextEncoder().encode(`forged by us-east-2 ${Date.now()}`);
    expect((await rejection(js.publish(nodeSubject('us-east', 'us-east-1'), forged))).code).toBe(ErrorCode.PermissionsViolation);
    expect((await rejection(js.publish(nodeSubject('eu-west', 'eu-west-1'), forged))).code).toBe(ErrorCode.PermissionsViolation);
    // A plain publish is dropped by the server too.
    nc.publish(nodeSubject('us-east', 'us-east-1'), forged);
    await nc.flush();
    expect(await payloadsAfter(regionStreamName('us-east'), before.lastSeq)).not.toContain(Buffer.from(forged).toString('latin1'));
    // Its own subject works.
    expect((await js.publish(nodeSubject('us-east', 'us-east-2'), encodeDelta({ v: WIRE_VERSION, origin: 'us-east-2', seq: 1, sentAt: Date.now(), entries: [] }))).stream).toBe('LIMITER_US_EAST');
  });

  it('cannot purge, delete, create or change a stream, delete a message, or touch another node\'s consumer', async () => {
    const nc = await connectAs('us-east-2');
    const jsm = await nc.jetstreamManager({ checkAPI: false });
    const stream = regionStreamName('us-east');
    const before = await streamState(stream);
    const denied: Array<() => Promise<unknown>> = [
      () => jsm.streams.purge(stream),
      () => jsm.streams.delete(stream),
      () => jsm.streams.deleteMessage(stream, 1),
      () => jsm.streams.add({ name: 'EVIL', subjects: ['evil.>'] }),
      () => jsm.streams.update(stream, { subjects: ['limiter.d.us-east.>', 'evil.>'] }),
      () => jsm.consumers.delete(stream, durableName('us-east-1')),
      () => jsm.consumers.info(stream, durableName('us-east-1')),
      () => jsm.consumers.add(stream, { durable_name: 'spy', deliver_subject: '_limiter.deliver.us-east.us-east-2.spy' }),
    ];
    for (const op of denied) expect((await rejection(op())).code, op.toString()).toBe(ErrorCode.PermissionsViolation);
    // Nothing purged or deleted (the nodes' heartbeats may have added messages meanwhile).
    const after = await streamState(stream);
    expect(after.firstSeq).toBe(before.firstSeq);
    expect(after.deleted).toBe(before.deleted);
    expect(after.messages).toBe(before.messages + (after.lastSeq - before.lastSeq));
    // Its own consumer's info is allowed.
    expect((await jsm.consumers.info(stream, durableName('us-east-2'))).name).toBe(durableName('us-east-2'));
  });

  it("cannot read the deltas' subjects, another node's deliveries or another node's replies", async () => {
    const nc = await connectAs('us-east-2');
    for (const subject of ['limiter.d.>', deliverSubject('us-east', 'us-east-1', 'LIMITER_US_EAST'), '_INBOX.us-east-1.>', '>']) {
      const err = await new Promise<NatsError | null>((resolve) => nc.subscribe(subject, { callback: (e) => resolve(e) }));
      expect(err?.code, subject).toBe(ErrorCode.PermissionsViolation);
    }
  });
});

describe('forged deltas', () => {
  it("a compromised node's forged deltas change no node's count", async () => {
    const nc = await connectAs('us-east-2');
    const js = nc.jetstream();
    const a = nodes.get('us-east-1')!;
    const cl = [...a.engine.allScopes()][0]!;
    const slot = Math.floor(Date.now() / cl.math.slotMs);
    const cell = (key: string, node: string, p: number, n = 0): SlotEntry => ({ scope: cl.scope, key, slot, node, p, n });
    const env = (origin: string, entries: SlotEntry[]) => encodeDelta({ v: WIRE_VERSION, origin, seq: 9, sentAt: Date.now(), entries });
    const refusedTotal = () => [...nodes.values()].reduce((s, n) => s + ((n.status().replication as { refused: number }).refused ?? 0), 0);
    const cellsRefused = () => [...nodes.values()].reduce((s, n) => s + Object.values((n.status().replication as { refusedCells: Record<string, number> }).refusedCells).reduce((x, y) => x + y, 0), 0);
    const refused0 = refusedTotal();
    const cells0 = cellsRefused();
    const own = nodeSubject('us-east', 'us-east-2');
    // Claiming to be us-east-1, on its own subject; carrying us-east-1's cells; a ghost count; a refund it never admitted.
    await js.publish(own, env('us-east-1', [cell('victim', 'us-east-1', 10)]));
    await js.publish(own, env('us-east-2', [cell('victim', 'us-east-1', 10)]));
    await js.publish(own, env('us-east-2', [cell('victim', 'us-east-2', 0xffff_ffff)]));
    await js.publish(own, env('us-east-2', [cell('shared', 'us-east-2', 0, 0xffff_ffff)]));
    // Two whole batches refused on each of the two other nodes, and the two impossible cells on
    // each (us-east-2's own node skips its own subject's batches once caught up).
    await waitFor('the other nodes to refuse the forgeries', () => refusedTotal() - refused0 === 4 && cellsRefused() - cells0 === 4, { timeoutMs: 10_000 });
    for (const [id, n] of nodes) {
      expect(await usage(n, 'victim'), id).toBe(0);
      expect(await usage(n, 'shared'), id).toBe(3);
    }
  }, 30_000);
});
