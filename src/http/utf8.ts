/**
 * Strict UTF-8 for every request: a JSON body or a query string whose bytes are not valid UTF-8
 * (overlong forms, lone continuation bytes, encoded surrogates, truncated sequences) is refused
 * with 400 INVALID_UTF8 instead of being decoded with replacement characters, which would let
 * two different byte strings name the same key.
 */
import { isUtf8 } from 'node:buffer';
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { inputError } from './errors.ts';

const fatal = new TextDecoder('utf-8', { fatal: true });

/** Set on a parsed query object whose bytes were not valid UTF-8 (symbols are skipped by for-in). */
export const INVALID_QUERY: unique symbol = Symbol('invalid UTF-8 query');

export type ParsedQuery = Record<string, string | string[]> & { [INVALID_QUERY]?: true };

const HEX = /^[0-9A-Fa-f]{2}$/;

/**
 * Decodes one `application/x-www-form-urlencoded` component (`+` is a space, `%XX` a byte) and
 * checks the bytes are UTF-8. Characters U+0080–U+00FF stand for raw bytes (Node reads the
 * request line as latin1); anything above is encoded as UTF-8. Undefined when invalid.
 */
function decodeComponent(s: string): string | undefined {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 || c === 0x2b || c > 0x7e) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && HEX.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === 0x2b) bytes.push(0x20);
    else if (c <= 0xff) bytes.push(c);
    else {
      const cp = s.codePointAt(i)!;
      if (cp >= 0xd800 && cp <= 0xdfff) return undefined; // a lone surrogate has no UTF-8 form
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) bytes.push(b);
      if (cp > 0xffff) i++;
    }
  }
  try {
    return fatal.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

/** fastify querystringParser: like the default (repeats become arrays), strict about UTF-8. */
export function parseQueryStrict(qs: string): ParsedQuery {
  const out = Object.create(null) as ParsedQuery;
  if (qs.length === 0) return out;
  for (const part of qs.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decodeComponent(eq === -1 ? part : part.slice(0, eq));
    const value = decodeComponent(eq === -1 ? '' : part.slice(eq + 1));
    if (name === undefined || value === undefined) {
      out[INVALID_QUERY] = true;
      continue;
    }
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}

/** Refuses a request whose query string was not valid UTF-8. */
function refuseInvalidQuery(req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const q = req.query as ParsedQuery | undefined;
  if (q !== undefined && q !== null && q[INVALID_QUERY] === true) return done(inputError('INVALID_UTF8', 'the query string is not valid UTF-8'));
  done();
}

/**
 * Installs the strict JSON body parser (the bytes are checked with Node's native UTF-8
 * validator, then decoded and parsed by fastify's own JSON parser, which refuses `__proto__` /
 * `constructor.prototype`) and, on every route that reads a query string (GET and HEAD), the
 * hook that refuses an invalid one. A body route ignores its query string, and a hook costs
 * every request that passes it, so the check routes carry none.
 */
export function installStrictUtf8(app: FastifyInstance): void {
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req: FastifyRequest, body: Buffer | string, done) => {
    if (typeof body !== 'string' && !isUtf8(body)) {
      done(inputError('INVALID_UTF8', 'the request body is not valid UTF-8'), undefined);
      return;
    }
    json(req, typeof body === 'string' ? body : body.toString('utf8'), done);
  });
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((m) => m === 'GET' || m === 'HEAD')) return;
    const own = route.onRequest;
    route.onRequest = own === undefined ? [refuseInvalidQuery] : [refuseInvalidQuery, ...(Array.isArray(own) ? own : [own])];
  });
}
