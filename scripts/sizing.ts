/**
 * `npm run sizing -- --bench FILE [--checks-per-s N] [--regions N] [--keys N] [--utilization F]`:
 * the nodes, memory, CPU and NATS bandwidth for a stated volume, computed from a bench JSON
 * (`npm run bench -- --json-file FILE`, sections http, memory and replication), so the
 * estimate follows the measurements. Defaults: 1 000 000 checks/s across 3 regions, 10 000 000
 * live keys, nodes loaded to 60 % of a core.
 *
 * The model (docs/OPERATIONS.md, "Sizing"): a node is one Node.js process, one core for its
 * event loop; its CPU per check is the server CPU per request the bench measured for single
 * checks over HTTP (batched checks cost less). Every node holds every live key (replication
 * brings every region's keys), so memory does not shrink with more nodes. Every admission is
 * at most one key update shipped (coalescing only lowers it); every node reads every other
 * node's updates, and each region's aggregate stream takes every other region's.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export interface Volume {
  checksPerS: number;
  regions: number;
  liveKeys: number;
  /** Share of a core a node is planned to use (0–1). */
  utilization: number;
}

export interface Inputs {
  cpuUsPerCheck: number;
  bytesPerKey: number;
  bytesPerUpdate: number;
  source: string;
}

export interface Estimate {
  nodesPerRegion: number;
  nodesTotal: number;
  cpuCoresTotal: number;
  memoryPerNodeGiB: number;
  natsIngressPerRegionMBps: number;
  gatewayEgressPerRegionMBps: number;
  natsReadPerNodeMBps: number;
}

interface BenchJson {
  quick?: boolean;
  startedAt?: string;
  sections: Record<string, { figures?: Array<{ id: string; value: number; detail?: Record<string, number> }>; checks?: Array<{ id: string; measured?: number; value?: number }> }>;
}

/** Node.js process baseline besides the keys (heap, code, buffers), bytes. */
const PROCESS_BASE_BYTES = 150 * 1024 * 1024;
/** Headroom on memory for GC and bursts of new keys. */
const MEMORY_HEADROOM = 1.5;

function need<T>(v: T | undefined, what: string, section: string): T {
  if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) throw new Error(`the bench JSON has no ${what}: run npm run bench -- --only ${section} --json-file FILE`);
  return v;
}

/** The figures the estimate needs, from a bench JSON. */
export function inputsFrom(bench: BenchJson, source: string): Inputs {
  const fig = (section: string, id: string) => bench.sections[section]?.figures?.find((f) => f.id === id);
  const chk = (section: string, id: string) => {
    const c = bench.sections[section]?.checks?.find((x) => x.id === id);
    return c?.measured ?? c?.value;
  };
  return {
    cpuUsPerCheck: need(fig('http', 'http.ours.check')?.detail?.serverCpuUsPerReq, 'server CPU per check (http.ours.check)', 'http'),
    bytesPerKey: need(chk('memory', 'memory.perKey') ?? fig('memory', 'memory.perKey')?.value, 'memory per live key (memory.perKey)', 'memory'),
    bytesPerUpdate: need(chk('replication', 'replication.ship.bytes'), 'bytes per key update (replication.ship.bytes)', 'replication'),
    source: `${source}${bench.quick ? ' (a --quick run: not representative)' : ''}${bench.startedAt ? `, ${bench.startedAt}` : ''}`,
  };
}

