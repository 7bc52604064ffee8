/**
 * docs/alerts.yml: `promtool check rules` accepts it, and `promtool test rules` runs the cases
 * in test/fixtures/alerts.test.yml (alerts fire on the series they are about, with their
 * labels and annotations, and stay quiet below their thresholds).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = resolve(import.meta.dirname, '..', '..');
const ALERTS = join(root, 'docs', 'alerts.yml');
const PROMTOOL = process.env.PROMTOOL_BIN ?? 'promtool';
const dir = mkdtempSync(join(tmpdir(), 'limiter-alerts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function promtool(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run ${PROMTOOL}: ${r.error.message} (apt-get install prometheus)`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('docs/alerts.yml', () => {
  it('passes promtool check rules', () => {
    const r = promtool('check', 'rules', ALERTS);
    const rules = (parse(readFileSync(ALERTS, 'utf8')) as { groups: Array<{ rules: unknown[] }> }).groups.flatMap((g) => g.rules);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
  });

  it('fires its alerts as the promtool unit tests expect', () => {
    const cases = join(dir, 'alerts.test.yml');
    writeFileSync(cases, readFileSync(join(root, 'test', 'fixtures', 'alerts.test.yml'), 'utf8').replace('ALERTS_FILE', ALERTS));
    const r = promtool('test', 'rules', cases);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  });

  it('is refused by promtool when a rule is broken (the check is real)', () => {
    const broken = join(dir, 'broken.yml');
    writeFileSync(broken, readFileSync(ALERTS, 'utf8').replace('expr: regionlimit_ready == 0', 'expr: regionlimit_ready ==='));
    expect(promtool('check', 'rules', broken).status).not.toBe(0);
  });
});
