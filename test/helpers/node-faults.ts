/**
 * Fault scenarios with real processes, shared by the fast fault tests (`npm test`) and their long
 * variants (`npm run test:faults`): three regions, one limiter node each, servers requiring
 * credentials, gateway links behind TCP proxies (support/supercluster.ts), rules from
 * `modeRules` with sliding windows of an hour (every admission of a scenario stays inside it).
 *
 * - `latencyUnderLoad`: every gateway link delayed ms ± jitter, 5 × L checks per node;
 * - `sigstopUnderLoad`: one limiter node frozen (SIGSTOP) while the others take load;
 * - `killLoopUnderLoad`: limiter nodes killed with -9 in turn under load, each restarted on
 *   its data directory.
 *
 * Each returns what it measured; the tests assert the bounds and print the figures.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { percentile } from '../../support/stats.ts';
import { startSupercluster, type Supercluster } from '../../support/supercluster.ts';
import { waitFor } from '../../support/wait.ts';
import { Fleet, ONE_NODE_PER_REGION, Target, modeRules, startLoad, status, usage, type LimiterNode, type StatusBody } from './regions.ts';

export interface Rig {
  sc: Supercluster;
  fleet: Fleet;
  limit: number;
}

/** Starts the three regions and their nodes, and waits until every node hears the two others. */
export async function startRig(o: { limit: number; staleAfter: string; durability?: 'batch' | 'sync' }): Promise<Rig> {
  const nodes = ONE_NODE_PER_REGION.map((n) => ({ ...n, durability: o.durability ?? 'batch' }));
  const sc = await startSupercluster({ nodes, gatewayProxies: true, pingInterval: '2s' });
  let fleet: Fleet | undefined;
  try {
    fleet = await Fleet.start({ cluster: sc, nodes, rules: modeRules(o.limit), extraArgs: ['--stale-after', o.staleAfter] });
    const f = fleet;
    await waitFor('every node to hear the others', async () => (await statuses(f.nodes)).every((s) => s.replication.peers.length === f.nodes.length - 1), { timeoutMs: 30_000, intervalMs: 200 });
  } catch (err) {
    await fleet?.stopAll();
    await sc.stopAll();
    throw err;
  }
  return { sc, fleet, limit: o.limit };
}

export async function stopRig(rig: Rig | undefined): Promise<void> {
  await rig?.fleet.stopAll();
  await rig?.sc.stopAll();
}

/** The rule of `modeRules` a key falls under, from its prefix. */
export const ruleOf = (key: string): string => ({ sh: 'shared', op: 'open', cl: 'closed', ns: 'nosharing' })[key.split(':')[0]!] ?? 'other';

export const statuses = (nodes: readonly LimiterNode[]): Promise<StatusBody[]> => Promise.all(nodes.map((n) => status(n.url)));

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * Waits until every node reports, for every key, exactly the expected usage; returns, per key,
 * the time (performance.now()) of the poll that first saw it.
 */
export async function waitExact(nodes: readonly LimiterNode[], expected: ReadonlyMap<string, number>, timeoutMs = 30_000): Promise<Map<string, number>> {
  const at = new Map<string, number>();
  let last: Record<string, Array<number | string>> = {};
  await waitFor(
    `every node to report the admitted counts ${JSON.stringify(Object.fromEntries(expected))}`,
    async () => {
      for (const [key, want] of expected) {
        if (at.has(key)) continue;
        const seen = await Promise.all(nodes.map((n) => usage(n.url, key).catch((e: Error) => `error: ${e.message}`)));
        last[key] = seen;
        if (seen.every((u) => u === want)) at.set(key, performance.now());
      }
      return at.size === expected.size;
    },
    { timeoutMs, intervalMs: 20, describe: () => `last seen: ${JSON.stringify(last)}\n${nodes.map((n) => n.logs(10)).join('\n')}` },
  );
  last = {};
  return at;
}

/**
 * A node's own net count of `key` under the first limit of rule `ruleId`, as committed in its
 * SQLite file (read while the node is down).
 */
