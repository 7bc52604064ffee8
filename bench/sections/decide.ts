/**
 * Section `decide`: Engine.decide() against rate-limiter-flexible's RateLimiterMemory.consume,
 * in this process, same run, same keys.
 *
 * - Both sides read the clock on every call (we pass `Date.now()`, consume reads it itself) and
 *   get the same pre-built key strings, walked in the same shuffled order.
 * - Keys are created before timing (steady state: every key already has an entry).
 * - consume() returns a promise. It is measured by counting resolutions: a batch of 1000 calls
 *   is issued, each with `.then(onAllowed, onDenied)` counting its outcome, and the batch ends
 *   when the last one has settled (reactions run in order, so all have). The time therefore
 *   includes every promise and its settlement, as a caller awaiting each check would pay.
 *   (Promise.all over the batch and a sequential `await` per call were measured too while
 *   writing this: neither was faster for consume.)
 * - Rounds are interleaved (ours, peer, peer, ours, …) so drift on a noisy machine hits both;
 *   the figure is the median of the rounds; ratios are ratios of medians.
 */
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { Engine } from '../../src/engine/engine.ts';
import { HIGH_LIMIT, catchAllRules, makeKeys, pkgVersion } from '../lib/fixtures.ts';
import { max, median, min } from '../../support/stats.ts';
import { si } from '../lib/format.ts';
import { CHUNK, timed, type Runner } from '../lib/timed.ts';
import { check, type BenchContext, type Check, type Figure, type Section, type SectionResult } from '../lib/types.ts';

interface Case {
  id: string;
  label: string;
  keys: number;
  path: 'admitted' | 'denied';
  /** Minimum ratio ours/peer, or undefined (informational). */
  target?: number;
  /** The rules file writes `algorithm: sliding-window` (see fixtures.catchAllRules). */
  namedAlgorithm?: boolean;
}

const CASES: Case[] = [
  { id: '1key.admitted', label: '1 key, admitted', keys: 1, path: 'admitted', target: 1.0 },
  { id: '100kkeys.admitted', label: '100k keys, admitted', keys: 100_000, path: 'admitted', target: 1.5 },
  { id: '1key.denied', label: '1 key, denied', keys: 1, path: 'denied' },
  { id: '100kkeys.denied', label: '100k keys, denied', keys: 100_000, path: 'denied' },
  { id: '1key.admitted.namedAlgorithm', label: '1 key, admitted, rule names its algorithm', keys: 1, path: 'admitted', namedAlgorithm: true },
];

/** Ours: returns the number of unexpected outcomes in `ops` calls. */
function oursRunner(engine: Engine, keys: readonly string[], allowed: boolean): Runner {
  let idx = 0;
  const n = keys.length;
  return (ops: number) => {
    let bad = 0;
    for (let j = 0; j < ops; j++) {
      const d = engine.decide({ key: keys[idx] }, Date.now());
      if (d.allowed !== allowed) bad++;
      if (++idx === n) idx = 0;
    }
    return bad;
  };
}

/** The peer: counts resolutions (allowed) and rejections (denied) of a batch of consume() calls. */
function peerRunner(rl: RateLimiterMemory, keys: readonly string[], allowed: boolean): Runner {
  let idx = 0;
  const n = keys.length;
  let ok = 0;
  let denied = 0;
  const onOk = () => {
    ok++;
  };
  const onDenied = () => {
    denied++;
  };
  return async (ops: number) => {
    ok = 0;
    denied = 0;
    let last: Promise<void> | undefined;
    for (let j = 0; j < ops; j++) {
      last = rl.consume(keys[idx]).then(onOk, onDenied);
      if (++idx === n) idx = 0;
    }
    await last;
    if (ok + denied !== ops) throw new Error(`consume: ${ok + denied} of ${ops} promises settled`);
    return allowed ? denied : ok;
  };
}

