/**
 * How busy the machine is with other work: CPU time of the whole machine (/proc/stat) minus
 * the CPU time of this process and its reaped children (/proc/self/stat), over a period.
 * On a 2-core machine another busy process changes every figure, so each section reports it.
 * Linux only; elsewhere the readings are NaN.
 */
import { readFileSync } from 'node:fs';

const TICK_S = 0.01; // USER_HZ is 100 on Linux

export interface CpuMark {
  wallS: number;
  machineBusyS: number;
  ownS: number;
}

function machineBusyS(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + (steal ?? 0)) * TICK_S;
  } catch {
    return NaN;
  }
}

/** utime + stime + cutime + cstime of this process (children count once they have exited). */
function ownS(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_S;
  } catch {
    return NaN;
  }
}

export function cpuMark(): CpuMark {
  return { wallS: performance.now() / 1000, machineBusyS: machineBusyS(), ownS: ownS() };
}

/** Average number of cores other processes kept busy since `from`. */
export function backgroundCores(from: CpuMark, to: CpuMark = cpuMark()): number {
  const wall = to.wallS - from.wallS;
  if (!(wall > 0)) return NaN;
  return Math.max(0, (to.machineBusyS - from.machineBusyS - (to.ownS - from.ownS)) / wall);
}
