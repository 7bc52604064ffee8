/**
 * A real Prometheus server (Debian's `prometheus`, or PROMETHEUS_BIN) scraping limiter nodes,
 * for the tests and `npm run regions -- --prometheus`: the scrape config (rendered here only),
 * the process on a free port with a temp TSDB, and queries through its HTTP API.
 *
 * Every target carries `node` and `region` target labels, so a query can group by region.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePorts } from './ports.ts';
import { waitFor } from './wait.ts';

export const PROMETHEUS_BIN = process.env.PROMETHEUS_BIN ?? 'prometheus';

export interface ScrapeTarget {
  /** The node's /metrics URL, e.g. http://127.0.0.1:3101/metrics. */
  metricsUrl: string;
  node: string;
  region: string;
}

export interface PrometheusConfigOptions {
  /** Scrape interval (default "1s": tests and the local dashboard want fresh points). */
  scrapeInterval?: string;
  /** Bearer token sent with every scrape (nodes whose /metrics needs one). */
  bearerToken?: string;
  /** Rule files (alerting rules), paths as Prometheus should read them. */
  ruleFiles?: string[];
}

/** prometheus.yml scraping every target (job "regionlimit"), with node and region labels. */
export function renderPrometheusConfig(targets: readonly ScrapeTarget[], opts: PrometheusConfigOptions = {}): string {
  const interval = opts.scrapeInterval ?? '1s';
  const groups = new Map<string, { scheme: string; path: string; targets: ScrapeTarget[] }>();
  for (const t of targets) {
    const u = new URL(t.metricsUrl);
    const k = `${u.protocol}${u.pathname}`;
    const g = groups.get(k) ?? { scheme: u.protocol.replace(':', ''), path: u.pathname, targets: [] };
    g.targets.push(t);
    groups.set(k, g);
  }
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval },
    ...(opts.ruleFiles && opts.ruleFiles.length > 0 ? { rule_files: opts.ruleFiles } : {}),
    scrape_configs: [...groups.values()].map((g, i) => ({
      job_name: groups.size === 1 ? 'regionlimit' : `regionlimit-${i + 1}`,
      scheme: g.scheme,
      metrics_path: g.path,
      // regionlimit_node_info carries node and region itself: the same values, kept as they are.
      honor_labels: true,
      ...(opts.bearerToken ? { authorization: { type: 'Bearer', credentials: opts.bearerToken } } : {}),
      static_configs: g.targets.map((t) => ({ targets: [new URL(t.metricsUrl).host], labels: { node: t.node, region: t.region } })),
    })),
  };
  return stringify(config);
}

/** Why PROMETHEUS_BIN cannot be run, or undefined when it can. */
export function prometheusProblem(): string | undefined {
  const r = spawnSync(PROMETHEUS_BIN, ['--version'], { encoding: 'utf8' });
  if (r.error) return `cannot run ${PROMETHEUS_BIN}: ${r.error.message}. Install it: apt-get install prometheus (or set PROMETHEUS_BIN)`;
  if (r.status !== 0) return `${PROMETHEUS_BIN} --version failed (exit ${r.status})`;
  return undefined;
}

/** One sample of an instant query: its labels and value. */
export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export interface PrometheusServer {
  readonly url: string;
  readonly proc: ChildProcess;
  /** The last log lines (for failure messages). */
  logs(): string;
  /** An instant query (PromQL) through GET /api/v1/query. */
  query(promql: string): Promise<PromSample[]>;
  /** Every metric name Prometheus holds (GET /api/v1/label/__name__/values). */
  metricNames(): Promise<string[]>;
  /** The loaded rule groups (GET /api/v1/rules). */
  rules(): Promise<Array<{ name: string; rules: Array<{ name: string; health: string; lastError?: string }> }>>;
  /** Stops the server and removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartPrometheusOptions extends PrometheusConfigOptions {
  targets: readonly ScrapeTarget[];
  /** Listen port (default: a free one). */
  port?: number;
  /** Directory for the config and TSDB, left in place (default: a temp dir removed by stop). */
  dir?: string;
  /** Extra files written next to the config (name → contents), e.g. alerting rules. */
  files?: Record<string, string>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** Starts Prometheus scraping `targets` and waits until it answers /-/ready. */
export async function startPrometheus(o: StartPrometheusOptions): Promise<PrometheusServer> {
  const problem = prometheusProblem();
  if (problem) throw new Error(problem);
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'limiter-prometheus-'));
  for (const [name, text] of Object.entries(o.files ?? {})) writeFileSync(join(dir, name), text);
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, renderPrometheusConfig(o.targets, o));
  const port = o.port ?? (await freePorts(1))[0];
  const proc = spawn(
    PROMETHEUS_BIN,
    [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--storage.tsdb.retention.time=1d', '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(proc);
  const lines: string[] = [];
  const keep = (b: Buffer) => {
    for (const l of b.toString().split('\n')) if (l !== '') lines.push(l);
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  proc.once('exit', () => live.delete(proc));
  const url = `http://127.0.0.1:${port}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    if (o.dir === undefined) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      'Prometheus ready',
      async () => {
        if (proc.exitCode !== null) throw new Error(`prometheus exited with ${proc.exitCode}`);
        const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) });
        return res.status === 200;
      },
      { timeoutMs: 30_000, describe: () => lines.slice(-20).join('\n') },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    proc,
    logs: () => lines.join('\n'),
    stop,
    async metricNames(): Promise<string[]> {
      const res = await fetch(`${url}/api/v1/label/__name__/values`, { signal: AbortSignal.timeout(5000) });
      return ((await res.json()) as { data: string[] }).data;
    },
    async rules() {
      const res = await fetch(`${url}/api/v1/rules`, { signal: AbortSignal.timeout(5000) });
      return ((await res.json()) as { data: { groups: Array<{ name: string; rules: Array<{ name: string; health: string; lastError?: string }> }> } }).data.groups;
    },
    async query(promql: string): Promise<PromSample[]> {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5000) });
      const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
      if (body.status !== 'success' || body.data === undefined) throw new Error(`query ${promql}: ${body.error ?? res.status}`);
      if (body.data.resultType !== 'vector') throw new Error(`query ${promql}: a ${body.data.resultType}, not a vector`);
      return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
  };
}
