/**
 * The one validation path: one ajv instance compiles every schema (TypeBox or plain JSON
 * Schema) of the service, and `problemsFromAjv` is the one translation of its errors into
 * problems `{ code, path, message, file? }`.
 *
 * Options, chosen once for every caller:
 * - allErrors: every problem of a document is listed, not only the first;
 * - strict: a schema with an unknown keyword or an ambiguous type fails to compile;
 * - no coercion, no defaults, no removal of unknown fields: what is validated is what arrived.
 *   Text inputs that need converting (command-line flags and environment variables in
 *   src/config.ts, the query string of GET /v1/check in src/http/query.ts) are converted by
 *   their reader before validation, because their syntax (durations, `m.<name>` parameters)
 *   is not JSON Schema's.
 * - verbose: errors carry the offending value, so messages can say what was found. A schema
 *   marked `writeOnly: true` (secrets) never has its value repeated in a message.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { Static, TSchema } from '@sinclair/typebox';
import type { ErrorCode, Problem } from './errors.ts';

export const AJV_OPTIONS = Object.freeze({
  allErrors: true,
  strict: true,
  allowUnionTypes: true,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
  verbose: true,
} as const);

const ajv = new Ajv({ ...AJV_OPTIONS });

/** A compiled validator of a TypeBox schema: a type guard whose `errors` hold the ajv errors of the last call. */
export type Validator<T> = ValidateFunction<T>;

/** A compiled validator of a plain JSON schema: true when valid; `errors` as above. */
export interface Check {
  (data: unknown): boolean;
  errors?: ErrorObject[] | null;
}

/** Compiles a schema with the one ajv instance (ajv caches by schema object). */
export function compileSchema<S extends TSchema>(schema: S): Validator<Static<S>>;
export function compileSchema(schema: object): Check;
export function compileSchema(schema: object): Check {
  return ajv.compile(schema);
}

export interface ProblemOptions {
  /** File (or source) the document came from, copied into every problem. */
  file?: string;
  /**
   * Every problem gets this code instead of the code of its kind (e.g. RULE_INVALID), or the
   * code this function returns for the kind and the ajv error (the HTTP API's field codes).
   */
  code?: ErrorCode | ((kind: ErrorCode, error: ErrorObject) => ErrorCode);
}

/** Validates `data`; returns the problems (empty when valid). */
export function validate(validator: Check, data: unknown, opts: ProblemOptions = {}): Problem[] {
  return validator(data) ? [] : problemsFromAjv(validator.errors, opts);
}

const RANGE = new Set([
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties', 'maxProperties',
]);

/** Keywords whose branch errors are summed up by their own error. */
const COMPOSITE = new Set(['anyOf', 'oneOf', 'propertyNames']);

const escapePointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  return String(v);
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string', integer: 'an integer', number: 'a number', boolean: 'a boolean',
  object: 'an object', array: 'an array', null: 'null',
};
const typeName = (t: unknown) => (Array.isArray(t) ? t : String(t).split(',')).map((x) => TYPE_NAMES[String(x)] ?? String(x)).join(' or ');

function secret(e: ErrorObject): boolean {
  return (e.parentSchema as { writeOnly?: unknown } | undefined)?.writeOnly === true;
}

function rangeMessage(e: ErrorObject): string {
  const limit = String((e.params as { limit?: unknown }).limit);
  const got = secret(e) ? '' : `, got ${show(e.data)}`;
  switch (e.keyword) {
    case 'minimum': return `must be at least ${limit}${got}`;
    case 'maximum': return `must be at most ${limit}${got}`;
    case 'exclusiveMinimum': return `must be more than ${limit}${got}`;
    case 'exclusiveMaximum': return `must be less than ${limit}${got}`;
    case 'minLength': return `must have at least ${limit} character${limit === '1' ? '' : 's'}`;
    case 'maxLength': return `must have at most ${limit} characters`;
    case 'minItems': return `must have at least ${limit} item${limit === '1' ? '' : 's'}`;
    case 'maxItems': return `must have at most ${limit} items`;
    case 'minProperties': return `must have at least ${limit} entr${limit === '1' ? 'y' : 'ies'}`;
    case 'maxProperties': return `must have at most ${limit} entries`;
    default: return e.message ?? 'is out of range';
  }
}

