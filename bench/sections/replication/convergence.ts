/**
 * Part 1 of the `replication` section, convergence: one node per region. Probes, one at a time:
 * a check of a fresh key on one node, then GET /v1/usage of that key on the two others every
 * ~1 ms until it shows; the time from the check's answer to the first poll answer that shows it
 * (an upper bound: the poll resolution is reported). First at idle, then under a steady ~1000
 * checks/s spread over the three nodes and 1000 keys. The nodes' own view, per peer lag
 * sentAt → applied (GET /v1/status), is read beside it. The limit experiments (limits.ts) then
 * run on the same nodes before they stop.
 */
import type { Supercluster } from '../../../support/supercluster.ts';
import { sleep } from '../../../support/wait.ts';
import { makeKeys } from '../../lib/fixtures.ts';
import { request } from '../../lib/http-client.ts';
import type { BenchContext } from '../../lib/types.ts';
import { limitExperiments } from './limits.ts';
import { checkKey, FLUSH_MS, LOAD_KEYS, PROBE_TIMEOUT_MS, replicationStatus, startNodes, stopNodes, usage, type NodeProc } from './nodes.ts';

export const LOAD_RATE = 1000;

/** Deterministic xorshift32 in [0, 1): every run makes the same choices. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

interface ProbeSample {
  /**
   * The estimate: when the target's server handled the first poll showing the key, minus when
   * the origin's server handled the check, each taken at the middle of its request's round
   * trip; the arrival is put at the middle between the last poll not showing it and the first
   * showing it (uniform within the poll period), so the poll period adds no bias.
   */
  estMs: number;
  /** Check answered on the origin → first poll answer on the target that shows the key (an upper bound). */
  ms: number;
  /** Check answered → send of the last poll that did not show it yet (a lower bound). */
  lowerMs: number;
}

/**
 * One probe: count a fresh key on `origin`, then poll every target until its usage shows the
 * key. Resolves per target with the sample, or null after PROBE_TIMEOUT_MS.
 */
async function probe(origin: NodeProc, targets: NodeProc[], key: string): Promise<(ProbeSample | null)[]> {
  const c0 = performance.now();
  await checkKey(origin.url, key);
  const t0 = performance.now();
  const checkMid = (c0 + t0) / 2;
  return Promise.all(
    targets.map(async (t) => {
      let lastMiss = t0;
      let lastMissMid = checkMid;
      for (;;) {
        const sent = performance.now();
        const u = await usage(t.url, key);
        const got = performance.now();
        if (u > 0) return { estMs: (lastMissMid + (sent + got) / 2) / 2 - checkMid, ms: got - t0, lowerMs: lastMiss - t0 };
        if (got - t0 > PROBE_TIMEOUT_MS) return null;
        lastMiss = sent;
        lastMissMid = (sent + got) / 2;
        await sleep(1);
      }
    }),
  );
}

/**
 * ~`rate` checks/s over `keys`, spread round-robin over the nodes, paced in 10 ms ticks,
 * until `stop()`. At most 256 requests in flight (a slower answer skips, and is counted).
 */
function steadyLoad(nodes: NodeProc[], keys: string[], rate: number) {
  const rand = prng(0x5bd1e995);
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let skipped = 0;
  let inFlight = 0;
  const start = performance.now();
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - start) / 1000) * rate);
    for (; sent + skipped < due; ) {
      if (inFlight >= 256) {
        skipped++;
        continue;
      }
      const node = nodes[sent % nodes.length];
      sent++;
      inFlight++;
      request('POST', `${node.url}/v1/check`, { key: keys[Math.floor(rand() * keys.length)] }).then(
        (r) => {
          inFlight--;
          if (r.status === 200) ok++;
          else errors++;
        },
        () => {
          inFlight--;
          errors++;
        },
      );
    }
  }, 10);
  return {
    async stop() {
      clearInterval(timer);
      const seconds = (performance.now() - start) / 1000;
      for (let i = 0; i < 500 && inFlight > 0; i++) await sleep(10);
      return { seconds, sent, ok, errors, skipped, perS: ok / seconds };
    },
  };
}

export async function convergence(ctx: BenchContext, sc: Supercluster, rulesFile: string) {
  const regions = sc.regions.map((r) => r.name);
  const durationS = ctx.quick ? 5 : 20;
  ctx.log(`replication: starting one node per region (${regions.join(', ')})`);
  const nodes = await startNodes(
    ctx,
    sc.regions.map((r) => ({ name: `conv-${r.name}`, region: r.name, flags: ['--nats', r.url, '--regions', regions.join(','), '--rules', rulesFile] })),
  );
  try {
    // Every region's aggregate must be sourcing before measuring: wait until a probe converges everywhere.
    const w0 = performance.now();
    for (let i = 0; ; i++) {
      const r = await probe(nodes[i % nodes.length], nodes.filter((_, j) => j !== i % nodes.length), `warm:${i}`);
      if (r.every((s) => s !== null)) break;
      if (performance.now() - w0 > 60_000) throw new Error('replication did not converge within 60 s of start-up');
    }
    const rand = prng(0x2545f491);
    let probes = 0;
    const probeFor = async (seconds: number, tag: string) => {
      const samples: ProbeSample[] = [];
      let timeouts = 0;
      const end = performance.now() + seconds * 1000;
      while (performance.now() < end) {
        const o = probes % nodes.length;
        const r = await probe(nodes[o], nodes.filter((_, j) => j !== o), `probe:${tag}:${probes}`);
        probes++;
        for (const s of r) if (s) samples.push(s);
        else timeouts++;
        // A random pause (0–FLUSH_MS) so probes land at every phase of the nodes' timers.
        await sleep(rand() * FLUSH_MS);
      }
      return { samples, timeouts };
    };
    ctx.log(`replication: convergence probes for ${durationS / 2} s at idle`);
    const idle = await probeFor(durationS / 2, 'idle');
    const keys = makeKeys(LOAD_KEYS);
    const loadGen = steadyLoad(nodes, keys, LOAD_RATE);
    await sleep(1000);
    ctx.log(`replication: convergence probes for ${durationS} s under ~${LOAD_RATE} checks/s over ${LOAD_KEYS} keys`);
    const loaded = await probeFor(durationS, 'load');
    const loadStats = await loadGen.stop();
    const statuses = await Promise.all(nodes.map(replicationStatus));
    ctx.log('replication: limits held across regions (round robin, bursts)');
    const limits = await limitExperiments(ctx, nodes);
    return { nodes: nodes.map((n) => n.name), samples: loaded.samples, timeouts: loaded.timeouts, idle, probes, loadStats, statuses, durationS, limits };
  } finally {
    await stopNodes(nodes);
  }
}
