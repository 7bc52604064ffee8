/**
 * The stored rules state (ports.ts StoredRules) as one metadata value: a JSON record written in
 * one statement, so a crash leaves either the old state or the new one. Shared by every store.
 */
import { StorageError } from '../engine/errors.ts';
import type { StoredRules } from './ports.ts';

/** The metadata key the record lives under. */
export const RULES_META_KEY = 'rules';

export function encodeStoredRules(r: StoredRules): string {
  return JSON.stringify({ ts: r.version.ts, node: r.version.node, digest: r.digest, document: r.document, fileHash: r.fileHash });
}

/** Reads a record; a record that is not one is STORAGE_CORRUPT. */
export function decodeStoredRules(text: string): StoredRules {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (cause) {
    throw new StorageError('the stored rules record is not valid JSON', { cause, code: 'STORAGE_CORRUPT' });
  }
  const r = o as Record<string, unknown>;
  if (
    typeof r !== 'object' || r === null ||
    !Number.isSafeInteger(r.ts) || (r.ts as number) < 0 ||
    typeof r.node !== 'string' || typeof r.digest !== 'string' || typeof r.document !== 'string' ||
    !(r.fileHash === null || typeof r.fileHash === 'string')
  ) {
    throw new StorageError('the stored rules record does not have the expected fields', { code: 'STORAGE_CORRUPT' });
  }
  return { version: { ts: r.ts as number, node: r.node }, digest: r.digest, document: r.document, fileHash: r.fileHash as string | null };
}
