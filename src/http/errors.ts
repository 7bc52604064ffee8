/**
 * The one place where errors become HTTP responses: a code -> status map covering every code in
 * ERROR_CODES, the translation of fastify / ajv errors into those codes, and the handlers
 * (error, not-found, framework) that send `{ error, message, path?, problems? }`.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorObject } from 'ajv';
import { ConfigError, ERROR_CODES, LimiterError, type ErrorCode, type Problem } from '../engine/errors.ts';
import { problemsFromAjv } from '../engine/validation.ts';

/** HTTP status of every error code. `Record<ErrorCode, …>` makes tsc fail when a code is missing. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = Object.freeze({
  INVALID_JSON: 400,
  INVALID_BODY: 400,
  UNKNOWN_FIELD: 400,
  KEY_MISSING: 400,
  KEY_EMPTY: 400,
  KEY_TOO_LONG: 400,
  KEY_INVALID: 400,
  COST_INVALID: 400,
  METADATA_INVALID: 400,
  METADATA_TOO_MANY: 400,
  BATCH_INVALID: 400,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INVALID_UTF8: 400,
  ADMISSION_ID_MISSING: 400,
  ADMISSION_ID_INVALID: 400,
  ADMISSION_UNKNOWN: 404,
  ADMISSION_EXPIRED: 410,
  ADMISSION_ALREADY_REFUNDED: 409,
  ADMISSION_OTHER_NODE: 421,
  RULE_KEY_CAP: 429,
  PRIORITY_RESERVED: 429,
  DEGRADED_SHARE: 429,
  SHARE_WAIT: 429,
  DEGRADED_CLOSED: 429,
  API_UNAUTHORIZED: 401,
  ADMIN_UNAUTHORIZED: 401,
  ADMIN_DISABLED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFIG_INVALID: 400,
  CONFIG_UNREADABLE: 400,
  RULE_DUPLICATE_ID: 400,
  RULE_INVALID_WINDOW: 400,
  RULE_INVALID: 400,
  TOPOLOGY_INVALID: 400,
  FIELD_MISSING: 400,
  TYPE_MISMATCH: 400,
  VALUE_NOT_ALLOWED: 400,
  OUT_OF_RANGE: 400,
  PATTERN_MISMATCH: 400,
  VALUE_INVALID: 400,
  RULES_INVALID: 400,
  RULES_TOO_LARGE: 413,
  RULES_VERSION_STALE: 412,
  RULE_NOT_FOUND: 404,
  RULE_INVALID_PATTERN: 400,
  RULE_UNKNOWN_PARENT: 400,
  RULE_UNKNOWN_TIER: 400,
  RULE_CYCLE: 400,
  CODEC_MALFORMED: 400,
  CODEC_UNSUPPORTED_VERSION: 400,
  CODEC_LIMIT_EXCEEDED: 400,
  CODEC_INVALID_FIELD: 400,
  REPLICATION_UNAVAILABLE: 503,
  REPLICATION_CONFLICT: 500,
  REPLICATION_USAGE: 500,
  REPLICATION_UNAUTHORIZED: 503,
  REPLICATION_NOT_PROVISIONED: 503,
  REPLICATION_FORGED: 400,
  REPLICATION_BATCH_TOO_LARGE: 400,
  REPLICATION_TOO_MANY_PEERS: 400,
  REPLICATION_RULES_INVALID: 400,
  STORAGE_FAILURE: 503,
  STORAGE_UNAVAILABLE: 503,
  STORAGE_CORRUPT: 503,
  STORAGE_LOST: 503,
  STORAGE_INCOMPATIBLE: 500,
  NOT_READY: 503,
  INTERNAL: 500,
  REQUEST_ID_INVALID: 400,
  LIMITER_CLOSED: 503,
  LIMITER_UNREACHABLE: 502,
  LIMITER_TIMEOUT: 504,
  LIMITER_BAD_RESPONSE: 502,
});

/** Body of every error response. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
  /** JSON pointer of the offending field, e.g. "/checks/3/key". */
  path?: string;
  /** Every problem found (a refused body or document), in the one problem shape; the first is `error`/`path`. */
  problems?: Problem[];
}