export function committedOwn(node: LimiterNode, key: string, ruleId: string): number {
  const db = new Database(join(node.dataDir, 'limiter.db'), { readonly: true });
  try {
    return db
      .prepare(`SELECT coalesce(sum(c.p - c.n), 0) FROM cells c JOIN nodes n ON n.id = c.node JOIN scopes s ON s.id = c.scope WHERE c.key = ? AND n.name = ? AND s.name LIKE ? || '|%'`)
      .pluck()
      .get(key, node.id, ruleId) as number;
  } finally {
    db.close();
  }
}

// ---- fault 3: latency with jitter between regions ----

export interface LatencyResult {
  /** Admitted per node, by key. */
  admitted: Record<string, number[]>;
  /** Largest `overshoot[].bound` (and `.model`) any node exported during and after the load, by key. */
  exportedBound: Record<string, number>;
  exportedModel: Record<string, number>;
  /** min((N − 1) · L, 2 · Σ_j r_j · lag_j) from the test's own figures (§8), by key. */
  derivedBound: Record<string, number>;
  /** Peers' p99 lag (ms) the nodes measured, worst pair, after the load. */
  lagP99Ms: number;
  /** From the last answer until every node reported the exact count, by key (ms). */
  convergedMs: Record<string, number>;
  failures: number;
  loadMs: number;
}


/**
 * Delays every gateway link by `ms ± jitterMs`, lets the nodes measure the new lag (an unlimited
 * key under light load until every peer's p99 lag reads at least `ms − jitterMs`), then sends
 * `perNode` checks of each key to every node, `paceMs` apart per request loop (two loops per node
 * and key). Links are restored before it returns.
 */
export async function latencyUnderLoad(rig: Rig, o: { keys: readonly string[]; perNode: number; ms: number; jitterMs: number; paceMs: number }): Promise<LatencyResult> {
  const { sc, fleet, limit } = rig;
  const nodes = fleet.nodes;
  for (const r of sc.regions) sc.gatewayProxy(r.name).delay(o.ms, o.jitterMs);
  try {
    const warm = startLoad(nodes.map((n) => new Target(n, 'lat:warm')), { paceMs: 20 });
    try {
      await waitFor(`every node to measure a peer lag of at least ${o.ms - o.jitterMs} ms`, async () => (await statuses(nodes)).every((s) => s.replication.peers.length === nodes.length - 1 && s.replication.peers.every((p) => p.lagP99Ms >= o.ms - o.jitterMs)), { timeoutMs: 30_000, intervalMs: 200 });
    } finally {
      await warm.stop();
    }

    const exportedBound: Record<string, number> = Object.fromEntries(o.keys.map((k) => [k, 0]));
    const exportedModel: Record<string, number> = { ...exportedBound };
    let sampling = true;
    const sample = async () => {
      for (const s of await statuses(nodes).catch(() => [])) {
        for (const key of o.keys) {
          const e = s.overshoot.find((x) => x.ruleId === ruleOf(key));
          if (!e) continue;
          exportedBound[key] = Math.max(exportedBound[key]!, e.bound);
          exportedModel[key] = Math.max(exportedModel[key]!, e.model);
        }
      }
    };
    const sampler = (async () => {
      while (sampling) await Promise.all([sample(), new Promise((r) => setTimeout(r, 100))]);
    })();

    const t0 = performance.now();
    const load = startLoad(o.keys.flatMap((key) => nodes.map((n) => new Target(n, key))), { concurrency: 2, paceMs: o.paceMs, maxPerTarget: o.perNode });
    const outcomes = await load.finished;
    const lastEnd = Math.max(...outcomes.map((o) => o.end));
    const admitted = Object.fromEntries(o.keys.map((key) => [key, nodes.map((n) => load.admitted((x) => x.key === key && x.node === n.id))]));
    const converged = await waitExact(nodes, new Map(o.keys.map((k) => [k, sum(admitted[k]!)])));
    // Rates are rolled up once a second: keep sampling for 1.5 s after the load.
    await waitFor('1.5 s after the load', () => performance.now() - lastEnd >= 1500, { timeoutMs: 10_000, intervalMs: 100 });
    sampling = false;
    await sampler;

    const after = await statuses(nodes);
    const lagOf = (node: string) => Math.max(0, ...after.flatMap((s) => s.replication.peers.filter((p) => p.node === node).map((p) => p.lagP99Ms)));
    const derivedBound: Record<string, number> = {};
    for (const key of o.keys) {
      let b = 0;
      for (const n of nodes) {
        const mine = outcomes.filter((x) => x.key === key && x.node === n.id && x.status === 200);
        const rate = mine.length === 0 ? 0 : (mine.length / Math.max(1, Math.max(...mine.map((x) => x.end)) - t0)) * 1000;
        b += (2 * rate * lagOf(n.id)) / 1000;
      }
      derivedBound[key] = Math.min((nodes.length - 1) * limit, b);
    }
    return {
      admitted,
      exportedBound,
      exportedModel,
      derivedBound,
      lagP99Ms: Math.max(...nodes.map((n) => lagOf(n.id))),
      convergedMs: Object.fromEntries([...converged].map(([k, at]) => [k, at - lastEnd])),
      failures: outcomes.filter((x) => x.status !== 200 && x.status !== 429).length,
      loadMs: lastEnd - t0,
    };
  } finally {
    for (const r of sc.regions) sc.gatewayProxy(r.name).pass();
  }
}

