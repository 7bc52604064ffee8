/**
 * JSON schemas of the HTTP API (TypeBox). Bodies are validated by validators compiled with the
 * service's one ajv instance (src/engine/validation.ts, installed as fastify's validator
 * compiler in src/http/app.ts): `additionalProperties: false`, no type coercion, no removal of
 * unknown fields; src/http/errors.ts turns their errors into stable error codes.
 *
 * What a schema cannot say cheaply (key length in UTF-8 bytes, control characters, metadata
 * value bytes) is checked by hand in `checkKey` / `checkMetadata` before anything is counted.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { Problem } from '../engine/errors.ts';
import { PRIORITIES, type Priority } from '../engine/types.ts';

/** Limits of the HTTP input, resolved from the buildApp options. */
export interface InputLimits {
  maxKeyBytes: number;
  maxCost: number;
  maxMetadataEntries: number;
  maxMetadataNameBytes: number;
  maxMetadataValueBytes: number;
  maxBatch: number;
}

export const DEFAULT_LIMITS: Readonly<InputLimits> = Object.freeze({
  maxKeyBytes: 512,
  maxCost: 1_000_000,
  maxMetadataEntries: 16,
  maxMetadataNameBytes: 64,
  maxMetadataValueBytes: 256,
  maxBatch: 1000,
});

const PositiveInt = Type.Optional(Type.Integer({ minimum: 1 }));

/** The numeric options of buildApp (the limiter and the clock are functions: checked by hand). */
export const appOptionsSchema = Type.Object({
  maxKeyBytes: PositiveInt,
  maxCost: PositiveInt,
  maxMetadataEntries: PositiveInt,
  maxMetadataNameBytes: PositiveInt,
  maxMetadataValueBytes: PositiveInt,
  maxBatch: PositiveInt,
  bodyLimit: PositiveInt,
  denyStatus: Type.Optional(Type.Integer({ minimum: 400, maximum: 599, description: 'an HTTP error status' })),
});

/**
 * `maxLength` counts code points, and a code point is at least one UTF-8 byte, so a string over
 * `maxLength` code points is always over the byte limit: the schema refuses the grossly long
 * ones and the handler measures the bytes of the rest.
 */
export function keySchema(l: InputLimits) {
  return Type.String({ minLength: 1, maxLength: l.maxKeyBytes });
}

export function costSchema(l: InputLimits) {
  return Type.Integer({ minimum: 1, maximum: l.maxCost });
}

/** A check's priority (src/engine/types.ts PRIORITIES). */
export function prioritySchema() {
  return Type.Unsafe<Priority>({ type: 'string', enum: [...PRIORITIES] });
}

/** Metadata: an object of strings. Written raw (not Type.Record) to avoid a per-property regex. */
export function metadataSchema(l: InputLimits) {
  return Type.Unsafe<Record<string, string>>({
    type: 'object',
    maxProperties: l.maxMetadataEntries,
    propertyNames: { type: 'string', minLength: 1, maxLength: l.maxMetadataNameBytes },
    additionalProperties: { type: 'string', maxLength: l.maxMetadataValueBytes },
  });
}

export function checkBodySchema(l: InputLimits) {
  return Type.Object(
    {
      key: keySchema(l),
      metadata: Type.Optional(metadataSchema(l)),
      cost: Type.Optional(costSchema(l)),
      priority: Type.Optional(prioritySchema()),
      /** Set by a client that may retry: a repeat within a few seconds is answered without counting again (src/http/request-ids.ts). */
      requestId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    },
    { additionalProperties: false },
  );
}

/** Most dimensions in one POST /v1/check. */
export const MAX_DIMENSIONS = 16;

/** One dimension of a multi-dimension check: a key (with its metadata), its cost, an optional name for the answer. */
export function dimensionSchema(l: InputLimits) {
  return Type.Object(
    {
      key: keySchema(l),
      metadata: Type.Optional(metadataSchema(l)),
      cost: Type.Optional(costSchema(l)),
      priority: Type.Optional(prioritySchema()),
      name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    },
    { additionalProperties: false },
  );
}

/**
 * POST /v1/check: one check (`key`, …) or several dimensions that must all pass (`checks`).
 * Exactly one of `key` and `checks` (checked by the handler: a schema cannot say it simply).
 */
export function checkRouteBodySchema(l: InputLimits) {
  return Type.Object(
    {
      key: Type.Optional(keySchema(l)),
      metadata: Type.Optional(metadataSchema(l)),
      cost: Type.Optional(costSchema(l)),
      priority: Type.Optional(prioritySchema()),
      requestId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      checks: Type.Optional(Type.Array(dimensionSchema(l), { minItems: 1, maxItems: MAX_DIMENSIONS })),
    },
    { additionalProperties: false },
  );
}

/** A refund names the admission it gives back (src/engine/admissions.ts). */
export function refundBodySchema() {
  return Type.Object({ admissionId: Type.String({ minLength: 1, maxLength: 160 }) }, { additionalProperties: false });
}

/** Admin reset: a key (and the metadata that selects its rule). */
export function resetBodySchema(l: InputLimits) {
  return Type.Object({ key: keySchema(l), metadata: Type.Optional(metadataSchema(l)) }, { additionalProperties: false });
}

