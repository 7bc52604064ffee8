/**
 * Versioned wire format for delta batches and rules messages (msgpack via msgpackr).
 *
 * Version 1 is one msgpack array:
 *
 *   [ 1, origin, seq, sentAt, scopes, nodes, cells ]
 *
 *   origin  string           node that cut the batch
 *   seq     uint             producer batch sequence
 *   sentAt  uint             producer clock (ms) when the batch was cut
 *   scopes  [[scopeId, baseSlot], ...]   scope table; slots are sent relative to baseSlot
 *   nodes   [nodeId, ...]    node table (usually just the origin)
 *   cells   flat array of 6-tuples: scopeIndex, key, slotOffset, nodeIndex, p, n
 *
 * Tables keep a key-update to a handful of bytes plus the key itself.
 *
 * Decoding treats input as hostile: size, counts, string lengths, integer ranges and table
 * references are all checked, and any violation is a CodecError with a stable code. Unknown
 * versions are refused with CODEC_UNSUPPORTED_VERSION.
 */
import { Packr, Unpackr } from 'msgpackr';
import { CodecError } from './errors.ts';
import type { RegisterVersion } from './register.ts';
import type { DeltaEnvelope, SlotEntry } from './types.ts';

export const WIRE_VERSION = 1;

/** Limits enforced when decoding (and encoding, so a node never ships what peers would refuse). */
export const CODEC_LIMITS = Object.freeze({
  maxBytes: 4 * 1024 * 1024,
  maxCells: 200_000,
  maxScopes: 10_000,
  maxNodes: 1_000,
  maxKeyBytes: 1024,
  maxScopeBytes: 512,
  maxNodeBytes: 256,
  /** Largest p or n of one cell. */
  maxCount: 0xffff_ffff,
  /** Largest slot id (ms-wide slots until far beyond year 275 000). */
  maxSlot: Number.MAX_SAFE_INTEGER,
  /** Largest rules document carried by a rules message (JSON text, UTF-8 bytes; under NATS' 1 MiB max_payload). */
  maxRulesBytes: 1_000_000,
  /** Longest digest of a rules document. */
  maxDigestBytes: 128,
});

const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: false, int64AsType: 'number' });

const FIELDS = 6;

/** Encode a batch. Throws CodecError if it breaks the format's limits. */
export function encodeDelta(env: DeltaEnvelope): Uint8Array {
  if (env.v !== WIRE_VERSION) throw new CodecError('CODEC_UNSUPPORTED_VERSION', `cannot encode version ${env.v}`);
  if (env.entries.length > CODEC_LIMITS.maxCells) {
    throw new CodecError('CODEC_LIMIT_EXCEEDED', `batch has ${env.entries.length} cells, max ${CODEC_LIMITS.maxCells}`);
  }
  const scopeIdx = new Map<string, number>();
  const scopes: [string, number][] = [];
  const nodeIdx = new Map<string, number>();
  const nodes: string[] = [];
  // First pass: tables and per-scope base slot (the minimum slot, so offsets are non-negative).
  for (const c of env.entries) {
    let si = scopeIdx.get(c.scope);
    if (si === undefined) {
      si = scopes.length;
      scopeIdx.set(c.scope, si);
      scopes.push([c.scope, c.slot]);
    } else if (c.slot < scopes[si][1]) {
      scopes[si][1] = c.slot;
    }
    if (!nodeIdx.has(c.node)) {
      nodeIdx.set(c.node, nodes.length);
      nodes.push(c.node);
    }
  }
  const cells: (string | number)[] = new Array(env.entries.length * FIELDS);
  let i = 0;
  for (const c of env.entries) {
    const si = scopeIdx.get(c.scope)!;
    cells[i++] = si;
    cells[i++] = c.key;
    cells[i++] = c.slot - scopes[si][1];
    cells[i++] = nodeIdx.get(c.node)!;
    cells[i++] = c.p;
    cells[i++] = c.n;
  }
  const out = packr.pack([WIRE_VERSION, env.origin, env.seq, env.sentAt, scopes, nodes, cells]);
  if (out.length > CODEC_LIMITS.maxBytes) {
    throw new CodecError('CODEC_LIMIT_EXCEEDED', `encoded batch is ${out.length} bytes, max ${CODEC_LIMITS.maxBytes}`);
  }
  return out;
}

/**
 * A rules message (kind 2), one msgpack array:
 *
 *   [ 2, origin, sentAt, what, versionTs, versionNode, digest, document ]
 *
 *   what      0 = "have" (a beacon: the version this node holds, document nil),
 *             1 = "state" (the register's state: the document as JSON text)
 *   versionTs, versionNode, digest   the register state's version and value digest (crdt/register.ts)
 *
 * The codec checks only the shape; the document itself is validated like any rules change by
 * the node that receives it.
 */
export const RULES_KIND = 2;

