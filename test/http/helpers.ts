/**
 * Test helpers for the HTTP adapter: a structured-field parser for the RateLimit headers
 * (written independently of src/http/headers.ts) and the real Engine with the test rules.
 */
import { createEngine, type Engine } from '../../src/engine/engine.ts';
import { parseRules } from '../../src/engine/rules.ts';

export interface SfItem {
  value: string;
  params: Record<string, number>;
}

/** Parses a structured-field List of sf-string Items with integer parameters. */
export function parseSfList(header: string): SfItem[] {
  const out: SfItem[] = [];
  let i = 0;
  const s = header;
  const ws = () => {
    while (s[i] === ' ' || s[i] === '\t') i++;
  };
  while (i < s.length) {
    ws();
    if (s[i] !== '"') throw new Error(`expected sf-string at ${i} in ${s}`);
    i++;
    let value = '';
    while (s[i] !== '"') {
      if (i >= s.length) throw new Error('unterminated sf-string');
      if (s[i] === '\\') i++;
      value += s[i++];
    }
    i++;
    const params: Record<string, number> = {};
    while (s[i] === ';') {
      i++;
      const m = /^([a-z*][a-z0-9_.*-]*)=(-?\d{1,15})/.exec(s.slice(i));
      if (!m) throw new Error(`bad parameter at ${i} in ${s}`);
      params[m[1]] = Number(m[2]);
      i += m[0].length;
    }
    out.push({ value, params });
    ws();
    if (i < s.length) {
      if (s[i] !== ',') throw new Error(`expected , at ${i} in ${s}`);
      i++;
    }
  }
  return out;
}

/**
 * The rules every HTTP test uses (fixed windows, so counts are exact at a fixed clock):
 *   per-key   k:*        5 per 1m                    policy "per-key"
 *   multi     multi:*    3 per 10s and 10 per 1m     policies "multi/10s", "multi/1m"
 *   atomic    atomic:*   100 per 1h                  policy "atomic"
 *   tier-free t:* with metadata tier=free, 2 per 1m, priority 10
 *   tier-any  t:*        50 per 1m, priority 1
 *   roomy     r:*        1000 per 1h (for tests that make many requests)
 * Keys starting with "other:" match no rule.
 */
export const TEST_RULES_YAML = `
version: 1
rules:
  - id: per-key
    key: "k:*"
    limits: [{ limit: 5, window: 1m, algorithm: fixed-window }]
  - id: multi
    key: "multi:*"
    limits:
      - { limit: 3, window: 10s, algorithm: fixed-window }
      - { limit: 10, window: 1m, algorithm: fixed-window }
  - id: atomic
    key: "atomic:*"
    limits: [{ limit: 100, window: 1h, algorithm: fixed-window }]
  - id: tier-free
    key: "t:*"
    priority: 10
    metadata: { tier: free }
    limits: [{ limit: 2, window: 1m, algorithm: fixed-window }]
  - id: tier-any
    key: "t:*"
    priority: 1
    limits: [{ limit: 50, window: 1m, algorithm: fixed-window }]
  - id: roomy
    key: "r:*"
    limits: [{ limit: 1000, window: 1h, algorithm: fixed-window }]
`;

/** A fresh real Engine with the test rules. */
export function makeLimiter(): Engine {
  return createEngine({ nodeId: 'http-test', rules: parseRules(TEST_RULES_YAML, 'test/http/rules.yaml') });
}
