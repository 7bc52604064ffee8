/** docs/ERRORS.md must document every error code with the status src/http/errors.ts answers. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode } from '../../src/engine/errors.ts';
import { HTTP_STATUS } from '../../src/http/errors.ts';

const doc = readFileSync(fileURLToPath(new URL('../../docs/ERRORS.md', import.meta.url)), 'utf8');

/** Rows of the table: | `CODE` | status | meaning | */
const rows = new Map<string, { status: number; meaning: string }>();
for (const line of doc.split('\n')) {
  const m = /^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(\d{3})\s*\|\s*(.*?)\s*\|\s*$/.exec(line);
  if (m) rows.set(m[1], { status: Number(m[2]), meaning: m[3] });
}
const codes = Object.keys(ERROR_CODES) as ErrorCode[];

describe('docs/ERRORS.md', () => {
  it.each(codes)('documents %s with its HTTP status and a meaning', (code) => {
    const row = rows.get(code);
    expect(row, `${code} is missing from docs/ERRORS.md`).toBeDefined();
    expect(row!.status).toBe(HTTP_STATUS[code]);
    expect(row!.meaning.length).toBeGreaterThan(10);
  });

  it('documents no code that does not exist', () => {
    expect([...rows.keys()].filter((c) => !(c in ERROR_CODES))).toEqual([]);
  });

  it('maps every code to an HTTP error status', () => {
    for (const code of codes) expect(HTTP_STATUS[code]).toBeGreaterThanOrEqual(400);
    expect(Object.keys(HTTP_STATUS).sort()).toEqual([...codes].sort());
  });
});
