/**
 * The rules document as text: parsing (JSON or YAML, one parser reads both), the JSON text that
 * is stored and replicated, and the digests (crdt/register.ts tie-break, the file's content hash).
 */
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { CODEC_LIMITS, utf8Length } from '../../crdt/index.ts';
import { ConfigError } from '../engine/errors.ts';

/** Parse YAML or JSON text into a document. Throws ConfigError (CONFIG_UNREADABLE) when it is neither. */
export function parseDocument(text: string, file: string): unknown {
  try {
    return parseYaml(text, { prettyErrors: true, uniqueKeys: true, maxAliasCount: 100 });
  } catch (cause) {
    throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file, path: '', message: `not valid YAML/JSON: ${(cause as Error).message}` }], 'CONFIG_UNREADABLE');
  }
}

/** The JSON text a document is stored and replicated as. Throws ConfigError when it is too large to replicate. */
export function documentText(doc: unknown, file: string): string {
  const text = JSON.stringify(doc);
  if (text === undefined) throw new ConfigError([{ code: 'RULE_INVALID', file, path: '', message: 'the rules document must be an object' }]);
  if (utf8Length(text) > CODEC_LIMITS.maxRulesBytes) {
    throw new ConfigError([{ code: 'RULES_TOO_LARGE', file, path: '', message: `the rules document is ${utf8Length(text)} bytes of JSON, max ${CODEC_LIMITS.maxRulesBytes}` }]);
  }
  return text;
}

/** SHA-256 (hex) of a text: the document digest and the rules file's content hash. */
export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
