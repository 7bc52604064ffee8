/**
 * The delta codec (crdt/codec.ts): round trips, golden encodings, and input treated as hostile
 * (anything wrong is a CodecError with the right stable code, never another exception).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  CODEC_LIMITS,
  CodecError,
  CrdtError,
  WIRE_VERSION,
  decodeDelta,
  encodeDelta,
  utf8Length,
  type CodecErrorCode,
  type DeltaEnvelope,
  type SlotEntry,
} from '../../crdt/index.ts';
import { check } from '../helpers/fc.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/codec/', import.meta.url));
/** Packs raw (possibly invalid) envelopes the way a peer would. */
const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });
const pack = (v: unknown): Uint8Array => packr.pack(v);

const hexToBytes = (hex: string) => new Uint8Array(Buffer.from(hex.trim(), 'hex'));
const bytesToHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Decode and return the CodecError code, failing the test on success or on any other error. */
function codeOf(bytes: Uint8Array): CodecErrorCode {
  try {
    decodeDelta(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(CodecError);
    expect(err).toBeInstanceOf(CrdtError);
    expect((err as CodecError).name).toBe('CodecError');
    return (err as CodecError).code as CodecErrorCode;
  }
  throw new Error('decodeDelta accepted the input');
}

function encodeCode(env: DeltaEnvelope): CodecErrorCode {
  try {
    encodeDelta(env);
  } catch (err) {
    expect(err).toBeInstanceOf(CodecError);
    return (err as CodecError).code as CodecErrorCode;
  }
  throw new Error('encodeDelta accepted the input');
}

/** Every decoded envelope obeys the format's limits, whatever bytes it came from. */
function assertValidEnvelope(env: DeltaEnvelope): void {
  const isStr = (s: unknown, max: number) => typeof s === 'string' && s.length > 0 && utf8Length(s) <= max;
  const isUint = (n: unknown, max: number) => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= max;
  expect(env.v).toBe(WIRE_VERSION);
  expect(isStr(env.origin, CODEC_LIMITS.maxNodeBytes)).toBe(true);
  expect(isUint(env.seq, Number.MAX_SAFE_INTEGER)).toBe(true);
  expect(isUint(env.sentAt, Number.MAX_SAFE_INTEGER)).toBe(true);
  expect(Array.isArray(env.entries)).toBe(true);
  expect(env.entries.length).toBeLessThanOrEqual(CODEC_LIMITS.maxCells);
  for (const c of env.entries) {
    expect(isStr(c.scope, CODEC_LIMITS.maxScopeBytes)).toBe(true);
    expect(isStr(c.key, CODEC_LIMITS.maxKeyBytes)).toBe(true);
    expect(isStr(c.node, CODEC_LIMITS.maxNodeBytes)).toBe(true);
    expect(isUint(c.slot, CODEC_LIMITS.maxSlot)).toBe(true);
    expect(isUint(c.p, CODEC_LIMITS.maxCount)).toBe(true);
    expect(isUint(c.n, CODEC_LIMITS.maxCount)).toBe(true);
  }
}

/** Decoding either succeeds with a valid envelope or fails with a CodecError: nothing else. */
function decodeSafely(bytes: Uint8Array): void {
  let env: DeltaEnvelope;
  try {
    env = decodeDelta(bytes);
  } catch (err) {
    if (!(err instanceof CodecError)) throw new Error(`decodeDelta threw a non-CodecError: ${String(err)}`, { cause: err });
    expect(['CODEC_MALFORMED', 'CODEC_UNSUPPORTED_VERSION', 'CODEC_LIMIT_EXCEEDED', 'CODEC_INVALID_FIELD']).toContain(err.code);
    return;
  }
  assertValidEnvelope(env);
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Well-formed strings (lone surrogates have no UTF-8 form; the HTTP layer refuses them) within a byte limit. */
const textArb = (maxBytes: number) =>
  fc
    .oneof(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 24 }),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }).filter((s) => s.isWellFormed()),
      fc.constantFrom('default|sw|60000|6000', 'us-east-1', 'apikey:😀', 'login:zoë', 'x'.repeat(maxBytes), '€'.repeat(Math.floor(maxBytes / 3))),
    )
    .filter((s) => s.length > 0 && utf8Length(s) <= maxBytes);