export interface HttpErrorResponse {
  status: number;
  body: ErrorBody;
}

/** Builds a LimiterError carrying the offending path; thrown by handlers, sent by the error handler. */
export function inputError(code: ErrorCode, message: string, path?: string): LimiterError {
  return new LimiterError(code, message, path !== undefined ? { details: { path } } : undefined);
}

const unescapePointer = (s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~');

/**
 * The request code of one schema error: the API's field codes (KEY_EMPTY, COST_INVALID, …)
 * where the field has one, INVALID_BODY for a body or batch entry of the wrong shape, else the
 * code of its kind (UNKNOWN_FIELD, FIELD_MISSING, …).
 */
function requestCode(kind: ErrorCode, e: ErrorObject): ErrorCode {
  const segments = e.instancePath === '' ? [] : e.instancePath.slice(1).split('/').map(unescapePointer);
  if (e.keyword === 'additionalProperties') return 'UNKNOWN_FIELD';
  if (e.keyword === 'required') {
    const name = String((e.params as { missingProperty?: unknown }).missingProperty);
    return REQUIRED_CODES[name] ?? kind;
  }
  // Metadata: the error may be on the object itself or on one of its values.
  const md = segments.lastIndexOf('metadata');
  if (md >= 0 && md >= segments.length - 2) return md === segments.length - 1 && e.keyword === 'maxProperties' ? 'METADATA_TOO_MANY' : 'METADATA_INVALID';
  const field = segments[segments.length - 1];
  if (field === 'key') return e.keyword === 'minLength' ? 'KEY_EMPTY' : e.keyword === 'maxLength' ? 'KEY_TOO_LONG' : 'KEY_INVALID';
  if (field !== undefined && FIELD_CODES[field] !== undefined) return FIELD_CODES[field];
  return e.keyword === 'type' ? 'INVALID_BODY' : kind;
}

/** Most problems one error body lists. */
export const MAX_PROBLEMS = 100;

const REQUIRED_CODES: Readonly<Record<string, ErrorCode>> = { key: 'KEY_MISSING', cost: 'COST_INVALID', checks: 'BATCH_INVALID', admissionId: 'ADMISSION_ID_MISSING' };
const FIELD_CODES: Readonly<Record<string, ErrorCode>> = { cost: 'COST_INVALID', admissionId: 'ADMISSION_ID_INVALID', requestId: 'REQUEST_ID_INVALID', checks: 'BATCH_INVALID' };

/**
 * Translates the schema errors of a request (src/engine/validation.ts, with the request codes)
 * into an error body: the first problem as `{error, message, path}`, and every problem.
 */
export function fromValidation(errors: readonly ErrorObject[], context: string | undefined): ErrorBody {
  const problems = problemsFromAjv(errors, { code: requestCode });
  // Keys and metadata are bounded in UTF-8 bytes; their schemas' maxLength is that bound in code points.
  for (const p of problems) {
    if (p.code === 'KEY_TOO_LONG' || p.code === 'METADATA_INVALID') p.message = p.message.replace(/^must have at most (\d+) characters$/, 'must be at most $1 bytes (UTF-8)');
  }
  const first = problems[0];
  if (!first) return { error: 'INVALID_BODY', message: 'The request does not match the schema.' };
  // A batch of bad entries could list thousands; the first ones say what is wrong.
  const body: ErrorBody = { error: first.code, message: labelled(first, context ?? 'body'), problems: problems.slice(0, MAX_PROBLEMS) };
  if (first.path !== '') body.path = first.path;
  return body;
}

/** "must …" messages name their field: "cost must be at least 1, got 0". */
function labelled(p: Problem, where: string): string {
  if (!/^(must|matches|has) /.test(p.message)) return p.message;
  const last = p.path.slice(p.path.lastIndexOf('/') + 1);
  const label = p.path === '' ? where : /^\d+$/.test(last) ? `${where} at ${p.path}` : unescapePointer(last);
  return `${label} ${p.message}`;
}

/** Fastify's own error codes, translated. */
const FASTIFY_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_BODY',
  FST_ERR_BAD_URL: 'NOT_FOUND',
  FST_ERR_NOT_FOUND: 'NOT_FOUND',
};

