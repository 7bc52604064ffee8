/**
 * Section `rules`: matching and swapping with many rules, in this process.
 *
 * - decide() with the example rules against decide() with the example rules plus 10 000 more
 *   (60 % exact-key overrides, 40 % per-tenant prefixes), same requests, same order; every limit
 *   raised so every call is admitted (the figure is about finding the rule). Rounds interleaved,
 *   median of rounds, ratio of medians.
 * - Swapping 10 000 rules in while checks go on: validateRulesAsync + setRulesAsync, with a probe
 *   of the event loop's longest pause (the longest a request arriving then would wait). The
 *   synchronous validateRules + setRules is timed too, for reference.
 */
import { NodeTable } from '../../crdt/index.ts';
import { compileRule } from '../../src/engine/compile.ts';
import { Engine } from '../../src/engine/engine.ts';
import { RuleMatcher } from '../../src/engine/matcher.ts';
import { validateRules } from '../../src/engine/rules.ts';
import type { CheckRequest } from '../../src/engine/types.ts';
import { manyRulesDocument, manyRulesRequests, exampleRulesDocument } from '../../support/many-rules.ts';
import { max, median, min } from '../../support/stats.ts';
import { si } from '../lib/format.ts';
import { HIGH_LIMIT } from '../lib/fixtures.ts';
import { runChild } from '../lib/child.ts';
import { timed, type Runner } from '../lib/timed.ts';
import type { RulesSwapResult } from '../children/rules-swap.ts';
import { check, type BenchContext, type Section, type SectionResult } from '../lib/types.ts';

const RULES = 10_000;
/** Node flags for large rule sets (docs/OPERATIONS.md, "Many rules"). */
const SWAP_TUNING = ['--max-semi-space-size=4'];

type Matcher = Pick<RuleMatcher, 'match'>;

/** matchRule() over `reqs` in turn; a request no rule matches is a wrong outcome. */
function matchRunner(m: Matcher, reqs: readonly CheckRequest[]): Runner {
  let idx = 0;
  return (ops) => {
    let missed = 0;
    for (let j = 0; j < ops; j++) {
      if (m.match(reqs[idx].key, reqs[idx].metadata) === undefined) missed++;
      if (++idx === reqs.length) idx = 0;
    }
    return missed;
  };
}

/** decide() over `reqs` in turn (every limit is raised: a denial is a wrong outcome). */
function decideRunner(engine: Engine, reqs: readonly CheckRequest[]): Runner {
  let idx = 0;
  return (ops) => {
    let denied = 0;
    for (let j = 0; j < ops; j++) {
      if (!engine.decide(reqs[idx], Date.now()).allowed) denied++;
      if (++idx === reqs.length) idx = 0;
    }
    return denied;
  };
}

