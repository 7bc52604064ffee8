/**
 * Turn a JSON result of `npm run bench -- --json-file FILE` into the Markdown tables of
 * docs/PERFORMANCE.md (so the document shows the figures of one actual run, unedited).
 *
 *   npx tsx bench/markdown.ts FILE > tables.md
 */
import { readFileSync } from 'node:fs';
import { formatDetail, formatFigureValue, verdict } from './lib/report.ts';
import { ratio, round } from './lib/format.ts';
import type { Check, Figure } from './lib/types.ts';

interface Doc {
  command: string;
  startedAt: string;
  durationS: number;
  quick: boolean;
  backgroundCoresBefore: number;
  machine: { cpus: number; cpuModel: string; memGiB: number; node: string; platform: string };
  sections: Record<string, { title: string; seconds: number; backgroundCores: number; error?: string; figures: Figure[]; checks: (Check & { result: string })[] }>;
  summary: { pass: number; miss: number; info: number };
}

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: tsx bench/markdown.ts RESULT.json\n');
  process.exit(2);
}
const doc = JSON.parse(readFileSync(file, 'utf8')) as Doc;
const esc = (s: string) => s.replace(/\|/g, '\\|');

function measured(c: Check): string {
  if (c.unit === '×') return ratio(c.measured);
  if (c.unit === 'ms') return `${c.measured >= 0 ? '+' : ''}${c.measured.toFixed(2)} ms`;
  return `${round(c.measured, 2)} ${c.unit}`;
}

function target(c: Check): string {
  if (!c.target) return '—';
  const op = c.target.op === '>=' ? '≥' : '≤';
  if (c.unit === '×') return `${op} ${c.target.value.toFixed(1)}×`;
  if (c.unit === 'ms') return `${op} +${c.target.value} ms`;
  return `${op} ${c.target.value} ${c.unit}`;
}

const out: string[] = [];
out.push(`Run of \`${doc.command}\` started ${doc.startedAt}, ${doc.durationS} s${doc.quick ? ' (QUICK: not representative)' : ''}; ${doc.machine.cpus} × ${doc.machine.cpuModel}, ${doc.machine.memGiB} GiB, Node ${doc.machine.node}, ${doc.machine.platform}; other processes kept ${doc.backgroundCoresBefore} cores busy before the run.`, '');
out.push('| section | comparison | ours | peer / reference | measured | target | result |', '|---|---|---:|---:|---:|---|---|');
for (const [id, s] of Object.entries(doc.sections)) {
  for (const c of s.checks) out.push(`| ${id} | ${esc(c.label)} | ${esc(c.ours)} | ${esc(c.peer) || '—'} | ${measured(c)} | ${target(c)} | ${c.result === 'PASS' || c.result === 'MISS' ? `**${c.result}**` : verdict(c)} |`);
}
out.push('', `Summary: ${doc.summary.pass} PASS, ${doc.summary.miss} MISS, ${doc.summary.info} informational.`, '');
for (const [id, s] of Object.entries(doc.sections)) {
  out.push(`#### ${id}: ${s.title}`, '', `${round(s.seconds, 0)} s; other processes kept ${s.backgroundCores} cores busy on average during the section.`, '');
  if (s.error) {
    out.push(`**Failed:** ${esc(s.error)}`, '');
    continue;
  }
  out.push('| figure | value | detail |', '|---|---:|---|');
  for (const f of s.figures) out.push(`| ${esc(f.label)} | ${formatFigureValue(f)} | ${esc(formatDetail(f))} |`);
  out.push('');
}
process.stdout.write(out.join('\n'));
