/**
 * Interleaved autocannon rounds against servers in child processes (the `http` and
 * `replication` sections). The load of each target is split into rounds; in every round each
 * target runs once, back to back, in an order rotated each round, so drift on a noisy machine
 * hits every target alike. Figures are medians over rounds; comparisons are medians over rounds
 * of the per-round ratio of two targets. Server CPU time is read from /proc.
 */
import { readFileSync } from 'node:fs';
import type { Child } from './child.ts';
import { load, summarize, type LoadRun, type LoadSummary } from './load.ts';
import { max, median, min, percentileSorted } from '../../support/stats.ts';
import type { BenchContext, Figure } from './types.ts';

/** A server under load: a child process and its base URL. */
export interface LoadServer {
  child: Child;
  url: string;
}

export function assertClean(what: string, r: LoadSummary): void {
  const problems: string[] = [];
  if (r.errors > 0) problems.push(`${r.errors} errors`);
  if (r.timeouts > 0) problems.push(`${r.timeouts} timeouts`);
  if (r.non2xx > 0) problems.push(`${r.non2xx} non-2xx answers`);
  if (r.responses === 0) problems.push('no responses');
  if (problems.length > 0) throw new Error(`${what}: ${problems.join(', ')}`);
}

export const r3 = (n: number) => Math.round(n * 1000) / 1000;

/** Throughput and latency of one round of one target (one autocannon run). */
export interface RoundStat {
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

export function roundStat(run: LoadRun): RoundStat {
  const sorted = run.latencies.slice().sort();
  return { rps: run.responses / run.seconds, p50Ms: percentileSorted(sorted, 50), p99Ms: percentileSorted(sorted, 99) };
}

/** A target's figures: per-round (for paired comparisons) and pooled over all its rounds. */
export interface Measured {
  t: Target;
  rounds: RoundStat[];
  pooled: LoadSummary;
  /** Median over rounds. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Server CPU time per response, µs (insensitive to how busy the machine is). */
  cpuUsPerReq: number;
}

export function measured(what: string, t: Target): Measured {
  const pooled = summarize(t.runs);
  assertClean(what, pooled);
  const rounds = t.runs.map(roundStat);
  return {
    t,
    rounds,
    pooled,
    rps: median(rounds.map((r) => r.rps)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    cpuUsPerReq: (1e6 * t.serverCpuS) / pooled.responses,
  };
}

/** Median over rounds of a per-round comparison of two targets measured back to back in each round. */
export function paired(a: Measured, b: Measured, f: (x: RoundStat, y: RoundStat) => number): number {
  const n = Math.min(a.rounds.length, b.rounds.length);
  return median(Array.from({ length: n }, (_, i) => f(a.rounds[i], b.rounds[i])));
}

export function figure(id: string, label: string, m: Measured, unit = 'req/s', scale = 1): Figure {
  const r = m.pooled;
  const rps = m.rounds.map((x) => x.rps * scale);
  return {
    id,
    label,
    value: Math.round(m.rps * scale),
    unit,
    rounds: rps.map(Math.round),
    detail: {
      rounds: m.rounds.length,
      min: Math.round(min(rps)),
      max: Math.round(max(rps)),
      p50Ms: r3(r.p50Ms),
      p99Ms: r3(r.p99Ms),
      maxMs: r3(r.maxMs),
      responses: r.responses,
      // Share of one core used by the server and by autocannon: a server well below 100 % while
      // autocannon is near 100 % means the load generator, not the server, set the pace.
      serverCpuPct: Math.round((100 * m.t.serverCpuS) / r.seconds),
      loaderCpuPct: Math.round((100 * m.t.loaderCpuS) / r.seconds),
      serverCpuUsPerReq: Math.round(m.cpuUsPerReq * 10) / 10,
      ...(m.t.extraCpu ? { [`${m.t.extraCpu.name}CpuPct`]: Math.round((100 * m.t.extraCpu.seconds) / r.seconds) } : {}),
    },
  };
}

export interface Target {
  id: string;
  label: string;
  server: LoadServer;
  path: string;
  body: string;
  /** Bodies sent in turn instead of `body` (see LoadOptions.bodies). */
  bodies?: readonly string[];
  connections: number;
  runs: LoadRun[];
  /** CPU seconds used by the server process and by this (load generator) process during the runs. */
  serverCpuS: number;
  loaderCpuS: number;
  /** Other processes the target makes busy (e.g. nats-servers): their CPU during the runs, as `<name>CpuPct`. */
  extraCpu?: { name: string; pids: readonly number[]; seconds: number };
}

/** CPU seconds (user + system) a process has used, from /proc (Linux); NaN elsewhere. */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; clock ticks of 10 ms.
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function measure(t: Target, durationS: number): Promise<void> {
  const extra = () => (t.extraCpu ? t.extraCpu.pids.reduce((a, pid) => a + cpuSeconds(pid), 0) : 0);
  const s0 = cpuSeconds(t.server.child.proc.pid);
  const l0 = ownCpuSeconds();
  const e0 = extra();
  t.runs.push(await load({ url: `${t.server.url}${t.path}`, body: t.body, bodies: t.bodies, connections: t.connections, durationS }));
  t.serverCpuS += cpuSeconds(t.server.child.proc.pid) - s0;
  t.loaderCpuS += ownCpuSeconds() - l0;
  if (t.extraCpu) t.extraCpu.seconds += extra() - e0;
}

/** Round-robin rounds over the targets, rotating the order each round. */
export async function interleave(ctx: BenchContext, label: string, targets: Target[], rounds: number, roundS: number): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    ctx.log(`${label}: round ${r + 1}/${rounds} (${targets.length} targets × ${roundS} s)`);
    for (let i = 0; i < targets.length; i++) await measure(targets[(i + r) % targets.length], roundS);
  }
}
