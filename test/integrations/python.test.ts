/**
 * examples/python/regionlimit.py (standard library only) run by python3 against a live node:
 * check, check_many, refund, usage, the decorator, the node's error codes, and
 * LIMITER_UNREACHABLE; and the README's example file run as it is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDebianPackage } from '../../support/debian.ts';
import { freePorts } from '../../support/ports.ts';
import { exampleInReadme, run } from '../helpers/examples.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';

let node: TestNode;
const env = () => ({ PYTHONPATH: 'examples/python', LIMITER_URL: node.url, PYTHONDONTWRITEBYTECODE: '1' });

beforeAll(async () => {
  ensureDebianPackage('python3', 'python3');
  node = await startTestNode({
    rules: [
      { id: 'few', key: 'few:*', limits: [{ limit: 2, window: '1m' }] },
      { id: 'user', key: 'user:*', limits: [{ limit: 3, window: '1m' }] },
    ],
  });
});
afterAll(() => node.close());

const SCRIPT = `
import json, os
from regionlimit import Client, RegionlimitError, limit
c = Client(os.environ["LIMITER_URL"])
out = {}
ds = [c.check("few:py") for _ in range(3)]
out["allowed"] = [d.allowed for d in ds]
out["denied_retry"] = ds[2].retry_after_ms
out["refund"] = c.refund(ds[0].admission_id)
try:
    c.refund(ds[0].admission_id)
except RegionlimitError as e:
    out["refund_again"] = [e.code, e.status]
try:
    c.check("")
except RegionlimitError as e:
    out["empty_key"] = [e.code, e.status, e.path]
out["many"] = [d.allowed for d in c.check_many(["few:m", {"key": "few:m", "cost": 2}])]
out["usage"] = c.usage("few:py")["limits"][0]["usage"]
@limit(c, key=lambda: "few:view")
def view():
    return "ok"
out["view"] = [view(), view(), list(view())[1]]
try:
    Client("http://127.0.0.1:" + os.environ["CLOSED_PORT"]).check("k")
except RegionlimitError as e:
    out["down"] = e.code
print(json.dumps(out))
`;

describe('Python client', () => {
  it('checks, batches, refunds and reports the node error codes', async () => {
    const [closed] = await freePorts(1);
    const r = await run('python3', ['-c', SCRIPT], { ...env(), CLOSED_PORT: String(closed) });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.allowed).toEqual([true, true, false]);
    expect(out.denied_retry).toBeGreaterThan(0);
    expect(out.refund).toEqual({ ruleId: 'few', refunded: 1 });
    expect(out.refund_again).toEqual(['ADMISSION_ALREADY_REFUNDED', 409]);
    expect(out.empty_key).toEqual(['KEY_EMPTY', 400, '/key']);
    expect(out.many).toEqual([true, false]);
    expect(out.usage).toBe(1);
    expect(out.view).toEqual(['ok', 'ok', 429]);
    expect(out.down).toBe('LIMITER_UNREACHABLE');
  });

  it('examples/python/example.py is shown verbatim in the README and runs', async () => {
    expect(exampleInReadme('examples/python/example.py').shown).toBe(true);
    const r = await run('python3', ['examples/python/example.py'], env());
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['allowed 2', '[True, True]', 'hello 7']);
    expect(await node.usage('user:42')).toBe(0); // refunded
  });
});