// ---- fault 5: SIGSTOP of a limiter node ----

export interface SigstopResult {
  /** The nodes, in the order of `admitted`'s lists, and the frozen one. */
  nodes: string[];
  victim: string;
  /** Admitted per node (fleet order), by key. */
  admitted: Record<string, number[]>;
  /** The others' admissions made while they were degraded (asked after they were seen degraded, answered before SIGCONT), by key. */
  whileDegraded: Record<string, number>;
  /** From SIGSTOP until every other node was degraded with the victim stale (ms). */
  degradedAfterMs: number;
  /** From SIGCONT until no node was degraded (ms). */
  leftModeMs: number;
  /** From SIGCONT until every node reported the exact admitted count, by key (ms). */
  convergedMs: Record<string, number>;
  /** Answers other than 200 and 429 (must be none). */
  failures: number;
  /** The victim's requests sent before SIGCONT and answered after it (with `clientsStay`): admitted, denied. */
  queuedAtVictim: { admitted: number; denied: number };
}

/**
 * Load on every node and key, `concurrency` request loops (default 1) per node and key, each
 * waiting `paceMs` between its requests; once the victim has admitted some of it, its clients
 * stop sending (as a load balancer takes a dead backend out) and it is frozen for `stopMs`
 * while the others keep the load; SIGCONT, the load stops.
 * With `clientsStay`, the victim's clients keep their requests in flight while it is frozen
 * (each loop waits for its answer; keep `stopMs` below the client's 5 s time-out): the frozen
 * node decides them after SIGCONT, before or while it merges what it missed.
 */
