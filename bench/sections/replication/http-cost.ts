/**
 * Part 3 of the `replication` section, the HTTP cost of --nats: POST /v1/check (autocannon c=50,
 * interleaved rounds as in the `http` section) against a node without --nats and a node with
 * --nats (same rules, same process wiring), one key and 1000 keys, on keys the other parts did
 * not touch; the three nats-servers' CPU is counted beside each target.
 */
import type { Supercluster } from '../../../support/supercluster.ts';
import { load } from '../../lib/load.ts';
import { interleave, measured, type LoadServer, type Target } from '../../lib/rounds.ts';
import type { BenchContext } from '../../lib/types.ts';
import { LOAD_KEYS, replicationStatus, startNodes, stopNodes } from './nodes.ts';

export const CONNECTIONS = 50;

export async function httpCost(ctx: BenchContext, sc: Supercluster, rulesFile: string) {
  const rounds = ctx.quick ? 3 : 9;
  const roundS = 1;
  const warmS = ctx.quick ? 1 : 2;
  const regions = sc.regions.map((r) => r.name);
  const home = sc.regions[0];
  ctx.log('replication: starting a node without --nats and one with --nats');
  const [alone, repl] = await startNodes(ctx, [
    { name: 'http-alone', region: home.name, flags: ['--rules', rulesFile] },
    { name: 'http-nats', region: home.name, flags: ['--rules', rulesFile, '--nats', home.url, '--regions', regions.join(',')] },
  ]);
  try {
    // Keys the convergence part did not touch: the --nats node rebuilt that part's state from the
    // streams, and a key holding other nodes' cells costs more to count and to flush (the flush
    // rewrites every node's cells of a changed key), which is not the cost of shipping.
    const single = JSON.stringify({ key: 'http:1' });
    const many = Array.from({ length: LOAD_KEYS }, (_, i) => JSON.stringify({ key: `http:${i}` }));
    // The nats-servers' CPU is counted for every target: they share the machine with the node.
    const natsPids = sc.regions.map((r) => r.pid);
    const mk = (id: string, label: string, server: LoadServer, bodies?: string[]): Target => ({
      id,
      label,
      server,
      path: '/v1/check',
      body: single,
      bodies,
      connections: CONNECTIONS,
      runs: [],
      serverCpuS: 0,
      loaderCpuS: 0,
      extraCpu: { name: 'natsServers', pids: natsPids, seconds: 0 },
    });
    const targets = [
      mk('alone1', 'without --nats, 1 key', alone),
      mk('nats1', 'with --nats, 1 key', repl),
      mk('alone1000', `without --nats, ${LOAD_KEYS} keys`, alone, many),
      mk('nats1000', `with --nats, ${LOAD_KEYS} keys`, repl, many),
    ];
    ctx.log(`replication: HTTP warm-up ${warmS} s per target`);
    for (const t of targets) await load({ url: `${t.server.url}${t.path}`, body: t.body, bodies: t.bodies, connections: t.connections, durationS: warmS });
    await interleave(ctx, 'replication', targets, rounds, roundS);
    const m = targets.map((t) => measured(t.label, t));
    const status = await replicationStatus(repl);
    return { m, rounds, roundS, warmS, status };
  } finally {
    await stopNodes([alone, repl]);
  }
}
