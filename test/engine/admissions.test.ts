/**
 * The admission ledger with an injected clock: ids name the node, are refunded once, expire
 * with their window, and memory stays bounded.
 */
import { describe, expect, it } from 'vitest';
import { AdmissionLedger } from '../../src/engine/admissions.ts';
import { LimiterError } from '../../src/engine/errors.ts';

const T0 = 1_900_000_000_000;
let n = 0;
const ledger = (maxEntries?: number) => new AdmissionLedger({ nodeId: 'node-a', maxEntries, random: () => ++n });
const a = { ruleId: 'r', key: 'k', at: T0, cost: 2 };

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LimiterError);
    expect((err as LimiterError).details).toEqual({ path: '/admissionId' });
    return (err as LimiterError).code;
  }
  throw new Error('expected a refusal');
}

describe('AdmissionLedger', () => {
  it('issues ids that name the node and give back exactly the admission, once', () => {
    const l = ledger();
    const id = l.issue(a, 60_000, T0);
    expect(id.startsWith('node-a.')).toBe(true);
    expect(l.take(id, T0 + 1)).toEqual(a);
    expect(refusal(() => l.take(id, T0 + 2))).toBe('ADMISSION_ALREADY_REFUNDED');
  });

  it('refuses unknown, malformed, other nodes\' and expired ids with distinct codes', () => {
    const l = ledger();
    const id = l.issue(a, 60_000, T0);
    const [, exp] = id.split('.');
    expect(refusal(() => l.take(`node-a.${exp}.forged`, T0))).toBe('ADMISSION_UNKNOWN');
    // The right slot with either token word changed names nothing.
    const [slot, hi, lo] = id.split('.')[2]!.split('-');
    const other = (w: string) => (parseInt(w, 36) + 1).toString(36);
    for (const forged of [`${slot}-${other(hi!)}-${lo}`, `${slot}-${hi}-${other(lo!)}`, `${slot}-${hi}`]) {
      expect(refusal(() => l.take(`node-a.${exp}.${forged}`, T0)), forged).toBe('ADMISSION_UNKNOWN');
    }
    expect(refusal(() => l.take(`node-b.${exp}.t1`, T0))).toBe('ADMISSION_OTHER_NODE');
    for (const bad of ['', 'x', 'node-a..t', 'node-a.!!.t', `node-a.${exp}.`, `a.b.c.d`, 'x'.repeat(200)]) {
      expect(refusal(() => l.take(bad, T0)), bad).toBe('ADMISSION_ID_INVALID');
    }
    expect(refusal(() => l.take(id, T0 + 60_000))).toBe('ADMISSION_EXPIRED');
  });

  it('forgets ids when their window has passed, per window length', () => {
    const l = ledger();
    l.issue(a, 1_000, T0);
    l.issue(a, 60_000, T0);
    l.issue(a, 1_000, T0 + 500);
    expect(l.size).toBe(3);
    l.expire(T0 + 1_000);
    expect(l.size).toBe(2);
    l.expire(T0 + 1_500);
    expect(l.size).toBe(1);
    l.expire(T0 + 60_000);
    expect(l.size).toBe(0);
  });

  it('holds at most maxEntries ids, forgetting the one that expires first', () => {
    const l = ledger(3);
    const long = l.issue(a, 3_600_000, T0);
    const short = l.issue(a, 1_000, T0);
    const mid = l.issue(a, 60_000, T0);
    const next = l.issue(a, 60_000, T0 + 1);
    expect(l.size).toBe(3);
    expect(l.forgottenEarly).toBe(1);
    expect(refusal(() => l.take(short, T0 + 2))).toBe('ADMISSION_UNKNOWN');
    for (const id of [long, mid, next]) expect(l.take(id, T0 + 2)).toEqual(a);
    for (let i = 0; i < 10_000; i++) l.issue(a, 60_000, T0 + 2);
    expect(l.size).toBe(3);
  });
});