export async function sigstopUnderLoad(rig: Rig, o: { victim: string; keys: readonly string[]; stopMs: number; paceMs: number; concurrency?: number; clientsStay?: boolean }): Promise<SigstopResult> {
  const nodes = rig.fleet.nodes;
  const victim = rig.fleet.node(o.victim);
  const others = nodes.filter((n) => n !== victim);
  const targets = o.keys.flatMap((key) => nodes.map((n) => new Target(n, key)));
  const load = startLoad(targets, { paceMs: o.paceMs, concurrency: o.concurrency });
  let contAt = 0;
  let degradedSeenAt = 0;
  let stopAt = 0;
  try {
    await waitFor('the victim to admit on every key', () => o.keys.every((k) => load.admitted((x) => x.node === victim.id && x.key === k) >= 3), { timeoutMs: 30_000 });
    if (!o.clientsStay) await Promise.all(targets.filter((t) => t.node === victim).map((t) => t.quiesce()));
    victim.sigstop();
    stopAt = performance.now();
    try {
      degradedSeenAt = await waitFor(
        'the other nodes to be degraded with the victim stale',
        async () => ((await statuses(others)).every((s) => s.replication.degradation.degraded && s.replication.degradation.stalePeers.includes(victim.id)) ? performance.now() : undefined),
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      await waitFor(`${o.stopMs} ms of SIGSTOP`, () => performance.now() - stopAt >= o.stopMs, { timeoutMs: o.stopMs + 60_000, intervalMs: 100 });
    } finally {
      contAt = performance.now();
      victim.sigcont();
    }
  } finally {
    await load.stop();
  }
  const left = await waitFor('every node to leave the mode', async () => ((await statuses(nodes)).every((s) => !s.replication.degradation.degraded) ? performance.now() : undefined), { timeoutMs: 30_000, intervalMs: 50 });
  const admitted = Object.fromEntries(o.keys.map((key) => [key, nodes.map((n) => load.admitted((x) => x.key === key && x.node === n.id))]));
  const converged = await waitExact(nodes, new Map(o.keys.map((k) => [k, sum(admitted[k]!)])));
  return {
    nodes: nodes.map((n) => n.id),
    victim: victim.id,
    admitted,
    whileDegraded: Object.fromEntries(o.keys.map((key) => [key, load.admitted((x) => x.key === key && x.node !== victim.id && x.start >= degradedSeenAt && x.end <= contAt)])),
    degradedAfterMs: degradedSeenAt - stopAt,
    leftModeMs: left - contAt,
    convergedMs: Object.fromEntries([...converged].map(([k, at]) => [k, at - contAt])),
    failures: load.outcomes.filter((x) => x.status !== 200 && x.status !== 429).length,
    queuedAtVictim: {
      admitted: load.outcomes.filter((x) => x.node === victim.id && x.start < contAt && x.end > contAt && x.status === 200).length,
      denied: load.outcomes.filter((x) => x.node === victim.id && x.start < contAt && x.end > contAt && x.status === 429).length,
    },
  };
}

// ---- fault 6: kill -9 of limiter nodes in a loop ----

export interface KillLoopResult {
  kills: number;
  perKey: Record<
    string,
    {
      /** Answered 200. */
      admitted: number;
      /** Failed without an answer: in flight when their node was killed (decided or not). */
      unknown: number;
      /** The count every node converged on. */
      converged: number;
      /** What the killed lives had committed (SQLite, read while down) plus what their nodes admitted after their last restart: the least the count can be. */
      committedFloor: number;
      /** Answered 200 before a kill but not committed by the killed life (must be 0: durability sync). */
      admittedNotCommitted: number;
    }
  >;
  inflightAtKill: number[];
  /** From each restart (listening) until the node had caught up with every stream (ms). */
  caughtUpMs: number[];
  /** From the end of the load until every node reported the exact count (ms). */
  convergedMs: number;
}

/**
 * Load on every node (`concurrency` request loops per node and key, back to back); `kills`
 * times, one node after the other in fleet order, `intervalMs` apart: the node's clients stop
 * sending new requests, it is killed with -9 with its requests in flight (they fail: the
 * client cannot know whether they were counted), restarted on its data directory, and its
 * clients resume. Nodes must run with durability sync (every 200 committed before it is sent).
 */
export async function killLoopUnderLoad(rig: Rig, o: { keys: readonly string[]; kills: number; intervalMs: number; concurrency: number }): Promise<KillLoopResult> {
  const nodes = rig.fleet.nodes;
  const targets = o.keys.flatMap((key) => nodes.map((n) => new Target(n, key)));
  const load = startLoad(targets, { concurrency: o.concurrency });
  const committedAtKill = new Map<string, Map<string, number>>(); // node -> key -> committed
  const restartedAt = new Map<string, number>();
  const inflightAtKill: number[] = [];
  const caughtUpMs: number[] = [];
  const admittedNotCommitted = new Map<string, number>(o.keys.map((k) => [k, 0]));
  const ownAdmitted = (node: string, key: string, after = 0) => load.admitted((x) => x.node === node && x.key === key && x.start >= after);
  try {
    for (let i = 0; i < o.kills; i++) {
      const victim = nodes[i % nodes.length]!;
      const vts = targets.filter((t) => t.node === victim);
      const since = performance.now();
      await waitFor(`${o.intervalMs} ms of load before kill ${i + 1}`, () => performance.now() - since >= o.intervalMs, { timeoutMs: o.intervalMs + 30_000, intervalMs: 50 });
      await waitFor(`${victim.id} to admit under load`, () => load.admitted((x) => x.node === victim.id && x.start >= since) >= 10, { timeoutMs: 30_000 });
      for (const t of vts) t.pause(); // no new requests; those in flight stay in flight
      inflightAtKill.push(vts.reduce((a, t) => a + t.inflight, 0));
      await victim.kill9();
      await waitFor(`${victim.id}'s in-flight requests to fail`, () => vts.every((t) => t.inflight === 0), { timeoutMs: 10_000 });
      const committed = new Map(o.keys.map((k) => [k, committedOwn(victim, k, ruleOf(k))]));
      committedAtKill.set(victim.id, committed);
      for (const k of o.keys) admittedNotCommitted.set(k, admittedNotCommitted.get(k)! + Math.max(0, ownAdmitted(victim.id, k) - committed.get(k)!));
      await victim.start();
      const at = performance.now();
      restartedAt.set(victim.id, at);
      for (const t of vts) t.resume();
      caughtUpMs.push((await waitFor(`${victim.id} to catch up after its restart`, async () => ((await status(victim.url)).replication.caughtUp ? performance.now() : undefined), { timeoutMs: 30_000, intervalMs: 20 })) - at);
    }
    const last = performance.now();
    await waitFor('every node to admit after the last restart', () => nodes.every((n) => load.admitted((x) => x.node === n.id && x.start >= last) >= 10), { timeoutMs: 30_000 });
  } finally {
    await load.stop();
  }
  const end = Math.max(...load.outcomes.map((x) => x.end));
  const admitted = new Map(o.keys.map((k) => [k, load.admitted((x) => x.key === k)]));
  const converged = await waitAgreedAll(nodes, o.keys);
  const perKey: KillLoopResult['perKey'] = {};
  for (const k of o.keys) {
    let floor = 0;
    for (const n of nodes) {
      const c = committedAtKill.get(n.id)?.get(k);
      floor += c === undefined ? ownAdmitted(n.id, k) : c + ownAdmitted(n.id, k, restartedAt.get(n.id));
    }
    perKey[k] = {
      admitted: admitted.get(k)!,
      unknown: load.outcomes.filter((x) => x.key === k && x.status === 0).length,
      converged: converged.counts.get(k)!,
      committedFloor: floor,
      admittedNotCommitted: admittedNotCommitted.get(k)!,
    };
  }
  return { kills: o.kills, perKey, inflightAtKill, caughtUpMs, convergedMs: converged.at - end };
}

/**
 * Waits until every node reports the same usage of every key in two polls in a row (the second
 * at least 200 ms after the first); the counts, and when they first agreed.
 */
async function waitAgreedAll(nodes: readonly LimiterNode[], keys: readonly string[]): Promise<{ counts: Map<string, number>; at: number }> {
  let last: unknown[] = [];
  let agreed: { counts: Map<string, number>; at: number; key: string } | undefined;
  return waitFor(
    'every node to agree on every key',
    async () => {
      const seen = await Promise.all(keys.map((k) => Promise.all(nodes.map((n) => usage(n.url, k)))));
      last = seen;
      if (!seen.every((us) => us.every((u) => u === us[0]))) {
        agreed = undefined;
        return undefined;
      }
      const key = JSON.stringify(seen);
      if (agreed?.key !== key) agreed = { counts: new Map(keys.map((k, i) => [k, seen[i]![0]!])), at: performance.now(), key };
      return performance.now() - agreed.at >= 200 ? { counts: agreed.counts, at: agreed.at } : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 20, describe: () => `last seen: ${JSON.stringify(last)}` },
  );
}

/** "p50 / p99 ms" of a list of durations. */
export const p50p99 = (xs: readonly number[]): string => `${percentile(xs, 50).toFixed(0)} / ${percentile(xs, 99).toFixed(0)} ms`;