export function batchBodySchema(l: InputLimits) {
  return Type.Object(
    {
      checks: Type.Array(checkBodySchema(l), { minItems: 1, maxItems: l.maxBatch }),
    },
    { additionalProperties: false },
  );
}

export type CheckBody = Static<ReturnType<typeof checkBodySchema>>;
export type CheckRouteBody = Static<ReturnType<typeof checkRouteBodySchema>>;
export type DimensionBody = Static<ReturnType<typeof dimensionSchema>>;
export type RefundBody = Static<ReturnType<typeof refundBodySchema>>;
export type ResetBody = Static<ReturnType<typeof resetBodySchema>>;
export type BatchBody = Static<ReturnType<typeof batchBodySchema>>;

const NullableString = Type.Union([Type.String(), Type.Null()]);

/** Response schema of a Decision (serialised with fast-json-stringify). */
export const decisionSchema = Type.Object({
  allowed: Type.Boolean(),
  limit: Type.Number(),
  remaining: Type.Number(),
  resetMs: Type.Number(),
  retryAfterMs: Type.Number(),
  ruleId: NullableString,
  policy: NullableString,
  level: Type.Optional(Type.String()),
  code: Type.Optional(Type.String()),
  bypassed: Type.Optional(Type.Boolean()),
  admissionId: Type.Optional(Type.String()),
});

export const batchResultSchema = Type.Object({ results: Type.Array(decisionSchema) });

export const refundResultSchema = Type.Object({
  ruleId: NullableString,
  refunded: Type.Number(),
});

export const resetResultSchema = Type.Object({
  key: Type.String(),
  ruleId: NullableString,
  reset: Type.Number(),
  limits: Type.Array(Type.Object({ policy: Type.String(), reset: Type.Number() })),
});

/** The one problem shape (src/engine/errors.ts Problem) as an HTTP client sees it. */
export const problemSchema = Type.Object({ code: Type.String(), path: Type.String(), message: Type.String() });

export const errorBodySchema = Type.Object({
  error: Type.String(),
  message: Type.String(),
  path: Type.Optional(Type.String()),
  problems: Type.Optional(Type.Array(problemSchema)),
});

export const healthSchema = Type.Object({ status: Type.String() });

export const readySchema = Type.Object({
  ready: Type.Boolean(),
  degraded: Type.Boolean(),
  reasons: Type.Array(Type.String()),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

export type { TSchema };

// ---- hand checks (after the schema) --------------------------------------------------------

/**
 * C0 controls, DEL, C1 controls, and (with the `u` flag, which pairs surrogates first) lone
 * surrogates, which have no UTF-8 form.
 */
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/u;

/** A problem in a request: the one problem shape (src/engine/errors.ts). */
export type InputProblem = Problem;

/** UTF-8 length is at most 3 bytes per UTF-16 code unit: measure only when it could matter. */
function overBytes(s: string, max: number): boolean {
  return s.length * 3 > max && Buffer.byteLength(s, 'utf8') > max;
}

/**
 * Checks what the schema cannot: byte length, control characters and lone surrogates.
 * Also checks presence and emptiness so it serves the (schema-less) GET route.
 */
export function checkKey(key: unknown, l: InputLimits, path: string): InputProblem | null {
  if (key === undefined) return { code: 'KEY_MISSING', message: 'key is required', path };
  if (typeof key !== 'string') return { code: 'KEY_INVALID', message: 'key must be a single string', path };
  if (key.length === 0) return { code: 'KEY_EMPTY', message: 'key must not be empty', path };
  if (overBytes(key, l.maxKeyBytes)) {
    return { code: 'KEY_TOO_LONG', message: `key must be at most ${l.maxKeyBytes} bytes (UTF-8)`, path };
  }
  if (CONTROL_CHARS.test(key)) {
    return { code: 'KEY_INVALID', message: 'key must not contain control characters or lone surrogates', path };
  }
  return null;
}

/** Byte limits of metadata names and values (the schema has already checked shape and count). */
export function checkMetadataBytes(md: Record<string, string>, l: InputLimits, path: string): InputProblem | null {
  for (const name in md) {
    if (overBytes(name, l.maxMetadataNameBytes)) {
      return { code: 'METADATA_INVALID', message: `metadata names must be at most ${l.maxMetadataNameBytes} bytes`, path };
    }
    const v = md[name];
    if (overBytes(v, l.maxMetadataValueBytes)) {
      return {
        code: 'METADATA_INVALID',
        message: `metadata values must be at most ${l.maxMetadataValueBytes} bytes`,
        path: `${path}/${name}`,
      };
    }
  }
  return null;
}

const POSITIVE_INT = /^[1-9][0-9]{0,15}$/;

/** Parses a cost from a query string value. Returns the cost or a problem. */
export function parseQueryCost(raw: unknown, l: InputLimits): number | InputProblem {
  if (raw === undefined) return 1;
  const n = typeof raw === 'string' && POSITIVE_INT.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= l.maxCost)) {
    return { code: 'COST_INVALID', message: `cost must be an integer between 1 and ${l.maxCost}`, path: '/cost' };
  }
  return n;
}
