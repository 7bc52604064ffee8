/**
 * A large rules document for tests and the bench: the example rules plus `count` generated
 * rules, mostly exact-key overrides and prefixes (what a service with many customers writes),
 * and request keys that hit them. Also a probe of the event loop's longest pause.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

const EXAMPLE_RULES = fileURLToPath(new URL('../examples/rules.yaml', import.meta.url));

type RawRule = { id: string; key: string; priority?: number; limits: { limit: number; window: string }[] } & Record<string, unknown>;

/** examples/rules.yaml as a raw document; `limit` replaces every limit (and burst) when given. */
export function exampleRulesDocument(limit?: number): { version: 1; slotsPerWindow?: number; rules: RawRule[] } {
  const doc = parseYaml(readFileSync(EXAMPLE_RULES, 'utf8')) as { version: 1; slotsPerWindow?: number; rules: RawRule[] };
  if (limit !== undefined) {
    for (const r of doc.rules) r.limits = r.limits.map((l) => ({ ...l, limit, ...('burst' in l ? { burst: limit } : {}) }));
  }
  return doc;
}

/**
 * `total` rules: the example rules plus generated ones, 60 % exact-key overrides for one API key
 * (`apikey:cust-<i>`, above the example's `apikey:*` tiers), 35 % per-tenant prefixes
 * (`tenant:<i>:*`) and 5 % per-tenant prefixes that need a metadata value.
 */
export function manyRulesDocument(total: number, limit = 1000): { version: 1; slotsPerWindow?: number; rules: RawRule[] } {
  const doc = exampleRulesDocument(limit);
  const count = total - doc.rules.length;
  const exact = Math.floor(count * 0.6);
  const prefix = Math.floor(count * 0.35);
  for (let i = 0; i < count; i++) {
    if (i < exact) doc.rules.push({ id: `cust-${i}`, key: `apikey:cust-${i}`, priority: 60, limits: [{ limit, window: '1m' }] });
    else if (i < exact + prefix) doc.rules.push({ id: `tenant-${i}`, key: `tenant:${i}:*`, priority: 20, limits: [{ limit, window: '1m' }] });
    else doc.rules.push({ id: `tenant-eu-${i}`, key: `tenant:${i}:*`, priority: 21, metadata: { region: 'eu' }, limits: [{ limit, window: '1m' }] });
  }
  return doc;
}

/**
 * `count` request keys (with metadata) spread over what both documents match: API keys with a
 * tier (an override in the large document, `api-free` in the example), tenant keys (a prefix,
 * or the catch-all) and client addresses (`per-client-ip` in both).
 */
export function manyRulesRequests(count: number, rules: number): { key: string; metadata?: Record<string, string> }[] {
  const out: { key: string; metadata?: Record<string, string> }[] = [];
  const exact = Math.max(1, Math.floor(rules * 0.6));
  for (let i = 0; i < count; i++) {
    const n = (i * 7919) % Math.max(1, rules);
    if (i % 3 === 0) out.push({ key: `apikey:cust-${n % exact}`, metadata: { tier: 'free' } });
    else if (i % 3 === 1) out.push({ key: `tenant:${exact + (n % Math.max(1, rules - exact))}:user:${i}` });
    else out.push({ key: `ip:10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` });
  }
  return out;
}

/**
 * Watches the event loop for the longest time it was held: a chain of setImmediate callbacks
 * records the largest gap between two of them (how long a request arriving then would wait).
 */
export function loopPauseProbe(): { stop(): number } {
  let last = performance.now();
  let worst = 0;
  let running = true;
  const tick = () => {
    const t = performance.now();
    if (t - last > worst) worst = t - last;
    last = t;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    stop() {
      running = false;
      const t = performance.now();
      return Math.max(worst, t - last);
    },
  };
}