export function estimate(v: Volume, i: Inputs): Estimate {
  const perRegion = v.checksPerS / v.regions;
  const coresPerRegion = (perRegion * i.cpuUsPerCheck) / 1e6;
  const nodesPerRegion = Math.max(2, Math.ceil(coresPerRegion / v.utilization)); // at least 2: one can restart
  const nodesTotal = nodesPerRegion * v.regions;
  const updatesPerRegion = perRegion; // upper bound: every check an admission, none coalesced
  const mb = 1e6;
  return {
    nodesPerRegion,
    nodesTotal,
    cpuCoresTotal: Math.round(((v.checksPerS * i.cpuUsPerCheck) / 1e6) * 10) / 10,
    memoryPerNodeGiB: Math.round(((v.liveKeys * i.bytesPerKey * MEMORY_HEADROOM + PROCESS_BASE_BYTES) / 2 ** 30) * 10) / 10,
    natsIngressPerRegionMBps: Math.round(((updatesPerRegion * i.bytesPerUpdate) / mb) * 10) / 10,
    gatewayEgressPerRegionMBps: Math.round(((updatesPerRegion * i.bytesPerUpdate * (v.regions - 1)) / mb) * 10) / 10,
    natsReadPerNodeMBps: Math.round(((v.checksPerS * i.bytesPerUpdate) / mb) * 10) / 10,
  };
}

export function table(v: Volume, i: Inputs, e: Estimate): string {
  const rows: Array<[string, string, string]> = [
    ['nodes per region', String(e.nodesPerRegion), `${Math.round(v.checksPerS / v.regions)} checks/s × ${i.cpuUsPerCheck} µs CPU per check ÷ ${v.utilization} of a core (at least 2)`],
    ['nodes in all', String(e.nodesTotal), `${v.regions} regions`],
    ['CPU, all nodes', `${e.cpuCoresTotal} cores`, 'busy cores at the stated volume (single checks over HTTP; batches cost less)'],
    ['memory per node', `${e.memoryPerNodeGiB} GiB`, `${v.liveKeys} live keys × ${i.bytesPerKey} B × ${MEMORY_HEADROOM} headroom + 150 MiB process; every node holds every key; set --max-keys ≥ ${v.liveKeys}`],
    ['NATS ingress per region', `${e.natsIngressPerRegionMBps} MB/s`, `its nodes' key updates × ${i.bytesPerUpdate} B (upper bound: every check an admission, none coalesced)`],
    ['gateway egress per region', `${e.gatewayEgressPerRegionMBps} MB/s`, `its stream sourced by ${v.regions - 1} other regions`],
    ['NATS read per node', `${e.natsReadPerNodeMBps} MB/s`, 'every node reads every update of every region'],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  return [
    `Sizing for ${v.checksPerS} checks/s across ${v.regions} regions, ${v.liveKeys} live keys`,
    `from ${i.source}`,
    '',
    ...rows.map((r) => `${r[0].padEnd(w0)}  ${r[1].padStart(w1)}  ${r[2]}`),
    '',
  ].join('\n');
}

function main(): void {
  const { values } = parseArgs({
    options: {
      bench: { type: 'string' },
      'checks-per-s': { type: 'string', default: '1000000' },
      regions: { type: 'string', default: '3' },
      keys: { type: 'string', default: '10000000' },
      utilization: { type: 'string', default: '0.6' },
    },
  });
  if (values.bench === undefined) {
    process.stderr.write('usage: npm run sizing -- --bench FILE [--checks-per-s N] [--regions N] [--keys N] [--utilization F]\n(FILE: npm run bench -- --only http,memory,replication --json-file FILE)\n');
    process.exit(2);
  }
  const num = (name: string, text: string, min: number, max: number) => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min || n > max) {
      process.stderr.write(`sizing: --${name} must be a number between ${min} and ${max}, not "${text}"\n`);
      process.exit(2);
    }
    return n;
  };
  const v: Volume = {
    checksPerS: num('checks-per-s', values['checks-per-s'], 1, 1e12),
    regions: num('regions', values.regions, 1, 1000),
    liveKeys: num('keys', values.keys, 0, 1e12),
    utilization: num('utilization', values.utilization, 0.01, 1),
  };
  let inputs: Inputs;
  try {
    inputs = inputsFrom(JSON.parse(readFileSync(values.bench, 'utf8')) as BenchJson, values.bench);
  } catch (err) {
    process.stderr.write(`sizing: ${(err as Error).message}\n`);
    process.exit(1);
  }
  process.stdout.write(table(v, inputs, estimate(v, inputs)));
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) main();
