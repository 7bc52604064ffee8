/** Plain-text tables for the terminal and the JSON document for machines. */
import { cpus, totalmem, release } from 'node:os';
import { ms, ratio, round, si } from './format.ts';
import type { Check, Figure, Section, SectionResult } from './types.ts';

export interface SectionOutcome {
  section: Section;
  result?: SectionResult;
  error?: string;
  seconds: number;
  /** Average cores other processes kept busy during the section. */
  backgroundCores: number;
}

/** Above this, other work on the machine compresses or skews the figures: said next to them. */
export const NOISY_CORES = 0.25;

function background(o: SectionOutcome): string {
  if (!Number.isFinite(o.backgroundCores)) return '';
  const b = o.backgroundCores.toFixed(2);
  return o.backgroundCores > NOISY_CORES ? `; WARNING: other processes kept ${b} cores busy, figures are skewed` : `; other processes: ${b} cores`;
}

export function machine() {
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model ?? 'unknown',
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${release()}`,
  };
}

function table(header: string[], rows: string[][], align: ('l' | 'r')[]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (align[i] === 'r' ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  return [line(header), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function formatFigureValue(f: Figure): string {
  if (f.unit === 'ms') return ms(f.value);
  if (f.unit.endsWith('/s')) return `${si(f.value)} ${f.unit}`;
  return `${round(f.value, 1)} ${f.unit}`;
}

export function formatDetail(f: Figure): string {
  if (!f.detail) return '';
  return Object.entries(f.detail)
    .map(([k, v]) => {
      if (k.endsWith('Ms')) return `${k.slice(0, -2)} ${ms(v)}`;
      if (k === 'min' || k === 'max') return `${k} ${si(v)}`;
      return `${k} ${Number.isInteger(v) ? v : round(v, 2)}`;
    })
    .join(', ');
}

function formatMeasured(c: Check): string {
  if (c.unit === '×') return ratio(c.measured);
  if (c.unit === 'ms') return `${c.measured >= 0 ? '+' : ''}${c.measured.toFixed(2)} ms`;
  return `${round(c.measured, 2)} ${c.unit}`;
}

function formatTarget(c: Check): string {
  if (!c.target) return '—';
  const op = c.target.op === '>=' ? '≥' : '≤';
  if (c.unit === '×') return `${op} ${c.target.value.toFixed(1)}×`;
  if (c.unit === 'ms') return `${op} +${c.target.value} ms`;
  return `${op} ${c.target.value} ${c.unit}`;
}

export function verdict(c: Check): string {
  return c.pass === undefined ? 'info' : c.pass ? 'PASS' : 'MISS';
}

export function formatText(outcomes: SectionOutcome[], header: string): string {
  const out: string[] = [header, ''];
  for (const o of outcomes) {
    out.push(`== ${o.section.id}: ${o.section.title} (${o.seconds.toFixed(0)} s${background(o)}) ==`);
    if (o.error) {
      out.push(`ERROR: ${o.error}`, '');
      continue;
    }
    const r = o.result!;
    out.push(
      table(
        ['figure', 'value', 'detail'],
        r.figures.map((f) => [f.label, formatFigureValue(f), formatDetail(f)]),
        ['l', 'r', 'l'],
      ),
      '',
    );
    if (r.checks.length > 0) {
      out.push(
        table(
          ['comparison', 'ours', 'peer / reference', 'measured', 'target', 'result'],
          r.checks.map((c) => [c.label, c.ours, c.peer, formatMeasured(c), formatTarget(c), verdict(c)]),
          ['l', 'r', 'r', 'r', 'l', 'l'],
        ),
        '',
      );
    }
    for (const n of r.notes) out.push(`  * ${n}`);
    out.push('');
  }
  const all = outcomes.flatMap((o) => o.result?.checks ?? []);
  const pass = all.filter((c) => c.pass === true).length;
  const miss = all.filter((c) => c.pass === false);
  const errors = outcomes.filter((o) => o.error);
  out.push(`Summary: ${pass} PASS, ${miss.length} MISS${errors.length ? `, ${errors.length} section(s) failed: ${errors.map((e) => e.section.id).join(', ')}` : ''}`);
  for (const m of miss) out.push(`  MISS ${m.id}: ${formatMeasured(m)} (target ${formatTarget(m)})`);
  return out.join('\n');
}

export function toJson(outcomes: SectionOutcome[], meta: Record<string, unknown>): unknown {
  const all = outcomes.flatMap((o) => o.result?.checks ?? []);
  return {
    tool: 'regionlimit-bench',
    schema: 1,
    ...meta,
    machine: machine(),
    sections: Object.fromEntries(
      outcomes.map((o) => [
        o.section.id,
        {
          title: o.section.title,
          seconds: round(o.seconds, 1),
          backgroundCores: round(o.backgroundCores, 2),
          ...(o.error ? { error: o.error } : {}),
          figures: o.result?.figures ?? [],
          checks: (o.result?.checks ?? []).map((c) => ({ ...c, measured: round(c.measured, 4), result: verdict(c) })),
          notes: o.result?.notes ?? [],
        },
      ]),
    ),
    summary: {
      pass: all.filter((c) => c.pass === true).length,
      miss: all.filter((c) => c.pass === false).length,
      info: all.filter((c) => c.pass === undefined).length,
      failedSections: outcomes.filter((o) => o.error).map((o) => o.section.id),
    },
  };
}
