/**
 * Swapping many rules in while the event loop is watched (child of the `rules` section, run
 * once with Node's default heap settings and once with a smaller young generation):
 *
 *   tsx bench/children/rules-swap.ts RULES SWAPS
 *
 * An engine with RULES rules takes SWAPS whole new documents (alternately two with different
 * limits, so every rule changes) through validateRulesAsync + setRulesAsync, with a probe of the
 * event loop's longest pause during each; the synchronous validateRules + setRules is timed too.
 * The idle figure is the same probe over 100 ms with nothing to do.
 */
import { Engine } from '../../src/engine/engine.ts';
import { validateRules, validateRulesAsync } from '../../src/engine/rules.ts';
import { loopPauseProbe, manyRulesDocument } from '../../support/many-rules.ts';
import { childMain } from '../lib/child.ts';
import { HIGH_LIMIT } from '../lib/fixtures.ts';

export interface RulesSwapResult {
  idleMs: number[];
  pauseMs: number[];
  asyncMs: number[];
  syncMs: number[];
}

childMain(async (): Promise<RulesSwapResult> => {
  const rules = Number(process.argv[2]);
  const swaps = Number(process.argv[3]);
  const engine = new Engine({ nodeId: 'bench', rules: validateRules(manyRulesDocument(rules, HIGH_LIMIT), '<bench>') });
  const docs = [manyRulesDocument(rules, HIGH_LIMIT), manyRulesDocument(rules, HIGH_LIMIT - 1)];
  const out: RulesSwapResult = { idleMs: [], pauseMs: [], asyncMs: [], syncMs: [] };
  for (let i = 0; i < swaps; i++) {
    const probe = loopPauseProbe();
    await new Promise<void>((resolve) => setTimeout(resolve, 100));
    out.idleMs.push(probe.stop());
  }
  for (let i = 0; i < swaps; i++) {
    const probe = loopPauseProbe();
    const t0 = performance.now();
    await engine.setRulesAsync(await validateRulesAsync(docs[i % 2], '<bench>'));
    out.asyncMs.push(performance.now() - t0);
    out.pauseMs.push(probe.stop());
    const t1 = performance.now();
    engine.setRules(validateRules(docs[(i + 1) % 2], '<bench>'));
    out.syncMs.push(performance.now() - t1);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return out;
});
