/**
 * Rules: parsing and validation of the rules file (JSON or YAML), then deep-frozen.
 *
 * Validation collects every problem (schema errors and semantic checks) with its code, file
 * and JSON path, and throws one ConfigError listing them all. It runs rule by rule, so that
 * `validateRulesAsync` can yield to the event loop between slices of a large document.
 */
import { compileSchema, problemsFromAjv } from './validation.ts';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ALGORITHMS } from '../../crdt/index.ts';
import { parseDuration } from './duration.ts';
import { ConfigError, type ConfigProblem } from './errors.ts';
import { resolveHierarchySteps, tiersOf, type PartialRule } from './hierarchy.ts';
import { PRIORITIES, type Algorithm, type LimitSpec, type Priority, type RulesConfig } from './types.ts';

export const DEFAULT_SLOTS_PER_WINDOW = 10;
export const MAX_LIMIT = 2 ** 31 - 1;

const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$';

/** JSON schema of one rule (validated before its semantic checks). */
export const RULE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  // key and limits are required of a rule without a parent (checked with the hierarchy).
  required: ['id'],
  properties: {
    id: { type: 'string', pattern: ID_PATTERN },
    parent: { type: 'string', pattern: ID_PATTERN },
    tier: { type: 'string', pattern: ID_PATTERN },
    key: { type: 'string', minLength: 1, maxLength: 512 },
    description: { type: 'string', maxLength: 1000 },
    priority: { type: 'integer', minimum: -1_000_000, maximum: 1_000_000 },
    maxKeys: { type: 'integer', minimum: 1, maximum: 100_000_000 },
    degraded: { enum: ['share', 'open', 'closed'] },
    nearLimitSharing: { type: 'boolean' },
    reserve: {
      type: 'object',
      additionalProperties: false,
      required: ['share', 'for'],
      properties: { share: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 }, for: { enum: [...PRIORITIES] } },
    },
    adaptive: {
      type: 'object',
      additionalProperties: false,
      required: ['signal', 'floor'],
      properties: {
        signal: { type: 'string', pattern: ID_PATTERN },
        floor: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
        ceiling: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
      },
    },
    bypass: { anyOf: [{ enum: [...PRIORITIES] }, { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...PRIORITIES] } }] },
    metadata: {
      type: 'object',
      maxProperties: 16,
      propertyNames: { minLength: 1, maxLength: 64 },
      additionalProperties: {
        anyOf: [
          { type: 'string', maxLength: 256 },
          { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', maxLength: 256 } },
        ],
      },
    },
    limits: {
      type: 'array',
      minItems: 1,
      maxItems: 16,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['limit', 'window'],
        properties: {
          limit: { type: 'integer', minimum: 1, maximum: MAX_LIMIT },
          window: { type: ['string', 'integer'] },
          algorithm: { enum: [...ALGORITHMS] },
          burst: { type: 'integer', minimum: 1, maximum: MAX_LIMIT },
          slotsPerWindow: { type: 'integer', minimum: 1, maximum: 1000 },
        },
      },
    },
  },
} as const;

const DOCUMENT_PROPERTIES = {
  version: { const: 1 },
  slotsPerWindow: { type: 'integer', minimum: 1, maximum: 1000 },
  tiers: {
    type: 'object',
    additionalProperties: false,
    required: ['names'],
    properties: {
      names: { type: 'array', minItems: 1, maxItems: 64, uniqueItems: true, items: { type: 'string', pattern: ID_PATTERN } },
      metadata: { type: 'string', minLength: 1, maxLength: 64 },
      keys: { type: 'object', maxProperties: 100_000, propertyNames: { minLength: 1, maxLength: 512 }, additionalProperties: { type: 'string' } },
      default: { type: 'string' },
    },
  },
} as const;

/** JSON schema of the rules document. */
export const RULES_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: { ...DOCUMENT_PROPERTIES, rules: { type: 'array', maxItems: 10_000, items: RULE_SCHEMA } },
} as const;

/** Rules validated per slice by validateRulesAsync, between yields to the event loop. */
const VALIDATE_SLICE = 100;