/** Any error -> status + body. Unknown errors become 500 INTERNAL without leaking their message. */
export function toHttpError(err: unknown): HttpErrorResponse {
  if (err instanceof ConfigError) {
    // The problems, without the file they were found in (a server path is no client's business).
    const problems = err.problems.map((p) => ({ code: p.code, path: p.path, message: p.message }));
    return { status: HTTP_STATUS[err.code], body: { error: err.code, message: ERROR_CODES[err.code], problems } };
  }
  if (err instanceof LimiterError) {
    const path = err.details?.path;
    const body: ErrorBody = { error: err.code, message: err.message };
    if (typeof path === 'string') {
      body.path = path;
      body.problems = [{ code: err.code, path, message: err.message }];
    }
    if (typeof path === 'string') body.path = path;
    const problems = err.details?.problems;
    if (Array.isArray(problems)) body.problems = problems as ErrorBody['problems'];
    return { status: HTTP_STATUS[err.code], body };
  }
  const fe = err as Partial<FastifyError> & { validationContext?: string };
  if (fe && Array.isArray(fe.validation)) {
    const body = fromValidation(fe.validation as unknown as ErrorObject[], fe.validationContext);
    return { status: HTTP_STATUS[body.error], body };
  }
  const mapped = fe && typeof fe.code === 'string' ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return { status: HTTP_STATUS[mapped], body: { error: mapped, message: ERROR_CODES[mapped] } };
  // JSON syntax errors thrown by the body parser (secure-json-parse) carry statusCode 400.
  if (err instanceof SyntaxError && (fe.statusCode === 400 || fe.statusCode === undefined)) {
    return { status: 400, body: { error: 'INVALID_JSON', message: ERROR_CODES.INVALID_JSON } };
  }
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    if (fe.statusCode === 413) return { status: 413, body: { error: 'BODY_TOO_LARGE', message: ERROR_CODES.BODY_TOO_LARGE } };
    if (fe.statusCode === 415) {
      return { status: 415, body: { error: 'UNSUPPORTED_MEDIA_TYPE', message: ERROR_CODES.UNSUPPORTED_MEDIA_TYPE } };
    }
    return { status: 400, body: { error: 'INVALID_BODY', message: ERROR_CODES.INVALID_BODY } };
  }
  return { status: 500, body: { error: 'INTERNAL', message: ERROR_CODES.INTERNAL } };
}

/** fastify error handler: every error response of the app goes through here. */
export function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toHttpError(err);
  if (status >= 500) request.log.error({ err }, 'request failed');
  void reply.code(status).type('application/json; charset=utf-8').send(body);
}

/**
 * Not-found handler. `allowedMethods(path)` lists the methods of a known path, so a known path
 * with the wrong method answers 405 (with Allow) instead of 404.
 */
export function makeNotFoundHandler(allowedMethods: (path: string) => readonly string[] | undefined) {
  return function notFound(request: FastifyRequest, reply: FastifyReply): void {
    const q = request.url.indexOf('?');
    const path = q === -1 ? request.url : request.url.slice(0, q);
    const methods = allowedMethods(path);
    if (methods && methods.length > 0) {
      void reply
        .code(HTTP_STATUS.METHOD_NOT_ALLOWED)
        .header('allow', methods.join(', '))
        .send({ error: 'METHOD_NOT_ALLOWED', message: `${request.method} is not allowed on ${path}` } satisfies ErrorBody);
      return;
    }
    void reply
      .code(HTTP_STATUS.NOT_FOUND)
      .send({ error: 'NOT_FOUND', message: `no route ${request.method} ${path}` } satisfies ErrorBody);
  };
}

/** fastify `frameworkErrors` option (bad URL, too-long params, …): same shape as other errors. */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toHttpError(err);
  void reply.code(status).send(body);
}
