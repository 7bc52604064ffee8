/**
 * The rules admin API from outside a node, for the tests, the bench and scripts: read and
 * change the rules, and measure how long a change takes to be in force on every node (a change
 * made on one node, then every node polled until it answers the new version: a node installs a
 * version in the engine before it reports it).
 */
import { sleep } from './wait.ts';

export interface RulesReply {
  status: number;
  body: { version?: string; rules?: unknown; error?: string; problems?: { code: string; path: string; message: string }[] };
}

async function call(url: string, method: string, token: string, body?: unknown, headers: Record<string, string> = {}): Promise<RulesReply> {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${token}`, ...headers }, signal: AbortSignal.timeout(5000) };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${url}/v1/rules`, init);
  return { status: res.status, body: (await res.json()) as RulesReply['body'] };
}

/** GET /v1/rules. */
export function getRules(url: string, token: string): Promise<RulesReply> {
  return call(url, 'GET', token);
}

/** PUT /v1/rules with a whole document (an object: JSON; a string: sent with `headers`' content type). */
export function putRules(url: string, token: string, doc: unknown, headers: Record<string, string> = {}): Promise<RulesReply> {
  return call(url, 'PUT', token, doc, headers);
}

/** Poll every node until each answers `version`; resolves with the ms each took (from `since`). */
export async function waitForVersion(urls: readonly string[], token: string, version: string, since = performance.now(), timeoutMs = 20_000): Promise<number[]> {
  return Promise.all(
    urls.map(async (url) => {
      for (;;) {
        const r = await getRules(url, token).catch(() => undefined);
        if (r?.body.version === version) return performance.now() - since;
        if (performance.now() - since > timeoutMs) throw new Error(`${url} did not reach rules version ${version} within ${timeoutMs} ms (it has ${r?.body.version ?? 'no answer'})`);
        await sleep(2);
      }
    }),
  );
}

/**
 * `rounds` changes, each made on the next node in turn (`doc(i)` is the i-th document): per
 * round, the time until every node had it in force (ms).
 */
export async function measurePropagation(urls: readonly string[], token: string, rounds: number, doc: (i: number) => unknown): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const put = await putRules(urls[i % urls.length], token, doc(i));
    if (put.status !== 200 || put.body.version === undefined) throw new Error(`PUT /v1/rules: HTTP ${put.status} ${JSON.stringify(put.body)}`);
    const each = await waitForVersion(urls, token, put.body.version, t0);
    out.push(Math.max(...each));
  }
  return out;
}
