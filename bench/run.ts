/**
 * `npm run bench` — the benchmark suite: our figures side by side with the peers', measured in
 * one run (machines are noisy: only ratios within one run mean something), each ratio next to
 * its target with PASS/MISS. See docs/PERFORMANCE.md.
 *
 *   npm run bench                          every section, tables on stdout
 *   npm run -s bench -- --json             one JSON document on stdout instead of tables (-s: no npm banner)
 *   npm run bench -- --json-file FILE      tables on stdout and the JSON document in FILE
 *   npm run bench -- --only decide,http    some sections (ids: see --help)
 *   npm run bench -- --quick               short smoke run (figures not representative)
 *   npm run bench -- --profile DIR         CPU profiles of the child processes into DIR
 *   npm run bench -- --strict              exit 1 when a target is missed
 *
 * Progress goes to stderr. Exit status: 0, or 1 when a section failed (or, with --strict, a target was missed).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backgroundCores, cpuMark } from './lib/cpu.ts';
import { NOISY_CORES, formatText, machine, toJson, type SectionOutcome } from './lib/report.ts';
import type { BenchContext } from './lib/types.ts';
import { SECTIONS } from './sections/index.ts';
import { sleep } from '../support/wait.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function usage(): string {
  return [
    'usage: npm run -s bench -- [--json | --json-file FILE] [--quick] [--only <id,...>] [--profile DIR] [--strict]',
    '',
    'sections:',
    ...SECTIONS.map((s) => `  ${s.id.padEnd(10)} ${s.title} (~${s.estimateS.full} s, quick ~${s.estimateS.quick} s)`),
  ].join('\n');
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: process.argv.slice(2),
      options: {
        json: { type: 'boolean', default: false },
        'json-file': { type: 'string' },
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        profile: { type: 'string' },
        strict: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${usage()}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  let selected = SECTIONS;
  if (args.only !== undefined) {
    const ids = args.only.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = ids.filter((id) => !SECTIONS.some((s) => s.id === id));
    if (unknown.length > 0 || ids.length === 0) {
      process.stderr.write(`unknown section(s): ${unknown.join(', ') || '(none given)'}\n${usage()}\n`);
      return 2;
    }
    selected = SECTIONS.filter((s) => ids.includes(s.id));
  }
  const profileDir = args.profile ? resolve(args.profile) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });

  const started = Date.now();
  const ctx: BenchContext = {
    quick: args.quick,
    root,
    profileDir,
    log: (m) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${m}\n`),
  };
  const est = selected.reduce((a, s) => a + (args.quick ? s.estimateS.quick : s.estimateS.full), 0);
  ctx.log(`sections: ${selected.map((s) => s.id).join(', ')} (about ${est} s)${args.quick ? ', quick smoke run' : ''}`);

  // How busy is the machine before we start? (Another process on a 2-core machine skews everything.)
  const idle0 = cpuMark();
  await sleep(1000);
  const before = backgroundCores(idle0);
  ctx.log(`other processes keep ${before.toFixed(2)} cores busy${before > NOISY_CORES ? ' — the machine is not quiet: figures will be skewed' : ''}`);

  const outcomes: SectionOutcome[] = [];
  for (const section of selected) {
    const t0 = performance.now();
    const m0 = cpuMark();
    try {
      const result = await section.run(ctx);
      outcomes.push({ section, result, seconds: (performance.now() - t0) / 1000, backgroundCores: backgroundCores(m0) });
    } catch (err) {
      ctx.log(`${section.id} failed: ${(err as Error)?.stack ?? String(err)}`);
      outcomes.push({ section, error: (err as Error)?.message ?? String(err), seconds: (performance.now() - t0) / 1000, backgroundCores: backgroundCores(m0) });
    }
  }
  const durationS = (Date.now() - started) / 1000;
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const doc = toJson(outcomes, { command, quick: args.quick, startedAt: new Date(started).toISOString(), durationS: Math.round(durationS), backgroundCoresBefore: Math.round(before * 100) / 100 });
  if (args['json-file']) writeFileSync(args['json-file'], `${JSON.stringify(doc, null, 2)}\n`);
  if (args.json) {
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } else {
    const m = machine();
    const header = [
      `regionlimit benchmarks — ${new Date(started).toISOString()}${args.quick ? ' — QUICK SMOKE RUN (not representative)' : ''}`,
      `machine: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, Node ${m.node}, ${m.platform}`,
      `command: ${command}; total ${durationS.toFixed(0)} s; other processes before the run: ${before.toFixed(2)} cores busy`,
    ].join('\n');
    process.stdout.write(`${formatText(outcomes, header)}\n`);
  }
  const failed = outcomes.some((o) => o.error);
  const missed = outcomes.some((o) => o.result?.checks.some((c) => c.pass === false));
  return failed || (args.strict && missed) ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