/** The document without its rules' contents, then each rule on its own (same checks as RULES_SCHEMA). */
const validateDocument = compileSchema({ ...RULES_SCHEMA, properties: { ...DOCUMENT_PROPERTIES, rules: { type: 'array', maxItems: 10_000 } } });
const validateRule = compileSchema(RULE_SCHEMA);

/** Read and parse a rules file. Throws ConfigError listing every problem. */
export function loadRulesFile(path: string): RulesConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file: path, path: '', message: `cannot read: ${(cause as Error).message}` }], 'CONFIG_UNREADABLE');
  }
  return parseRules(text, path);
}

/** Parse rules from JSON or YAML text (JSON is YAML, so one parser reads both). */
export function parseRules(text: string, file = '<inline>'): RulesConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true, maxAliasCount: 100 });
  } catch (cause) {
    throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file, path: '', message: `not valid YAML/JSON: ${(cause as Error).message}` }], 'CONFIG_UNREADABLE');
  }
  return validateRules(doc, file);
}

/** Validate a parsed rules document. Throws ConfigError listing every problem. */
export function validateRules(doc: unknown, file = '<inline>'): RulesConfig {
  const steps = validation(doc, file);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/**
 * `validateRules` that does not hold the event loop: the rules are checked in slices with a
 * yield between them. Rejects with the same ConfigError.
 */
export async function validateRulesAsync(doc: unknown, file = '<inline>'): Promise<RulesConfig> {
  const steps = validation(doc, file);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

type RawLimit = { limit: number; window: string | number; algorithm?: Algorithm; burst?: number; slotsPerWindow?: number };
type RawRule = {
  id: string;
  key?: string;
  parent?: string;
  tier?: string;
  description?: string;
  priority?: number;
  maxKeys?: number;
  degraded?: 'share' | 'open' | 'closed';
  nearLimitSharing?: boolean;
  reserve?: { share: number; for: Priority };
  bypass?: Priority | Priority[];
  adaptive?: { signal: string; floor: number; ceiling?: number };
  metadata?: Record<string, string | string[]>;
  limits?: RawLimit[];
};

/** The validation, as steps: it yields after each slice of rules and returns the frozen config. */
function* validation(doc: unknown, file: string): Generator<void, RulesConfig> {
  const problems: ConfigProblem[] = [];
  // Schema problems do not stop the semantic checks below (every problem is listed at once);
  // those checks skip values whose type the schema has already refused.
  if (!validateDocument(doc)) {
    problems.push(...problemsFromAjv(validateDocument.errors, { file, code: 'RULE_INVALID' }));
    if (!isRecord(doc) || !Array.isArray(doc.rules)) throw new ConfigError(dedupe(problems));
  }
  const d = doc as { slotsPerWindow?: number; rules: unknown[]; tiers?: unknown };
  const slotsPerWindow = typeof d.slotsPerWindow === 'number' ? d.slotsPerWindow : DEFAULT_SLOTS_PER_WINDOW;
  const tiers = tiersOf(d.tiers, file, problems);
  const seen = new Map<string, number>();
  const rules: PartialRule[] = [];
  for (let ri = 0; ri < d.rules.length; ri++) {
    if (ri % VALIDATE_SLICE === VALIDATE_SLICE - 1) yield;
    const raw = d.rules[ri];
    const at = `/rules/${ri}`;
    const schemaOk = validateRule(raw);
    if (!schemaOk) for (const p of problemsFromAjv(validateRule.errors, { file, code: 'RULE_INVALID' })) problems.push({ ...p, path: at + p.path });
    if (!schemaOk && (!isRecord(raw) || typeof raw.id !== 'string' || (raw.key !== undefined && typeof raw.key !== 'string') || (raw.limits !== undefined && !Array.isArray(raw.limits)))) continue;
    const r = raw as RawRule;
    const prev = seen.get(r.id);
    if (prev !== undefined) {
      problems.push({ code: 'RULE_DUPLICATE_ID', file, path: `${at}/id`, message: `rule id "${r.id}" is already used by /rules/${prev}` });
    } else seen.set(r.id, ri);
    if (r.key !== undefined) {
      const star = r.key.indexOf('*');
      if (star !== -1 && star !== r.key.length - 1) {
        problems.push({ code: 'RULE_INVALID_PATTERN', file, path: `${at}/key`, message: `"*" may only end a key pattern ("prefix*") or stand alone ("*"): "${r.key}"` });
      }
    }
    const limits: LimitSpec[] = [];
    const geometryKeys = new Set<string>();
    (r.limits ?? []).forEach((l, li) => {
      if (!schemaOk && (!isRecord(l) || (typeof l.window !== 'string' && !Number.isInteger(l.window)))) return;
      const lat = `${at}/limits/${li}`;
      const windowMs = parseDuration(l.window);
      const algorithm = l.algorithm ?? 'sliding-window';
      if (windowMs === undefined) {
        problems.push({ code: 'RULE_INVALID_WINDOW', file, path: `${lat}/window`, message: `"${String(l.window)}" is not a duration like "500ms", "1s", "10m", "1h", "1d"` });
        return;
      }
      if (windowMs > 366 * 86_400_000) {
        problems.push({ code: 'RULE_INVALID_WINDOW', file, path: `${lat}/window`, message: `window ${String(l.window)} is longer than 366 days` });
        return;
      }
      if (l.burst !== undefined && algorithm !== 'token-bucket') {
        problems.push({ code: 'RULE_INVALID', file, path: `${lat}/burst`, message: `burst applies only to algorithm "token-bucket" (this limit is "${algorithm}")` });
      }
      const gk = `${algorithm}/${windowMs}`;
      if (geometryKeys.has(gk)) {
        problems.push({ code: 'RULE_INVALID', file, path: lat, message: `rule "${r.id}" has two ${algorithm} limits with the same window; keep the stricter one` });
      }
      geometryKeys.add(gk);
      const spec: LimitSpec = { limit: l.limit, windowMs, window: typeof l.window === 'number' ? `${l.window}ms` : l.window, algorithm };
      if (l.burst !== undefined) spec.burst = l.burst;
      if (l.slotsPerWindow !== undefined) spec.slotsPerWindow = l.slotsPerWindow;
      limits.push(spec);
    });
    let metadata: Record<string, readonly string[]> | undefined;
    if (r.metadata !== undefined) {
      metadata = {};
      for (const [k, v] of Object.entries(r.metadata)) metadata[k] = Array.isArray(v) ? [...v] : [v];
    }
    const rule: PartialRule = { id: r.id, at };
    if (r.key !== undefined) rule.key = r.key;
    if (r.limits !== undefined) rule.limits = limits;
    if (metadata !== undefined) rule.metadata = metadata;
    if (r.priority !== undefined) rule.priority = r.priority;
    if (r.parent !== undefined) rule.parent = r.parent;
    if (r.tier !== undefined) rule.tier = r.tier;
    if (r.description !== undefined) rule.description = r.description;
    if (r.maxKeys !== undefined) rule.maxKeys = r.maxKeys;
    if (r.degraded !== undefined) rule.degraded = r.degraded;
    if (r.nearLimitSharing !== undefined) rule.nearLimitSharing = r.nearLimitSharing;
    if (r.reserve !== undefined) rule.reserve = { share: r.reserve.share, for: r.reserve.for };
    if (r.bypass !== undefined) rule.bypass = Array.isArray(r.bypass) ? [...r.bypass] : [r.bypass];
    if (r.adaptive !== undefined && typeof r.adaptive.floor === 'number') {
      const ceiling = r.adaptive.ceiling ?? 1;
      if (r.adaptive.floor > ceiling) problems.push({ code: 'RULE_INVALID', file, path: `${at}/adaptive/floor`, message: `floor ${r.adaptive.floor} is above the ceiling ${ceiling}` });
      rule.adaptive = { signal: r.adaptive.signal, floor: r.adaptive.floor, ceiling };
    }
    rules.push(rule);
  }
  const resolved = yield* resolveHierarchySteps(rules, tiers, file, problems);
  if (problems.length > 0) throw new ConfigError(dedupe(problems));
  for (let i = 0; i < resolved.length; i++) {
    if (i % (4 * VALIDATE_SLICE) === 4 * VALIDATE_SLICE - 1) yield;
    deepFreeze(resolved[i]);
  }
  const config: RulesConfig = { version: 1, slotsPerWindow, rules: Object.freeze(resolved) };
  if (tiers !== undefined) config.tiers = deepFreeze(tiers);
  return Object.freeze(config);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.code}|${p.path}|${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
