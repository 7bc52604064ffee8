/**
 * The one place where errors become HTTP responses: a code -> status map covering every code in
 * ERROR_CODES, the translation of fastify / ajv errors into those codes, and the handlers
 * (error, not-found, framework) that send `{ error, message, path? }`.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, LimiterError, type ErrorCode } from '../engine/errors.ts';

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
}

export interface HttpErrorResponse {
  status: number;
  body: ErrorBody;
}

/** Builds a LimiterError carrying the offending path; thrown by handlers, sent by the error handler. */
export function inputError(code: ErrorCode, message: string, path?: string): LimiterError {
  return new LimiterError(code, message, path !== undefined ? { details: { path } } : undefined);
}

/** One ajv error, as fastify attaches it to `error.validation`. */
interface AjvErrorLike {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** The field an ajv error is about: the last non-index segment of its path. */
function fieldOf(segments: readonly string[]): { field: string | undefined; depth: number } {
  for (let i = segments.length - 1; i >= 0; i--) {
    if (!/^\d+$/.test(segments[i])) return { field: segments[i], depth: i };
  }
  return { field: undefined, depth: -1 };
}

const unescapePointer = (s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~');
const escapePointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** Translates the first ajv error of a request into a code, message and path. */
export function fromValidation(errors: readonly AjvErrorLike[], context: string | undefined): ErrorBody {
  const e = errors[0];
  if (!e) return { error: 'INVALID_BODY', message: 'The request does not match the schema.' };
  const where = context ?? 'body';
  const base = e.instancePath;
  const segments = base === '' ? [] : base.slice(1).split('/').map(unescapePointer);

  if (e.keyword === 'additionalProperties') {
    const name = String(e.params.additionalProperty);
    return { error: 'UNKNOWN_FIELD', message: `unknown field "${name}"`, path: `${base}/${escapePointer(name)}` };
  }
  if (e.keyword === 'required') {
    const name = String(e.params.missingProperty);
    const path = `${base}/${escapePointer(name)}`;
    if (name === 'key') return { error: 'KEY_MISSING', message: 'key is required', path };
    if (name === 'cost') return { error: 'COST_INVALID', message: 'cost is required', path };
    if (name === 'checks') return { error: 'BATCH_INVALID', message: 'checks is required', path };
    if (name === 'admissionId') return { error: 'ADMISSION_ID_MISSING', message: 'admissionId is required: the id a check answered', path };
    return { error: 'INVALID_BODY', message: `${name} is required`, path };
  }

  // Metadata: the error may be on the object itself or on one of its values.
  const mdIndex = segments.lastIndexOf('metadata');
  if (mdIndex >= 0 && (mdIndex === segments.length - 1 || mdIndex === segments.length - 2)) {
    if (e.keyword === 'maxProperties') {
      return { error: 'METADATA_TOO_MANY', message: `metadata must have at most ${String(e.params.limit)} entries`, path: base };
    }
    if (e.keyword === 'propertyNames') {
      const name = String(e.params.propertyName ?? '');
      return { error: 'METADATA_INVALID', message: `metadata name "${name}" is empty or too long`, path: base };
    }
    if (mdIndex === segments.length - 2 && e.keyword === 'maxLength') {
      return { error: 'METADATA_INVALID', message: `metadata values must be at most ${String(e.params.limit)} bytes`, path: base };
    }
    const message = mdIndex === segments.length - 1 ? 'metadata must be an object of string values' : 'metadata values must be strings';
    return { error: 'METADATA_INVALID', message, path: base };
  }

  const { field, depth } = fieldOf(segments);
  const atLeaf = depth === segments.length - 1;
  if (field === 'key' && atLeaf) {
    if (e.keyword === 'minLength') return { error: 'KEY_EMPTY', message: 'key must not be empty', path: base };
    if (e.keyword === 'maxLength') {
      return { error: 'KEY_TOO_LONG', message: `key must be at most ${String(e.params.limit)} bytes (UTF-8)`, path: base };
    }
    return { error: 'KEY_INVALID', message: 'key must be a string', path: base };
  }
  if (field === 'cost' && atLeaf) {
    return { error: 'COST_INVALID', message: `cost ${e.message ?? 'must be a positive integer'}`, path: base };
  }
  if (field === 'admissionId' && atLeaf) {
    return { error: 'ADMISSION_ID_INVALID', message: `admissionId ${e.message ?? 'is invalid'}`, path: base };
  }
  if (field === 'requestId' && atLeaf) {
    return { error: 'REQUEST_ID_INVALID', message: `requestId ${e.message ?? 'is invalid'}`, path: base };
  }
  if (field === 'checks' && atLeaf) {
    return { error: 'BATCH_INVALID', message: `checks ${e.message ?? 'is invalid'}`, path: base };
  }
  return {
    error: 'INVALID_BODY',
    message: `${where}${base ? ' at ' + base : ''} ${e.message ?? 'does not match the schema'}`,
    path: base || undefined,
  };
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
  if (err instanceof LimiterError) {
    const path = err.details?.path;
    const body: ErrorBody = { error: err.code, message: err.message };
    if (typeof path === 'string') body.path = path;
    return { status: HTTP_STATUS[err.code], body };
  }
  const fe = err as Partial<FastifyError> & { validationContext?: string };
  if (fe && Array.isArray(fe.validation)) {
    const body = fromValidation(fe.validation as unknown as AjvErrorLike[], fe.validationContext);
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