export const rulesSection: Section = {
  id: 'rules',
  title: 'Many rules: decide() with 10 000 rules vs the example rules; swapping 10 000 rules in',
  estimateS: { full: 20, quick: 5 },
  async run(ctx: BenchContext): Promise<SectionResult> {
    const rounds = ctx.quick ? 3 : 7;
    const roundMs = ctx.quick ? 100 : 300;
    const swaps = ctx.quick ? 3 : 7;
    // Through JSON, like keys parsed from an HTTP body (flat strings).
    const reqs: CheckRequest[] = JSON.parse(JSON.stringify(manyRulesRequests(30_000, RULES))) as CheckRequest[];
    const small = new Engine({ nodeId: 'bench', rules: validateRules(exampleRulesDocument(HIGH_LIMIT), '<bench>') });
    const largeRules = validateRules(manyRulesDocument(RULES, HIGH_LIMIT), '<bench>');
    const large = new Engine({ nodeId: 'bench', rules: largeRules });
    // The same 10 000 rules scanned in rank order (what matching was before the index), for reference.
    const nodes = new NodeTable('bench');
    const scopes = new Map();
    const scan = RuleMatcher.of(largeRules.rules.map((r, i) => compileRule(r, i, largeRules.slotsPerWindow, nodes, () => undefined, scopes)), undefined, Infinity);
    const matchers: [string, Runner, number[]][] = [
      ['example', matchRunner({ match: (k, m) => small.matchRule(k, m) }, reqs), []],
      ['10k', matchRunner({ match: (k, m) => large.matchRule(k, m) }, reqs), []],
      ['10k.scan', matchRunner(scan, reqs), []],
    ];
    const now = Date.now();
    for (const r of reqs) {
      small.decide(r, now);
      large.decide(r, now);
    }
    ctx.log('rules: warm-up');
    const smallRun = decideRunner(small, reqs);
    const largeRun = decideRunner(large, reqs);
    await timed(smallRun, roundMs);
    await timed(largeRun, roundMs);
    const s: number[] = [];
    const l: number[] = [];
    for (let r = 0; r < rounds; r++) {
      ctx.log(`rules: decide round ${r + 1}/${rounds}`);
      if (r % 2 === 0) {
        s.push(await timed(smallRun, roundMs));
        l.push(await timed(largeRun, roundMs));
      } else {
        l.push(await timed(largeRun, roundMs));
        s.push(await timed(smallRun, roundMs));
      }
    }

    for (let r = 0; r < rounds; r++) {
      ctx.log(`rules: match round ${r + 1}/${rounds}`);
      for (const [, run, out] of matchers) out.push(await timed(run, r === 0 ? roundMs / 4 : roundMs / 2));
    }

    // Swaps in children: with Node's default heap settings, and with the smaller young
    // generation docs/OPERATIONS.md suggests for large rule sets (scavenges copy less at a time).
    const swap = async (nodeArgs: string[], name: string) => {
      ctx.log(`rules: ${swaps} swaps (${name})`);
      return runChild<RulesSwapResult>('bench/children/rules-swap.ts', [String(RULES), String(swaps)], { root: ctx.root, nodeArgs, profileDir: ctx.profileDir, profileName: `rules-swap-${name}` }, 300_000);
    };
    const plain = await swap([], 'defaults');
    const tuned = await swap([...SWAP_TUNING], 'semi-space-4');
    const so = median(s);
    const lo = median(l);
    const worstPause = max(plain.pauseMs);
    const tunedPause = max(tuned.pauseMs);
    return {
      figures: [
        { id: 'rules.decide.example', label: 'decide(), example rules', value: Math.round(so), unit: 'ops/s', rounds: s.map(Math.round), detail: { min: Math.round(min(s)), max: Math.round(max(s)) } },
        { id: 'rules.decide.10k', label: `decide(), ${RULES} rules`, value: Math.round(lo), unit: 'ops/s', rounds: l.map(Math.round), detail: { min: Math.round(min(l)), max: Math.round(max(l)) } },
        { id: 'rules.swap.async', label: `validateRulesAsync + setRulesAsync, ${RULES} rules`, value: round1(median(plain.asyncMs)), unit: 'ms', rounds: plain.asyncMs.map(round1) },
        { id: 'rules.swap.sync', label: `validateRules + setRules, ${RULES} rules (holds the loop)`, value: round1(median(plain.syncMs)), unit: 'ms', rounds: plain.syncMs.map(round1) },
        { id: 'rules.swap.pause', label: 'longest event-loop pause during the async swap', value: round1(worstPause), unit: 'ms', rounds: plain.pauseMs.map(round1) },
        { id: 'rules.swap.pause.tuned', label: `longest event-loop pause during the async swap, ${SWAP_TUNING.join(' ')}`, value: round1(tunedPause), unit: 'ms', rounds: tuned.pauseMs.map(round1) },
        { id: 'rules.idle.pause', label: 'longest event-loop pause while idle (machine noise)', value: round1(max(plain.idleMs)), unit: 'ms', rounds: plain.idleMs.map(round1) },
        ...matchers.map(([id, , out]) => ({ id: `rules.match.${id}`, label: `matchRule(), ${id === 'example' ? 'example rules' : id === '10k' ? `${RULES} rules, index` : `${RULES} rules, scan`}`, value: Math.round(median(out)), unit: 'ops/s', rounds: out.map(Math.round) })),
      ],
      checks: [
        check('rules.match.ratio', `matchRule() with ${RULES} rules (index) / with the example rules`, `${si(median(matchers[1][2]))} ops/s`, `${si(median(matchers[0][2]))} ops/s`, median(matchers[1][2]) / median(matchers[0][2]), '×'),
        check('rules.match.index', `matchRule() with ${RULES} rules: index / scan in rank order`, `${si(median(matchers[1][2]))} ops/s`, `${si(median(matchers[2][2]))} ops/s`, median(matchers[1][2]) / median(matchers[2][2]), '×'),
        check('rules.decide.ratio', `decide() with ${RULES} rules / with the example rules`, `${si(lo)} ops/s`, `${si(so)} ops/s`, lo / so, '×', { op: '>=', value: 0.8 }),
        check('rules.swap.pause', `longest event-loop pause while ${RULES} rules are validated and swapped in`, `${round1(worstPause)} ms`, '', worstPause, 'ms', { op: '<=', value: 5 }),
        check('rules.swap.pause.tuned', `the same with node ${SWAP_TUNING.join(' ')} (docs/OPERATIONS.md)`, `${round1(tunedPause)} ms`, '', tunedPause, 'ms', { op: '<=', value: 5 }),
      ],
      notes: [
        `Requests: ${reqs.length} distinct keys, a third each API keys with tier metadata (an exact-key override in the large set), tenant keys (a prefix rule in the large set, the catch-all in the example) and client addresses; every limit raised to 2^31−1 so every check is admitted and counted. Median of ${rounds} interleaved rounds of ${roundMs} ms.`,
        'matchRule() only finds the rule; decide() then reads and counts the key in that rule\'s own counter store: with 10 000 rules the requests spread over thousands of stores instead of three, so decide() pays memory loads that matching cannot save.',
        `Swap: ${swaps} swaps in a child process, each validating and installing a whole document of ${RULES} rules with changed limits (counters kept); the pause is the largest gap between two setImmediate callbacks during the async swap (the idle figure is the same probe over 100 ms with nothing to do: scheduling and GC noise of this machine). The work is sliced; what remains are young-generation scavenges, each copying what the slices since the last one built (the new rules survive). Node's default young generation (16 MB semi-spaces) gives the first figure; node ${SWAP_TUNING.join(' ')} keeps each scavenge small, at some throughput cost (docs/OPERATIONS.md).`,
      ],
    };
  },
};

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