const countArb = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: CODEC_LIMITS.maxCount }), fc.constantFrom(0, CODEC_LIMITS.maxCount));
const slotArb = fc.oneof(fc.integer({ min: 315_000_000, max: 315_000_050 }), fc.maxSafeNat(), fc.constantFrom(0, CODEC_LIMITS.maxSlot));

const entryArb = (scopes: string[], nodes: string[]): fc.Arbitrary<SlotEntry> =>
  fc.record({
    scope: fc.constantFrom(...scopes),
    key: textArb(CODEC_LIMITS.maxKeyBytes),
    slot: slotArb,
    node: fc.constantFrom(...nodes),
    p: countArb,
    n: countArb,
  });

const envelopeArb: fc.Arbitrary<DeltaEnvelope> = fc
  .record({
    scopes: fc.uniqueArray(textArb(CODEC_LIMITS.maxScopeBytes), { minLength: 1, maxLength: 4 }),
    nodes: fc.uniqueArray(textArb(CODEC_LIMITS.maxNodeBytes), { minLength: 1, maxLength: 4 }),
  })
  .chain(({ scopes, nodes }) =>
    fc.record({
      v: fc.constant(WIRE_VERSION),
      origin: fc.constantFrom(...nodes),
      seq: fc.oneof(fc.nat(), fc.maxSafeNat()),
      sentAt: fc.oneof(fc.integer({ min: 1_700_000_000_000, max: 2_000_000_000_000 }), fc.maxSafeNat()),
      entries: fc.array(entryArb(scopes, nodes), { maxLength: 20 }),
    }),
  );

// ---------------------------------------------------------------------------------------------

describe('codec round trips', () => {
  it('decode(encode(env)) equals env, and encoding is canonical', () => {
    check(
      fc.property(envelopeArb, (env) => {
        const bytes = encodeDelta(env);
        expect(bytes.length).toBeLessThanOrEqual(CODEC_LIMITS.maxBytes);
        const back = decodeDelta(bytes);
        expect(back).toEqual(env);
        expect(bytesToHex(encodeDelta(back))).toBe(bytesToHex(bytes));
      }),
    );
  });

  it('decodes a Buffer as well as a plain Uint8Array', () => {
    const env: DeltaEnvelope = { v: 1, origin: 'a', seq: 1, sentAt: 2, entries: [{ scope: 's', key: 'k', slot: 5, node: 'a', p: 1, n: 0 }] };
    expect(decodeDelta(Buffer.from(encodeDelta(env)))).toEqual(env);
  });
});

describe('golden encodings (test/fixtures/codec)', () => {
  const names = readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.hex'))
    .map((f) => f.slice(0, -4))
    .sort();

  it('the fixture set is complete', () => {
    expect(names).toEqual(['v1-empty', 'v1-extremes', 'v1-multi', 'v1-single']);
  });

  for (const name of names) {
    const hex = readFileSync(`${FIXTURES}${name}.hex`, 'utf8').trim();
    const expected = JSON.parse(readFileSync(`${FIXTURES}${name}.json`, 'utf8')) as DeltaEnvelope;

    it(`${name}: the current decoder reads it to exactly its JSON`, () => {
      expect(decodeDelta(hexToBytes(hex))).toEqual(expected);
    });

    it(`${name}: the current encoder produces it byte for byte`, () => {
      expect(bytesToHex(encodeDelta(expected))).toBe(hex);
    });
  }
});

