/**
 * Query parameters of GET /v1/check and GET /v1/usage: `key`, `cost` and `m.<name>` metadata,
 * checked with the same codes as the body routes (query strings are strings, so by hand).
 */
import { inputError } from './errors.ts';
import { checkKey, checkMetadataBytes, parseQueryCost, type InputLimits, type InputProblem } from './schemas.ts';

function refuse(p: InputProblem): never {
  throw inputError(p.code, p.message, p.path);
}

/** Parses `key`, `cost` and `m.<name>` query parameters with the same codes as the body routes. */
export function parseCheckQuery(
  q: Record<string, string | string[] | undefined>,
  limits: InputLimits,
  allowCost: boolean,
  defaultKey?: string,
): { key: string; cost: number; metadata?: Record<string, string> } {
  let key: unknown;
  let costRaw: unknown;
  let metadata: Record<string, string> | undefined;
  let entries = 0;
  for (const name in q) {
    const v = q[name];
    if (name === 'key') key = v;
    else if (name === 'cost' && allowCost) costRaw = v;
    else if (name.startsWith('m.')) {
      const mdName = name.slice(2);
      const path = `/metadata/${mdName.replace(/~/g, '~0').replace(/\//g, '~1')}`;
      if (typeof v !== 'string') throw inputError('METADATA_INVALID', `metadata ${mdName} must be given once`, path);
      if (mdName.length === 0) throw inputError('METADATA_INVALID', 'metadata names must not be empty', path);
      if (++entries > limits.maxMetadataEntries) {
        throw inputError('METADATA_TOO_MANY', `metadata must have at most ${limits.maxMetadataEntries} entries`, '/metadata');
      }
      metadata ??= Object.create(null) as Record<string, string>;
      metadata[mdName] = v;
    } else {
      throw inputError('UNKNOWN_FIELD', `unknown query parameter "${name}"`, `/${name}`);
    }
  }
  if (key === undefined) key = defaultKey;
  const kp = checkKey(key, limits, '/key');
  if (kp !== null) refuse(kp);
  if (metadata !== undefined) {
    const mp = checkMetadataBytes(metadata, limits, '/metadata');
    if (mp !== null) refuse(mp);
  }
  const cost = parseQueryCost(costRaw, limits);
  if (typeof cost !== 'number') refuse(cost);
  return metadata === undefined ? { key: key as string, cost } : { key: key as string, cost, metadata };
}