export interface RulesMessage {
  origin: string;
  sentAt: number;
  what: 'have' | 'state';
  version: RegisterVersion;
  digest: string;
  /** JSON text of the rules document (`state`), null for `have`. */
  document: string | null;
}

/** Encode a rules message. Throws CodecError if it breaks the format's limits. */
export function encodeRules(m: RulesMessage): Uint8Array {
  if ((m.what === 'state') !== (typeof m.document === 'string')) {
    throw new CodecError('CODEC_INVALID_FIELD', 'a "state" rules message carries a document, a "have" message none');
  }
  if (m.document !== null && utf8Length(m.document) > CODEC_LIMITS.maxRulesBytes) {
    throw new CodecError('CODEC_LIMIT_EXCEEDED', `rules document is longer than ${CODEC_LIMITS.maxRulesBytes} bytes`);
  }
  return packr.pack([RULES_KIND, m.origin, m.sentAt, m.what === 'state' ? 1 : 0, m.version.ts, m.version.node, m.digest, m.document]);
}

/** A kind 2 envelope array → the rules message. */
function rulesOf(raw: unknown[]): RulesMessage {
  if (raw.length !== 8) throw new CodecError('CODEC_MALFORMED', `rules envelope has 8 fields, got ${raw.length}`);
  const [, origin, sentAt, what, ts, node, digest, document] = raw;
  const originS = str(origin, 'origin', CODEC_LIMITS.maxNodeBytes);
  const sentAtN = uint(sentAt, 'sentAt', Number.MAX_SAFE_INTEGER);
  if (what !== 0 && what !== 1) throw new CodecError('CODEC_INVALID_FIELD', `rules message kind ${safeShow(what)} is neither 0 (have) nor 1 (state)`);
  const version = { ts: uint(ts, 'version timestamp', Number.MAX_SAFE_INTEGER), node: str(node, 'version node', CODEC_LIMITS.maxNodeBytes) };
  const digestS = str(digest, 'digest', CODEC_LIMITS.maxDigestBytes);
  let doc: string | null = null;
  if (what === 1) doc = str(document, 'document', CODEC_LIMITS.maxRulesBytes);
  else if (document !== null && document !== undefined) throw new CodecError('CODEC_INVALID_FIELD', 'a "have" rules message carries no document');
  return { origin: originS, sentAt: sentAtN, what: what === 1 ? 'state' : 'have', version, digest: digestS, document: doc };
}

/** Decode and validate a batch. Throws CodecError (never anything else) on bad input. */
export function decodeDelta(bytes: Uint8Array): DeltaEnvelope {
  const raw = unpackEnvelope(bytes);
  if (raw[0] !== WIRE_VERSION) {
    throw new CodecError('CODEC_UNSUPPORTED_VERSION', `wire version ${safeShow(raw[0])} is not supported (this node reads ${WIRE_VERSION})`);
  }
  return deltaOf(raw);
}

/**
 * Decode and validate any replicated message: a delta batch (wire version 1) or a rules
 * message (kind 2, ./rules-codec.ts). Throws CodecError (never anything else) on bad input.
 */
export function decodeMessage(bytes: Uint8Array): ReplicatedPayload {
  const raw = unpackEnvelope(bytes);
  if (raw[0] === WIRE_VERSION) return { kind: 'delta', delta: deltaOf(raw) };
  if (raw[0] === RULES_KIND) return { kind: 'rules', rules: rulesOf(raw) };
  throw new CodecError('CODEC_UNSUPPORTED_VERSION', `wire version ${safeShow(raw[0])} is not supported (this node reads ${WIRE_VERSION} and ${RULES_KIND})`);
}

/** One replicated message, decoded. */
export type ReplicatedPayload = { kind: 'delta'; delta: DeltaEnvelope } | { kind: 'rules'; rules: RulesMessage };

/** Bytes → the envelope array, with the checks every kind shares. */
function unpackEnvelope(bytes: Uint8Array): unknown[] {
  if (!(bytes instanceof Uint8Array)) throw new CodecError('CODEC_MALFORMED', 'payload is not bytes');
  if (bytes.length === 0) throw new CodecError('CODEC_MALFORMED', 'empty payload');
  if (bytes.length > CODEC_LIMITS.maxBytes) {
    throw new CodecError('CODEC_LIMIT_EXCEEDED', `payload is ${bytes.length} bytes, max ${CODEC_LIMITS.maxBytes}`);
  }
  let raw: unknown;
  try {
    raw = unpackr.unpack(bytes);
  } catch (cause) {
    throw new CodecError('CODEC_MALFORMED', 'payload is not valid msgpack', { cause });
  }
  if (!Array.isArray(raw) || raw.length < 1) throw new CodecError('CODEC_MALFORMED', 'envelope is not an array');
  return raw as unknown[];
}

