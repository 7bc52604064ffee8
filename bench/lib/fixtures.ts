/** Rules and keys shared by the sections (and by their child processes). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseRules } from '../../src/engine/rules.ts';
import type { RulesConfig } from '../../src/engine/types.ts';

/** Largest limit the rules schema accepts: every call is admitted for the admitted-path figures. */
export const HIGH_LIMIT = 2 ** 31 - 1;

/**
 * A single catch-all rule with one sliding-window limit (10 slots per window), written like the
 * catch-all of examples/rules.yaml: the algorithm left to its default. `namedAlgorithm` writes
 * `algorithm: sliding-window` instead (same meaning; measured separately because the string then
 * comes from the YAML parser, see docs/PERFORMANCE.md).
 */
export function catchAllRules(limit: number, window = '1m', namedAlgorithm = false): RulesConfig {
  return parseRules(catchAllRulesYaml(limit, window, namedAlgorithm), '<bench>');
}

/** The rules file of {@link catchAllRules} (for nodes started with `--rules FILE`). */
export function catchAllRulesYaml(limit: number, window = '1m', namedAlgorithm = false): string {
  const alg = namedAlgorithm ? ', algorithm: sliding-window' : '';
  return ['version: 1', 'slotsPerWindow: 10', 'rules:', '  - id: bench', '    key: "*"', '    limits:', `      - { limit: ${limit}, window: ${window}${alg} }`, ''].join('\n');
}

/** `count` distinct keys like real ones (`user:<n>`, 6–12 bytes), shuffled with a fixed seed. */
export function makeKeys(count: number, shuffle = true): string[] {
  const keys = new Array<string>(count);
  for (let i = 0; i < count; i++) keys[i] = `user:${i}`;
  if (shuffle) {
    let s = 0x2545f491;
    const rand = () => {
      // xorshift32: deterministic order, so every run walks the keys the same way.
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 4294967296;
    };
    for (let i = count - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      const t = keys[i];
      keys[i] = keys[j];
      keys[j] = t;
    }
  }
  return keys;
}

/** Installed version of a package (for the notes: which peer was measured). */
export function pkgVersion(root: string, name: string): string {
  try {
    return (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}