/** One ajv error as a problem (code of its kind, JSON pointer path, clear message). */
function one(e: ErrorObject, branches: readonly ErrorObject[]): Omit<Problem, 'file'> {
  const path = e.instancePath;
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'additionalProperties') {
    const name = String(p.additionalProperty);
    return { code: 'UNKNOWN_FIELD', path: `${path}/${escapePointer(name)}`, message: `unknown field "${name}"` };
  }
  if (e.keyword === 'required') {
    const name = String(p.missingProperty);
    return { code: 'FIELD_MISSING', path: `${path}/${escapePointer(name)}`, message: `missing required field "${name}"` };
  }
  if (e.keyword === 'type') {
    return { code: 'TYPE_MISMATCH', path, message: `must be ${typeName(p.type)}, got ${e.data === undefined ? 'nothing' : typeof e.data === 'object' || e.data === null ? show(e.data) : typeof e.data === 'number' && !Number.isInteger(e.data) ? `the number ${String(e.data)}` : secret(e) ? typeof e.data : show(e.data)}` };
  }
  if (e.keyword === 'enum') {
    const allowed = (p.allowedValues as unknown[]).map((a) => JSON.stringify(a)).join(', ');
    return { code: 'VALUE_NOT_ALLOWED', path, message: `must be one of ${allowed}${secret(e) ? '' : `, got ${show(e.data)}`}` };
  }
  if (e.keyword === 'const') {
    return { code: 'VALUE_NOT_ALLOWED', path, message: `must be ${JSON.stringify(p.allowedValue)}${secret(e) ? '' : `, got ${show(e.data)}`}` };
  }
  if (RANGE.has(e.keyword)) return { code: 'OUT_OF_RANGE', path, message: rangeMessage(e) };
  if (e.keyword === 'pattern') {
    const description = (e.parentSchema as { description?: unknown } | undefined)?.description;
    const what = typeof description === 'string' ? description : `a string matching ${String(p.pattern)}`;
    return { code: 'PATTERN_MISMATCH', path, message: `must be ${what}${secret(e) ? '' : `, got ${show(e.data)}`}` };
  }
  if (e.keyword === 'uniqueItems') {
    const [a, b] = [Number(p.i), Number(p.j)].sort((x, y) => x - y);
    return { code: 'VALUE_INVALID', path, message: `must not repeat an item (items ${a} and ${b} are equal)` };
  }
  if (e.keyword === 'propertyNames') {
    const name = String(p.propertyName);
    const why = branches.length > 0 ? one(branches[0]!, []).message : 'is not allowed';
    // The path is the object's: a pointer to the name would point to its value.
    return { code: 'VALUE_INVALID', path, message: `has a name ${JSON.stringify(name)} that ${why}` };
  }
  if (e.keyword === 'anyOf' || e.keyword === 'oneOf') {
    const here = branches.filter((b) => b.instancePath === path);
    if (here.length > 0 && here.every((b) => b.keyword === 'type')) {
      const types = [...new Set(here.flatMap((b) => String((b.params as { type: unknown }).type).split(',')))];
      return { code: 'TYPE_MISMATCH', path, message: `must be ${typeName(types)}, got ${show(e.data)}` };
    }
    if (here.length > 0 && here.every((b) => b.keyword === 'const')) {
      const allowed = here.map((b) => JSON.stringify((b.params as { allowedValue: unknown }).allowedValue)).join(', ');
      return { code: 'VALUE_NOT_ALLOWED', path, message: `must be one of ${allowed}${secret(e) ? '' : `, got ${show(e.data)}`}` };
    }
    const reasons = [...new Set(branches.map((b) => one(b, []).message))];
    return { code: 'VALUE_INVALID', path, message: `matches none of the accepted forms (${reasons.join('; or ')})` };
  }
  return { code: 'VALUE_INVALID', path, message: e.message ?? 'is invalid' };
}

/**
 * Translates ajv errors into problems, one per error, in ajv's order. Errors inside a
 * composite keyword (anyOf, oneOf, propertyNames) are folded into that keyword's problem;
 * duplicates are dropped.
 */
export function problemsFromAjv(errors: readonly ErrorObject[] | null | undefined, opts: ProblemOptions = {}): Problem[] {
  const list = errors ?? [];
  const composites = list.filter((e) => COMPOSITE.has(e.keyword));
  const inside = (e: ErrorObject, c: ErrorObject) => e !== c && e.schemaPath.startsWith(`${c.schemaPath}/`);
  const out: Problem[] = [];
  const seen = new Set<string>();
  for (const e of list) {
    if (composites.some((c) => inside(e, c))) continue;
    const branches = COMPOSITE.has(e.keyword) ? list.filter((b) => inside(b, e)) : [];
    const p: Problem = one(e, branches);
    if (typeof opts.code === 'function') p.code = opts.code(p.code, e);
    else if (opts.code !== undefined) p.code = opts.code;
    if (opts.file !== undefined) p.file = opts.file;
    const k = `${p.code}|${p.path}|${p.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(p);
  }
  return out;
}