/** A version 1 envelope array → the batch. */
function deltaOf(raw: unknown[]): DeltaEnvelope {
  if (raw.length !== 7) throw new CodecError('CODEC_MALFORMED', `version 1 envelope has 7 fields, got ${raw.length}`);
  const [, origin, seq, sentAt, scopesRaw, nodesRaw, cellsRaw] = raw as unknown[];
  const originS = str(origin, 'origin', CODEC_LIMITS.maxNodeBytes);
  const seqN = uint(seq, 'seq', Number.MAX_SAFE_INTEGER);
  const sentAtN = uint(sentAt, 'sentAt', Number.MAX_SAFE_INTEGER);

  if (!Array.isArray(scopesRaw)) throw new CodecError('CODEC_INVALID_FIELD', 'scopes is not an array');
  if (scopesRaw.length > CODEC_LIMITS.maxScopes) throw new CodecError('CODEC_LIMIT_EXCEEDED', `too many scopes (${scopesRaw.length})`);
  const scopes: string[] = [];
  const bases: number[] = [];
  for (let i = 0; i < scopesRaw.length; i++) {
    const s = scopesRaw[i];
    if (!Array.isArray(s) || s.length !== 2) throw new CodecError('CODEC_INVALID_FIELD', `scopes[${i}] is not [scope, baseSlot]`);
    scopes.push(str(s[0], `scopes[${i}][0]`, CODEC_LIMITS.maxScopeBytes));
    bases.push(uint(s[1], `scopes[${i}][1]`, CODEC_LIMITS.maxSlot));
  }
  if (!Array.isArray(nodesRaw)) throw new CodecError('CODEC_INVALID_FIELD', 'nodes is not an array');
  if (nodesRaw.length > CODEC_LIMITS.maxNodes) throw new CodecError('CODEC_LIMIT_EXCEEDED', `too many nodes (${nodesRaw.length})`);
  const nodes: string[] = [];
  for (let i = 0; i < nodesRaw.length; i++) nodes.push(str(nodesRaw[i], `nodes[${i}]`, CODEC_LIMITS.maxNodeBytes));

  if (!Array.isArray(cellsRaw)) throw new CodecError('CODEC_INVALID_FIELD', 'cells is not an array');
  if (cellsRaw.length % FIELDS !== 0) throw new CodecError('CODEC_INVALID_FIELD', `cells length ${cellsRaw.length} is not a multiple of ${FIELDS}`);
  const count = cellsRaw.length / FIELDS;
  if (count > CODEC_LIMITS.maxCells) throw new CodecError('CODEC_LIMIT_EXCEEDED', `too many cells (${count})`);
  const entries: SlotEntry[] = new Array(count);
  for (let c = 0, i = 0; c < count; c++, i += FIELDS) {
    const si = cellsRaw[i];
    if (typeof si !== 'number' || !Number.isInteger(si) || si < 0 || si >= scopes.length) {
      throw new CodecError('CODEC_INVALID_FIELD', `cell ${c}: scope index ${safeShow(si)} out of range`);
    }
    const key = str(cellsRaw[i + 1], `cell ${c} key`, CODEC_LIMITS.maxKeyBytes);
    const off = uint(cellsRaw[i + 2], `cell ${c} slot offset`, CODEC_LIMITS.maxSlot);
    const slot = bases[si] + off;
    if (slot > CODEC_LIMITS.maxSlot) throw new CodecError('CODEC_INVALID_FIELD', `cell ${c}: slot out of range`);
    const ni = cellsRaw[i + 3];
    if (typeof ni !== 'number' || !Number.isInteger(ni) || ni < 0 || ni >= nodes.length) {
      throw new CodecError('CODEC_INVALID_FIELD', `cell ${c}: node index ${safeShow(ni)} out of range`);
    }
    const p = uint(cellsRaw[i + 4], `cell ${c} p`, CODEC_LIMITS.maxCount);
    const n = uint(cellsRaw[i + 5], `cell ${c} n`, CODEC_LIMITS.maxCount);
    entries[c] = { scope: scopes[si], key, slot, node: nodes[ni], p, n };
  }
  return { v: WIRE_VERSION, origin: originS, seq: seqN, sentAt: sentAtN, entries };
}

function str(v: unknown, field: string, maxBytes: number): string {
  if (typeof v !== 'string') throw new CodecError('CODEC_INVALID_FIELD', `${field} is not a string`);
  if (v.length === 0) throw new CodecError('CODEC_INVALID_FIELD', `${field} is empty`);
  // UTF-8 length ≤ 3 bytes per UTF-16 unit; only measure exactly when it could exceed the limit.
  if (v.length * 3 > maxBytes && utf8Length(v) > maxBytes) {
    throw new CodecError('CODEC_LIMIT_EXCEEDED', `${field} is longer than ${maxBytes} bytes`);
  }
  return v;
}

function uint(v: unknown, field: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new CodecError('CODEC_INVALID_FIELD', `${field} is not an integer in [0, ${max}]: ${safeShow(v)}`);
  }
  return v;
}

/** UTF-8 byte length of a string (no TextEncoder needed). */
export function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function safeShow(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 32 ? v.slice(0, 32) + '…' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return typeof v;
}
