/**
 * The rules admin API (every route needs the admin token):
 *
 *   GET    /v1/rules        -> 200 {version, rules: <the rules document>}, ETag: "<version>"
 *   PUT    /v1/rules        whole document (JSON, or YAML with content-type application/yaml) -> 200 {version}
 *   PUT    /v1/rules/:id    one rule (replaced, or added at the end)                          -> 200 {version}
 *   DELETE /v1/rules/:id    -> 200 {version}; 404 RULE_NOT_FOUND
 *
 * A change may carry `If-Match: <version>` (412 RULES_VERSION_STALE when the rules changed
 * since). It is validated as a whole: 400 RULES_INVALID with every problem, rules unchanged.
 * The routes live in their own fastify context so that the YAML body parser serves them only.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { ConfigError, LimiterError } from '../engine/errors.ts';
import { parseDocument } from '../rules/document.ts';
import { rulesInvalid, type ChangeSource } from '../rules/register.ts';

/** What the routes need of the rules register (src/rules/register.ts). */
export interface RulesApi {
  current(): { version: string; document: unknown };
  change(mutate: (doc: unknown) => unknown, opts: { ifMatch?: string; source: ChangeSource }): Promise<{ version: string }>;
}

export interface RulesRoutesOptions {
  rules: RulesApi;
  /** The admin token check (src/http/admin-auth.ts). */
  guard: onRequestHookHandler;
  /** Largest rules body, bytes. Default 2 MiB. */
  bodyLimit?: number;
}

const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];

/** The body as received: text, parsed in the handler so that a bad one is RULES_INVALID with its problem. */
interface RawBody {
  text: string;
  yaml: boolean;
}

export function registerRulesRoutes(app: FastifyInstance, o: RulesRoutesOptions): void {
  const bodyLimit = o.bodyLimit ?? 2 * 1024 * 1024;
  void app.register(async (scope) => {
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_req, body, done) => done(null, { text: body as string, yaml: false } satisfies RawBody));
    scope.addContentTypeParser(YAML_TYPES, { parseAs: 'string', bodyLimit }, (_req, body, done) => done(null, { text: body as string, yaml: true } satisfies RawBody));
    const opts = { onRequest: o.guard, bodyLimit };

    scope.get('/v1/rules', { onRequest: o.guard, exposeHeadRoute: false }, (_req, reply) => {
      const { version, document } = o.rules.current();
      return reply.header('etag', etag(version)).send({ version, rules: document });
    });

    scope.put('/v1/rules', opts, async (req, reply) => {
      const doc = bodyOf(req, 'PUT /v1/rules');
      return answer(reply, await o.rules.change(() => doc, { ifMatch: ifMatch(req), source: 'PUT /v1/rules' }));
    });

    scope.put('/v1/rules/:id', opts, async (req, reply) => {
      const id = (req.params as { id: string }).id;
      const rule = bodyOf(req, 'PUT /v1/rules/:id');
      const mutate = (doc: unknown) => {
        const rules = rulesOf(doc);
        if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) {
          throw rulesInvalid([{ code: 'RULE_INVALID', file: 'PUT /v1/rules/:id', path: '', message: 'the body must be one rule (an object)' }]);
        }
        const r = rule as Record<string, unknown>;
        if (r.id === undefined) r.id = id;
        else if (r.id !== id) throw rulesInvalid([{ code: 'RULE_INVALID', file: 'PUT /v1/rules/:id', path: '/id', message: `the rule's id "${String(r.id)}" is not the id in the URL ("${id}")` }]);
        const at = rules.findIndex((x) => (x as { id?: unknown } | null)?.id === id);
        if (at === -1) rules.push(r);
        else rules[at] = r;
        return doc;
      };
      return answer(reply, await o.rules.change(mutate, { ifMatch: ifMatch(req), source: 'PUT /v1/rules/:id' }));
    });

    scope.delete('/v1/rules/:id', { onRequest: o.guard }, async (req, reply) => {
      const id = (req.params as { id: string }).id;
      const mutate = (doc: unknown) => {
        const rules = rulesOf(doc);
        const at = rules.findIndex((x) => (x as { id?: unknown } | null)?.id === id);
        if (at === -1) throw new LimiterError('RULE_NOT_FOUND', `no rule "${id}" in the rules in force`);
        rules.splice(at, 1);
        return doc;
      };
      return answer(reply, await o.rules.change(mutate, { ifMatch: ifMatch(req), source: 'DELETE /v1/rules/:id' }));
    });
  });
}

function etag(version: string): string {
  return `"${version}"`;
}

function answer(reply: FastifyReply, r: { version: string }): FastifyReply {
  return reply.header('etag', etag(r.version)).send({ version: r.version });
}

function ifMatch(req: FastifyRequest): string | undefined {
  const h = req.headers['if-match'];
  return typeof h === 'string' && h.trim() !== '' ? h : undefined;
}

/** The parsed body; a body that is not JSON (or YAML) is RULES_INVALID. */
function bodyOf(req: FastifyRequest, source: string): unknown {
  const raw = req.body as RawBody | undefined;
  if (raw === undefined || raw.text.trim() === '') {
    throw rulesInvalid([{ code: 'RULE_INVALID', file: source, path: '', message: 'the body is empty' }]);
  }
  try {
    if (raw.yaml) return parseDocument(raw.text, source);
    return JSON.parse(raw.text);
  } catch (err) {
    const message = err instanceof ConfigError ? err.problems[0].message : `not valid JSON: ${(err as Error).message}`;
    throw rulesInvalid([{ code: 'CONFIG_UNREADABLE', file: source, path: '', message }]);
  }
}

/** The `rules` list of the document in force (always there: the document was validated). */
function rulesOf(doc: unknown): unknown[] {
  const rules = (doc as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rules)) throw rulesInvalid([{ code: 'RULE_INVALID', file: 'rules in force', path: '/rules', message: 'the rules in force have no rules list' }]);
  return rules;
}
