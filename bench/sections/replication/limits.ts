/**
 * Part 2 of the `replication` section, limits held across regions, on the convergence part's
 * three nodes: sequential round robin (one client, awaited checks, node by node) on a fresh key
 * with limit 10 and 100; bursts of checks sent at once spread over the three nodes (limit 10,
 * limit 100, and limit 100 without near-limit sharing); a skewed trace (90 % on one node) for the
 * cost of sharing; and the overshoot bound each node exports right after a burst next to the
 * overshoot seen.
 */
import { sleep } from '../../../support/wait.ts';
import { request } from '../../lib/http-client.ts';
import { round } from '../../lib/format.ts';
import type { BenchContext } from '../../lib/types.ts';
import { admitted, BURST_LIMIT, decision, PROBE_TIMEOUT_MS, RR_LIMITS, usage, type NodeProc } from './nodes.ts';

/** Tries of each limit experiment (fresh key each). */
export const TRIES = 3;

interface OvershootStatus {
  ruleId: string;
  bound: number;
  model: number;
  observed: number;
}

/** Sequential round robin: `n` awaited checks of `key`, node after node. Returns how many were admitted. */
async function roundRobin(nodes: NodeProc[], key: string, n: number): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) if (await admitted(nodes[i % nodes.length].url, key)) ok++;
  return ok;
}

/**
 * The cost of near-limit sharing on a skewed trace: 2 · L checks of one fresh key, 90 % to the
 * first node and 5 % to each other, 8 at a time. An exact global counter admits exactly L of
 * them; `missed` is what sharing denied of those (L − admitted, when positive); `waits` the
 * checks still answered SHARE_WAIT after waiting `--share-wait`; `longestWaitMs` the busy node's
 * slowest check (a check near the limit waits inside the request for its share to grow).
 */
async function skewTrace(nodes: NodeProc[], key: string, limit: number): Promise<{ admitted: number; missed: number; waits: number; longestWaitMs: number }> {
  const n = 2 * limit;
  const targets = Array.from({ length: n }, (_, i) => (i % 20 === 0 ? nodes[1] : i % 20 === 10 ? nodes[2] : nodes[0]));
  let next = 0;
  let admittedCount = 0;
  let waits = 0;
  let longest = 0;
  const worker = async () => {
    while (next < n) {
      const node = targets[next++];
      const sent = performance.now();
      const d = await decision(node.url, key);
      if (d.allowed) admittedCount++;
      if (d.code === 'SHARE_WAIT') waits++;
      if (node === nodes[0]) longest = Math.max(longest, performance.now() - sent);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { admitted: admittedCount, missed: Math.max(0, limit - admittedCount), waits, longestWaitMs: round(longest, 1) };
}

/** `n` checks of `key` sent at once, spread over the nodes. Returns how many were admitted. */
async function burst(nodes: NodeProc[], key: string, n: number): Promise<number> {
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => admitted(nodes[i % nodes.length].url, key)));
  return answers.filter(Boolean).length;
}

async function overshootStatus(n: NodeProc, ruleId: string): Promise<OvershootStatus> {
  const r = await request<{ overshoot: OvershootStatus[] }>('GET', `${n.url}/v1/status`);
  const o = r.body.overshoot.find((x) => x.ruleId === ruleId);
  if (!o) throw new Error(`GET /v1/status on ${n.name}: no overshoot entry for ${ruleId}`);
  return o;
}

/** The limit experiments of part 2, on the convergence part's nodes. */
export async function limitExperiments(ctx: BenchContext, nodes: NodeProc[]) {
  const rr: Record<number, number[]> = {};
  for (const l of RR_LIMITS) {
    rr[l] = [];
    for (let t = 0; t < TRIES; t++) rr[l].push(await roundRobin(nodes, `l${l}:rr:${t}`, 2 * l));
    ctx.log(`replication: round robin, limit ${l}: admitted ${rr[l].join(', ')}`);
  }
  const bursts10: number[] = [];
  const burstsOff: number[] = [];
  const skews: Awaited<ReturnType<typeof skewTrace>>[] = [];
  for (let t = 0; t < TRIES; t++) {
    bursts10.push(await burst(nodes, `l10:burst:${t}`, 50));
    burstsOff.push(await burst(nodes, `off${BURST_LIMIT}:burst:${t}`, 5 * BURST_LIMIT));
    skews.push(await skewTrace(nodes, `l${BURST_LIMIT}:skew:${t}`, BURST_LIMIT));
  }
  ctx.log(`replication: burst of 50, limit 10: admitted ${bursts10.join(', ')}; limit ${BURST_LIMIT} without sharing: ${burstsOff.join(', ')}`);
  ctx.log(`replication: skewed trace (90 % on one node), limit ${BURST_LIMIT}: ${skews.map((x) => `admitted ${x.admitted}, SHARE_WAIT ${x.waits}, longest wait ${x.longestWaitMs} ms`).join('; ')}`);
  const bursts: { admitted: number; bounds: number[]; observed: number[] }[] = [];
  for (let t = 0; t < TRIES; t++) {
    const key = `l${BURST_LIMIT}:burst:${t}`;
    const got = await burst(nodes, key, 5 * BURST_LIMIT);
    // Right after the burst has converged everywhere: what each node exports.
    await waitForUsage(nodes, key, got);
    const st = await Promise.all(nodes.map((n) => overshootStatus(n, `l${BURST_LIMIT}`)));
    bursts.push({ admitted: got, bounds: st.map((s) => s.bound), observed: st.map((s) => s.observed) });
    ctx.log(`replication: burst of ${5 * BURST_LIMIT}, limit ${BURST_LIMIT}: admitted ${got}; exported bounds ${st.map((s) => s.bound).join(', ')}`);
    await sleep(200);
  }
  return { rr, bursts, bursts10, burstsOff, skews };
}

async function waitForUsage(nodes: NodeProc[], key: string, want: number): Promise<void> {
  const deadline = performance.now() + PROBE_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const u = await Promise.all(nodes.map((n) => usage(n.url, key)));
    if (u.every((x) => x === want)) return;
    await sleep(2);
  }
  throw new Error(`${key}: the nodes did not converge on ${want} within ${PROBE_TIMEOUT_MS} ms`);
}
