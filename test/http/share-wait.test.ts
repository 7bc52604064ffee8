/**
 * A check answered SHARE_WAIT is decided again as the peers' counts arrive (src/http/share-wait.ts):
 * each progress pulse re-decides, the wait ends with the first other answer, and after
 * maxWaitMs the SHARE_WAIT itself is answered.
 */
import { describe, expect, it } from 'vitest';
import { Pulse } from '../../src/engine/pulse.ts';
import type { Decision } from '../../src/engine/types.ts';
import { settleShareWait } from '../../src/http/share-wait.ts';

const wait: Decision = { allowed: false, limit: 10, remaining: 1, resetMs: 0, retryAfterMs: 10_000, ruleId: 'r', policy: 'r', code: 'SHARE_WAIT' };
const ok: Decision = { allowed: true, limit: 10, remaining: 0, resetMs: 1000, retryAfterMs: 0, ruleId: 'r', policy: 'r' };

describe('settleShareWait', () => {
  it('answers anything but SHARE_WAIT at once, without deciding again', async () => {
    let calls = 0;
    expect(await settleShareWait(ok, () => (calls++, ok), { progress: () => new Pulse().next(), maxWaitMs: 1000 })).toBe(ok);
    expect(calls).toBe(0);
  });

  it('decides again at each progress pulse and answers the first decision that is not a SHARE_WAIT', async () => {
    const pulse = new Pulse();
    const answers = [wait, wait, ok];
    let calls = 0;
    const settling = settleShareWait(wait, () => answers[calls++]!, { progress: () => pulse.next(), maxWaitMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setImmediate(r));
      pulse.fire();
    }
    expect(await settling).toBe(ok);
    expect(calls).toBe(3);
  });

  it('answers SHARE_WAIT when the peers stay silent for maxWaitMs', async () => {
    const start = performance.now();
    const d = await settleShareWait(wait, () => wait, { progress: () => new Pulse().next(), maxWaitMs: 30 });
    expect(d.code).toBe('SHARE_WAIT');
    expect(performance.now() - start).toBeGreaterThanOrEqual(29);
  });
});
