/**
 * A clean install prints no EBADENGINE warning: every package in package-lock.json accepts the
 * Node running the tests and the oldest Node the project declares (package.json engines).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/examples.ts';

const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } | string[] }> };
const declared = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;

describe('engines', () => {
  it('every locked package accepts this Node and the oldest declared one', () => {
    const oldest = semver.minVersion(declared)!.version;
    const refused: string[] = [];
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = !Array.isArray(p.engines) ? p.engines?.node : undefined;
      if (range === undefined || path === '') continue;
      for (const v of [process.version, oldest]) if (!semver.satisfies(v, range)) refused.push(`${path} wants node ${range}, not ${v}`);
    }
    expect(refused).toEqual([]);
  });
});