export const decideSection: Section = {
  id: 'decide',
  title: 'Engine.decide() vs rate-limiter-flexible RateLimiterMemory.consume (in-process)',
  estimateS: { full: 30, quick: 5 },
  async run(ctx: BenchContext): Promise<SectionResult> {
    const rounds = ctx.quick ? 3 : 7;
    const roundMs = ctx.quick ? 100 : 300;
    const warmMs = ctx.quick ? 100 : 500;

    const setups = CASES.map((c) => {
      const keys = c.keys === 1 ? ['user:0'] : makeKeys(c.keys);
      const allowed = c.path === 'admitted';
      // Denied path: limit 1, every key counted once before timing, a window longer than the run.
      const rules = allowed ? catchAllRules(HIGH_LIMIT, '1m', c.namedAlgorithm) : catchAllRules(1, '1h', c.namedAlgorithm);
      const engine = new Engine({ nodeId: 'bench', rules, maxKeys: 1_000_000 });
      const rl = new RateLimiterMemory(allowed ? { points: HIGH_LIMIT, duration: 60 } : { points: 1, duration: 3600 });
      return { c, keys, allowed, engine, rl, ours: [] as number[], peer: [] as number[] };
    });

    ctx.log(`decide: creating keys (${CASES.map((c) => c.keys).join(', ')})`);
    for (const s of setups) {
      const now = Date.now();
      for (const k of s.keys) s.engine.decide({ key: k }, now);
      let last: Promise<unknown> | undefined;
      for (const k of s.keys) last = s.rl.consume(k).catch(() => undefined);
      await last;
    }

    try {
      for (const s of setups) {
        ctx.log(`decide: warm-up ${s.c.label}`);
        await timed(oursRunner(s.engine, s.keys, s.allowed), warmMs);
        await timed(peerRunner(s.rl, s.keys, s.allowed), warmMs);
      }
      for (let r = 0; r < rounds; r++) {
        ctx.log(`decide: round ${r + 1}/${rounds}`);
        for (const s of setups) {
          const o = oursRunner(s.engine, s.keys, s.allowed);
          const p = peerRunner(s.rl, s.keys, s.allowed);
          // Alternate which side goes first.
          if (r % 2 === 0) {
            s.ours.push(await timed(o, roundMs));
            s.peer.push(await timed(p, roundMs));
          } else {
            s.peer.push(await timed(p, roundMs));
            s.ours.push(await timed(o, roundMs));
          }
        }
      }
    } finally {
      // consume() arms one timer per key (its expiry): clear them so they do not fire during later sections.
      for (const s of setups) for (const k of s.keys) await s.rl.delete(k);
    }

    const figures: Figure[] = [];
    const checks: Check[] = [];
    for (const s of setups) {
      const o = median(s.ours);
      const p = median(s.peer);
      figures.push({
        id: `decide.ours.${s.c.id}`,
        label: `decide(), ${s.c.label}`,
        value: Math.round(o),
        unit: 'ops/s',
        rounds: s.ours.map(Math.round),
        detail: { rounds: s.ours.length, min: Math.round(min(s.ours)), max: Math.round(max(s.ours)) },
      });
      figures.push({
        id: `decide.rlf.${s.c.id}`,
        label: `rate-limiter-flexible consume(), ${s.c.label}`,
        value: Math.round(p),
        unit: 'ops/s',
        rounds: s.peer.map(Math.round),
        detail: { rounds: s.peer.length, min: Math.round(min(s.peer)), max: Math.round(max(s.peer)) },
      });
      checks.push(
        check(
          `decide.ratio.${s.c.id}`,
          `decide() / consume(), ${s.c.label}`,
          `${si(o)} ops/s`,
          `${si(p)} ops/s`,
          o / p,
          '×',
          s.c.target === undefined ? undefined : { op: '>=', value: s.c.target },
        ),
      );
    }
    return {
      figures,
      checks,
      notes: [
        `Rule: one catch-all sliding-window limit (10 slots), written like the catch-all of examples/rules.yaml (algorithm left to its default; the "names its algorithm" row writes \`algorithm: sliding-window\`); admitted path: limit 2^31−1 per 1 m (every call admitted), denied path: limit 1 per 1 h with every key already counted. Peer: rate-limiter-flexible ${pkgVersion(ctx.root, 'rate-limiter-flexible')} RateLimiterMemory with the same points and duration.`,
        `Median of ${rounds} interleaved rounds of ${roundMs} ms per side after a ${warmMs} ms warm-up; keys created before timing; the clock is read on every call by both sides.`,
        `consume() is timed by counting settlements: batches of ${CHUNK} calls, each with .then(onAllowed, onDenied), the batch ending when the last one has settled.`,
      ],
    };
  },
};
