/**
 * The one way a rules document becomes the rules in force: validate it as a whole (every
 * problem listed in one ConfigError), then install it in the engine (limits whose scope is
 * unchanged keep their counts). Start-up, the admin API, the watched file and replication all
 * come through here. Both steps work in slices and yield to the event loop between them, so
 * checks keep being answered while a large document is applied.
 */
import type { Engine } from '../engine/engine.ts';
import { validateRulesAsync } from '../engine/rules.ts';
import type { RulesConfig } from '../engine/types.ts';

/** Validate a parsed document, yielding to the event loop between slices of rules. Throws ConfigError listing every problem. */
export async function validateDocument(doc: unknown, file: string): Promise<RulesConfig> {
  return validateRulesAsync(doc, file);
}

/** Validate `doc` and, only if it is valid, install it. Throws ConfigError (rules in force unchanged). */
export async function applyRules(engine: Engine, doc: unknown, file: string): Promise<RulesConfig> {
  const config = await validateDocument(doc, file);
  // Compiled in slices between checks, then swapped in at once.
  await engine.setRulesAsync(config);
  return config;
}
