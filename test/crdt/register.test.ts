/**
 * The rules register (crdt/register.ts): merge is commutative, associative and idempotent, any
 * delivery order converges, the hybrid clock never goes back; and the rules message codec
 * (crdt/codec.ts kind 2): round trips, and hostile input refused with CodecError only.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  CODEC_LIMITS,
  CodecError,
  RULES_KIND,
  compareStates,
  decodeMessage,
  encodeRules,
  formatVersion,
  mergeRegister,
  nextVersion,
  parseVersion,
  type RegisterState,
  type RulesMessage,
} from '../../crdt/index.ts';
import { check } from '../helpers/fc.ts';

const node = fc.constantFrom('us-east-1', 'eu-west-1', 'ap-south-1', 'a', 'b');
const version = fc.record({ ts: fc.integer({ min: 0, max: 2 ** 45 }), node });
/** States whose value is determined by (version, digest), as a real register's are. */
const state: fc.Arbitrary<RegisterState<string>> = fc
  .record({ version, digest: fc.constantFrom('d1', 'd2', 'd3') })
  .map((s) => ({ ...s, value: `${formatVersion(s.version)}/${s.digest}` }));

const fold = (xs: RegisterState<string>[]) => xs.reduce((a, b) => mergeRegister(a, b));

describe('LWW register', () => {
  it('merge is commutative, associative and idempotent', () => {
    check(
      fc.property(state, state, state, (a, b, c) => {
        expect(mergeRegister(a, b)).toEqual(mergeRegister(b, a));
        expect(mergeRegister(mergeRegister(a, b), c)).toEqual(mergeRegister(a, mergeRegister(b, c)));
        expect(mergeRegister(a, a)).toEqual(a);
      }),
    );
  });

  it('replicas that received the same states in any order, with duplicates, hold the same state: the greatest', () => {
    check(
      fc.property(fc.array(state, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 12 }), fc.array(fc.nat(), { minLength: 24, maxLength: 24 }), (states, dupIdx, order) => {
        const withDups = [...states, ...dupIdx.map((i) => states[i % states.length])];
        // Another delivery order: sorted by random keys.
        const shuffled = withDups.map((s, i) => [order[i], s] as const).sort((x, y) => x[0] - y[0]).map(([, s]) => s);
        const a = fold(withDups);
        const b = fold(shuffled);
        expect(b).toEqual(a);
        for (const s of states) expect(compareStates(a, s)).toBeGreaterThanOrEqual(0);
      }),
    );
  });

  it('a node’s next version is greater than every version it has seen, even with its clock behind', () => {
    check(
      fc.property(version, fc.integer({ min: 0, max: 2 ** 45 }), node, (seen, now, self) => {
        const v = nextVersion(seen, now, self);
        expect(v.ts).toBeGreaterThan(seen.ts);
        expect(v.ts).toBeGreaterThanOrEqual(now);
        expect(v.node).toBe(self);
      }),
    );
  });

  it('a later change on a node whose clock is behind still wins over the change it saw', () => {
    const seen = { version: { ts: 5_000, node: 'b' }, digest: 'x', value: 'from b' };
    const mine = { version: nextVersion(seen.version, 1_000, 'a'), digest: 'y', value: 'from a, after b' };
    expect(mergeRegister(seen, mine)).toBe(mine);
    expect(mergeRegister(mine, seen)).toBe(mine);
  });

  it('versions render as opaque strings that parse back; anything else does not parse', () => {
    check(
      fc.property(version, (v) => {
        expect(parseVersion(formatVersion(v))).toEqual(v);
      }),
    );
    for (const bad of ['', '.', 'x.a', '01.a', '-1.a', '1', '99999999999999999.a']) expect(parseVersion(bad)).toBeUndefined();
  });
});

describe('rules message codec', () => {
  const msg = fc.record({
    origin: node,
    sentAt: fc.integer({ min: 0, max: 2 ** 45 }),
    what: fc.constantFrom('have' as const, 'state' as const),
    version,
    digest: fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 1, maxLength: 64 }),
    document: fc.json(),
  }).map((m): RulesMessage => ({ ...m, document: m.what === 'state' ? m.document : null }));

  it('decode(encode(m)) is m, as a rules message', () => {
    check(
      fc.property(msg, (m) => {
        const out = decodeMessage(encodeRules(m));
        expect(out).toEqual({ kind: 'rules', rules: m });
      }),
    );
  });

  const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });
  const codeOf = (raw: unknown): string => {
    try {
      decodeMessage(packr.pack(raw));
    } catch (err) {
      expect(err).toBeInstanceOf(CodecError);
      return (err as CodecError).code;
    }
    throw new Error('accepted');
  };

  it('refuses malformed rules envelopes with a stable code', () => {
    const ok = [RULES_KIND, 'a', 1, 1, 5, 'a', 'd', '{"rules":[]}'];
    expect(decodeMessage(packr.pack(ok)).kind).toBe('rules');
    expect(codeOf(ok.slice(0, 7))).toBe('CODEC_MALFORMED');
    expect(codeOf([...ok.slice(0, 3), 7, ...ok.slice(4)])).toBe('CODEC_INVALID_FIELD');
    expect(codeOf([...ok.slice(0, 4), -1, ...ok.slice(5)])).toBe('CODEC_INVALID_FIELD');
    expect(codeOf([...ok.slice(0, 7), null])).toBe('CODEC_INVALID_FIELD'); // a state without its document
    expect(codeOf([RULES_KIND, 'a', 1, 0, 5, 'a', 'd', '{}'])).toBe('CODEC_INVALID_FIELD'); // a have with one
    expect(codeOf([...ok.slice(0, 6), 'x'.repeat(CODEC_LIMITS.maxDigestBytes + 1), ok[7]])).toBe('CODEC_LIMIT_EXCEEDED');
    expect(codeOf([...ok.slice(0, 7), 'x'.repeat(CODEC_LIMITS.maxRulesBytes + 1)])).toBe('CODEC_LIMIT_EXCEEDED');
    expect(codeOf([3, 'a'])).toBe('CODEC_UNSUPPORTED_VERSION');
  });

  it('random values behind the rules kind never throw anything but CodecError', () => {
    check(
      fc.property(fc.array(fc.anything(), { maxLength: 9 }), (rest) => {
        try {
          decodeMessage(packr.pack([RULES_KIND, ...rest]));
        } catch (err) {
          expect(err).toBeInstanceOf(CodecError);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('encoding refuses what peers would refuse', () => {
    const m: RulesMessage = { origin: 'a', sentAt: 1, what: 'state', version: { ts: 1, node: 'a' }, digest: 'd', document: 'x'.repeat(CODEC_LIMITS.maxRulesBytes + 1) };
    expect(() => encodeRules(m)).toThrow(CodecError);
    expect(() => encodeRules({ ...m, document: null })).toThrow(CodecError);
  });
});