describe('hostile input', () => {
  it('random bytes never throw anything but CodecError', () => {
    check(fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => decodeSafely(bytes)));
  });

  it('random bytes behind a valid version prefix never throw anything but CodecError', () => {
    // 0x97 0x01: "array of 7, version 1" — gets the fuzz past the version check.
    check(fc.property(fc.uint8Array({ maxLength: 256 }), (tail) => decodeSafely(new Uint8Array([0x97, 0x01, ...tail]))));
  });

  it('mutated and truncated valid encodings never throw anything but CodecError', () => {
    check(
      fc.property(
        envelopeArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        (env, flips, cut) => {
          const bytes = new Uint8Array(encodeDelta(env));
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          decodeSafely(bytes);
          decodeSafely(bytes.subarray(0, cut % bytes.length));
        },
      ),
    );
  });

  it('arbitrary msgpack values, and near-valid envelopes with wrong field types, are refused with CodecError', () => {
    const junk = fc.oneof(
      fc.anything({ maxDepth: 2, withBigInt: false, withBoxedValues: false, withMap: false, withSet: false, withTypedArray: true, withNullPrototype: false }),
      fc.double(),
      fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
      fc.constantFrom(-1, 0.5, NaN, Infinity, 2 ** 32, Number.MAX_SAFE_INTEGER + 2, '', 'x'.repeat(2000), null, true, [], {}),
    );
    const field = (valid: fc.Arbitrary<unknown>) => fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: junk });
    const nearValid = fc.tuple(
      field(fc.constant(1)),
      field(fc.constant('us-east-1')),
      field(fc.nat()),
      field(fc.nat()),
      field(fc.array(fc.tuple(field(fc.constant('s')), field(fc.nat(1000))), { maxLength: 3 })),
      field(fc.array(field(fc.constant('n')), { maxLength: 3 })),
      field(
        fc
          .array(fc.tuple(field(fc.nat(3)), field(fc.constant('k')), field(fc.nat(5)), field(fc.nat(3)), field(fc.nat(10)), field(fc.nat(10))), {
            maxLength: 4,
          })
          .map((cells) => cells.flat()),
      ),
    );
    check(
      fc.property(fc.oneof(junk, nearValid, fc.array(junk, { maxLength: 9 })), (value) => {
        let bytes: Uint8Array;
        try {
          bytes = pack(value);
        } catch {
          return; // not packable: nothing a peer could send
        }
        decodeSafely(bytes);
      }),
    );
  });

  describe('coded refusals', () => {
    /** A valid raw v1 envelope: one scope, one node, one cell. */
    const valid = () => [1, 'us-east-1', 1, 1_893_456_000_000, [['s', 100]], ['us-east-1'], [0, 'k', 0, 0, 1, 0]] as unknown[];
    const withField = (i: number, v: unknown) => {
      const raw = valid();
      raw[i] = v;
      return pack(raw);
    };
    const withCell = (i: number, v: unknown) => {
      const raw = valid();
      (raw[6] as unknown[])[i] = v;
      return pack(raw);
    };

    it('the valid base envelope decodes', () => {
      expect(decodeDelta(pack(valid()))).toEqual({
        v: 1,
        origin: 'us-east-1',
        seq: 1,
        sentAt: 1_893_456_000_000,
        entries: [{ scope: 's', key: 'k', slot: 100, node: 'us-east-1', p: 1, n: 0 }],
      });
    });

    it('wrong version → CODEC_UNSUPPORTED_VERSION (decode and encode)', () => {
      for (const v of [0, 2, 3, 255, -1, 1.5, '1', null, true]) expect(codeOf(withField(0, v))).toBe('CODEC_UNSUPPORTED_VERSION');
      // A future version may have any shape at all.
      expect(codeOf(pack([2, { anything: 'new' }]))).toBe('CODEC_UNSUPPORTED_VERSION');
      expect(codeOf(pack([2]))).toBe('CODEC_UNSUPPORTED_VERSION');
      expect(encodeCode({ v: 2, origin: 'a', seq: 0, sentAt: 0, entries: [] })).toBe('CODEC_UNSUPPORTED_VERSION');
      const err = (() => {
        try {
          decodeDelta(withField(0, 2));
        } catch (e) {
          return e as CodecError;
        }
      })();
      expect(err?.message).toMatch(/version 2 is not supported/);
    });

    it('not an envelope → CODEC_MALFORMED', () => {
      expect(codeOf(new Uint8Array(0))).toBe('CODEC_MALFORMED');
      expect(codeOf(pack({ v: 1 }))).toBe('CODEC_MALFORMED');
      expect(codeOf(pack(1))).toBe('CODEC_MALFORMED');
      expect(codeOf(pack('hello'))).toBe('CODEC_MALFORMED');
      expect(codeOf(pack([]))).toBe('CODEC_MALFORMED');
      expect(codeOf(pack(valid().slice(0, 6)))).toBe('CODEC_MALFORMED');
      expect(codeOf(pack([...valid(), 'extra']))).toBe('CODEC_MALFORMED');
      const good = pack(valid());
      expect(codeOf(good.subarray(0, good.length - 1))).toBe('CODEC_MALFORMED'); // truncated
      expect(codeOf(new Uint8Array([0xc1]))).toBe('CODEC_MALFORMED'); // never-used msgpack byte
      expect(codeOf('not bytes' as unknown as Uint8Array)).toBe('CODEC_MALFORMED');
    });

    it('oversize payload → CODEC_LIMIT_EXCEEDED before parsing', () => {
      expect(codeOf(new Uint8Array(CODEC_LIMITS.maxBytes + 1))).toBe('CODEC_LIMIT_EXCEEDED');
    });

    it('too many cells, scopes or nodes → CODEC_LIMIT_EXCEEDED (decode and encode)', () => {
      const cells: unknown[] = [];
      for (let i = 0; i <= CODEC_LIMITS.maxCells; i++) cells.push(0, 'k', 0, 0, 1, 0);
      expect(codeOf(withField(6, cells))).toBe('CODEC_LIMIT_EXCEEDED');
      expect(codeOf(withField(4, Array.from({ length: CODEC_LIMITS.maxScopes + 1 }, (_, i) => [`s${i}`, 1])))).toBe('CODEC_LIMIT_EXCEEDED');
      expect(codeOf(withField(5, Array.from({ length: CODEC_LIMITS.maxNodes + 1 }, (_, i) => `n${i}`)))).toBe('CODEC_LIMIT_EXCEEDED');

      const entry: SlotEntry = { scope: 's', key: 'k', slot: 1, node: 'n', p: 1, n: 0 };
      expect(encodeCode({ v: 1, origin: 'n', seq: 0, sentAt: 0, entries: new Array<SlotEntry>(CODEC_LIMITS.maxCells + 1).fill(entry) })).toBe('CODEC_LIMIT_EXCEEDED');
      // Under the cell cap but over the byte cap: 1 KiB keys.
      const big: SlotEntry = { ...entry, key: 'k'.repeat(CODEC_LIMITS.maxKeyBytes) };
      const count = Math.ceil(CODEC_LIMITS.maxBytes / CODEC_LIMITS.maxKeyBytes) + 1;
      expect(encodeCode({ v: 1, origin: 'n', seq: 0, sentAt: 0, entries: new Array<SlotEntry>(count).fill(big) })).toBe('CODEC_LIMIT_EXCEEDED');
    });

    it('negative numbers → CODEC_INVALID_FIELD', () => {
      expect(codeOf(withField(2, -1))).toBe('CODEC_INVALID_FIELD'); // seq
      expect(codeOf(withField(3, -1))).toBe('CODEC_INVALID_FIELD'); // sentAt
      expect(codeOf(withField(4, [['s', -1]]))).toBe('CODEC_INVALID_FIELD'); // base slot
      expect(codeOf(withCell(2, -1))).toBe('CODEC_INVALID_FIELD'); // slot offset
      expect(codeOf(withCell(4, -1))).toBe('CODEC_INVALID_FIELD'); // p
      expect(codeOf(withCell(5, -1))).toBe('CODEC_INVALID_FIELD'); // n
      expect(codeOf(withCell(4, -(2 ** 40)))).toBe('CODEC_INVALID_FIELD');
    });

    it('floats, NaN and infinities → CODEC_INVALID_FIELD', () => {
      for (const bad of [1.5, 0.1, NaN, Infinity, -Infinity]) {
        expect(codeOf(withField(2, bad))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withField(4, [['s', bad]]))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withCell(2, bad))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withCell(4, bad))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withCell(5, bad))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withCell(0, bad))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withCell(3, bad))).toBe('CODEC_INVALID_FIELD');
      }
    });

    it('numbers out of range → CODEC_INVALID_FIELD', () => {
      expect(codeOf(withCell(4, CODEC_LIMITS.maxCount + 1))).toBe('CODEC_INVALID_FIELD');
      expect(codeOf(withCell(5, 2 ** 53))).toBe('CODEC_INVALID_FIELD');
      expect(codeOf(withField(2, 2 ** 53))).toBe('CODEC_INVALID_FIELD');
      // base + offset beyond the largest slot.
      const raw = valid();
      raw[4] = [['s', CODEC_LIMITS.maxSlot]];
      (raw[6] as unknown[])[2] = 1;
      expect(codeOf(pack(raw))).toBe('CODEC_INVALID_FIELD');
      // ... while exactly the largest slot is fine.
      (raw[6] as unknown[])[2] = 0;
      expect(decodeDelta(pack(raw)).entries[0].slot).toBe(CODEC_LIMITS.maxSlot);
    });

    it('bad table indices → CODEC_INVALID_FIELD', () => {
      for (const bad of [1, 7, -1, 0.5, '0', null]) {
        expect(codeOf(withCell(0, bad))).toBe('CODEC_INVALID_FIELD'); // scope index (one scope)
        expect(codeOf(withCell(3, bad))).toBe('CODEC_INVALID_FIELD'); // node index (one node)
      }
      // A cell that references tables that are empty.
      const raw = valid();
      raw[4] = [];
      expect(codeOf(pack(raw))).toBe('CODEC_INVALID_FIELD');
      const raw2 = valid();
      raw2[5] = [];
      expect(codeOf(pack(raw2))).toBe('CODEC_INVALID_FIELD');
    });

    it('non-string keys, scopes, nodes and origin → CODEC_INVALID_FIELD', () => {
      for (const bad of [42, null, true, ['k'], { k: 1 }, new Uint8Array([0x6b])]) {
        expect(codeOf(withCell(1, bad))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withField(1, bad))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withField(4, [[bad, 1]]))).toBe('CODEC_INVALID_FIELD');
        expect(codeOf(withField(5, [bad]))).toBe('CODEC_INVALID_FIELD');
      }
      expect(codeOf(withCell(1, ''))).toBe('CODEC_INVALID_FIELD'); // empty key
      expect(codeOf(withField(1, ''))).toBe('CODEC_INVALID_FIELD');
    });

    it('malformed tables → CODEC_INVALID_FIELD', () => {
      expect(codeOf(withField(4, 'scopes'))).toBe('CODEC_INVALID_FIELD');
      expect(codeOf(withField(4, [['s']]))).toBe('CODEC_INVALID_FIELD');
      expect(codeOf(withField(4, [['s', 1, 2]]))).toBe('CODEC_INVALID_FIELD');
      expect(codeOf(withField(5, { 0: 'n' }))).toBe('CODEC_INVALID_FIELD');
      expect(codeOf(withField(6, 'cells'))).toBe('CODEC_INVALID_FIELD');
      expect(codeOf(withField(6, [0, 'k', 0, 0, 1]))).toBe('CODEC_INVALID_FIELD'); // not a multiple of 6
    });

    it('too-long key, scope, node or origin → CODEC_LIMIT_EXCEEDED, measured in UTF-8 bytes', () => {
      const { maxKeyBytes, maxScopeBytes, maxNodeBytes } = CODEC_LIMITS;
      expect(codeOf(withCell(1, 'x'.repeat(maxKeyBytes + 1)))).toBe('CODEC_LIMIT_EXCEEDED');
      expect(codeOf(withCell(1, '€'.repeat(Math.floor(maxKeyBytes / 3) + 1)))).toBe('CODEC_LIMIT_EXCEEDED'); // 1026 bytes, 342 units
      expect(codeOf(withCell(1, '😀'.repeat(maxKeyBytes / 4 + 1)))).toBe('CODEC_LIMIT_EXCEEDED'); // 1028 bytes
      expect(codeOf(withField(4, [['s'.repeat(maxScopeBytes + 1), 1]]))).toBe('CODEC_LIMIT_EXCEEDED');
      expect(codeOf(withField(5, ['n'.repeat(maxNodeBytes + 1)]))).toBe('CODEC_LIMIT_EXCEEDED');
      expect(codeOf(withField(1, 'é'.repeat(maxNodeBytes / 2 + 1)))).toBe('CODEC_LIMIT_EXCEEDED');
      // Exactly at the limit is accepted.
      for (const key of ['x'.repeat(maxKeyBytes), '€'.repeat(Math.floor(maxKeyBytes / 3)), '😀'.repeat(maxKeyBytes / 4)]) {
        expect(utf8Length(key)).toBeLessThanOrEqual(maxKeyBytes);
        expect(decodeDelta(withCell(1, key)).entries[0].key).toBe(key);
      }
    });
  });
});

describe('utf8Length', () => {
  it('equals the UTF-8 encoding length of well-formed strings', () => {
    check(
      fc.property(fc.string({ unit: 'binary', maxLength: 64 }).filter((s) => s.isWellFormed()), (s) => {
        expect(utf8Length(s)).toBe(Buffer.byteLength(s, 'utf8'));
      }),
    );
  });
});
