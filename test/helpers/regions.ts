/**
 * Multi-region limiter fleets for replication integration tests: real limiter processes
 * (src/main.ts, see support/node-process.ts) replicating through a real nats-server
 * supercluster (support/supercluster.ts), plus a load generator and polling helpers that read
 * the nodes' HTTP API (/v1/check, /v1/usage, /v1/status, /readyz).
 *
 * Every node gets its own temp data directory; `Fleet.stopAll()` kills the processes and removes
 * the directories. Processes still running when the test process exits are killed by an exit hook.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { seedFile } from '../../regions/auth.ts';
import { startNodeProcess, type NodeProcess } from '../../support/node-process.ts';
import type { Supercluster } from '../../support/supercluster.ts';
import { sleep, waitFor } from '../../support/wait.ts';

export const REGIONS = ['us-east', 'eu-west', 'ap-south'] as const;

const liveProcs = new Set<NodeProcess>();
const liveDirs = new Set<string>();
process.once('exit', () => {
  for (const p of liveProcs) {
    try {
      p.proc.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});

export { figure } from '../../support/figure.ts';

export interface NodeSpec {
  id: string;
  region: string;
  durability?: 'batch' | 'sync';
  /** Run alone, without NATS (a control node that no replication fault can touch). */
  standalone?: boolean;
}

/** One limiter process; keeps its data directory and arguments across restarts. */
export class LimiterNode {
  proc: NodeProcess | undefined;
  /** Every process this node has run (for logs on failure). */
  readonly lives: NodeProcess[] = [];
  constructor(
    readonly id: string,
    readonly region: string,
    readonly dataDir: string,
    private readonly argsFor: () => string[],
  ) {}

  get url(): string {
    if (!this.proc) throw new Error(`${this.id} is not running`);
    return this.proc.url;
  }

  get running(): boolean {
    const p = this.proc?.proc;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** Starts the process (same arguments, same data directory) and waits for "listening". */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.id} is already running`);
    const p = await startNodeProcess(this.argsFor());
    liveProcs.add(p);
    p.proc.once('exit', () => liveProcs.delete(p));
    this.proc = p;
    this.lives.push(p);
  }

  async kill9(): Promise<void> {
    await this.proc?.kill9();
  }

  /** Freezes the process (SIGSTOP): it answers nothing, ships nothing, until `sigcont`. */
  sigstop(): void {
    if (!this.running) throw new Error(`${this.id} is not running`);
    this.proc!.proc.kill('SIGSTOP');
  }

  sigcont(): void {
    this.proc?.proc.kill('SIGCONT');
  }

  async stop(): Promise<number | null | undefined> {
    return this.proc?.stop();
  }

  /** Removes the data directory (the node must not be running). */
  wipe(): void {
    if (this.running) throw new Error(`${this.id}: stop it before wiping its data directory`);
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  logs(lines = 40): string {
    const all = this.lives.flatMap((p, i) => [`--- ${this.id} life ${i + 1} ---`, ...p.logs]);
    return all.slice(-lines).join('\n');
  }
}

export interface FleetOptions {
  cluster: Supercluster;
  nodes: readonly NodeSpec[];
  /** Rules file contents (YAML). */
  rules: string;
  flushInterval?: string;
  logLevel?: string;
  /** More flags for every node (e.g. `--stale-after 1s`). */
  extraArgs?: readonly string[];
}

export class Fleet {
  readonly nodes: LimiterNode[] = [];
  private constructor(
    readonly root: string,
    readonly cluster: Supercluster,
  ) {}

  static async start(o: FleetOptions): Promise<Fleet> {
    const root = mkdtempSync(join(tmpdir(), 'limiter-regions-'));
    liveDirs.add(root);
    const fleet = new Fleet(root, o.cluster);
    const rules = join(root, 'rules.yaml');
    writeFileSync(rules, o.rules);
    const regions = [...new Set(o.cluster.regions.map((r) => r.name))].join(',');
    for (const spec of o.nodes) {
      const data = join(root, spec.id);
      const server = o.cluster.region(spec.region);
      const args = () => [
        '--node-id', spec.id,
        '--region', spec.region,
        ...(spec.standalone ? [] : ['--regions', regions, '--nats', server.url]),
        // A cluster started with its nodes requires credentials: each node its own user.
        ...(!spec.standalone && o.cluster.secretsDir ? ['--nats-nkey-file', seedFile(o.cluster.secretsDir, spec.id)] : []),
        '--rules', rules,
        '--data', data,
        '--flush-interval', o.flushInterval ?? '50ms',
        '--durability', spec.durability ?? 'batch',
        '--log-level', o.logLevel ?? 'info',
        ...(o.extraArgs ?? []),
      ];
      fleet.nodes.push(new LimiterNode(spec.id, spec.region, data, args));
    }
    try {
      await Promise.all(fleet.nodes.map((n) => n.start()));
    } catch (err) {
      await fleet.stopAll();
      throw err;
    }
    return fleet;
  }

  node(id: string): LimiterNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Logs of every node (for failure messages). */
  logs(lines = 30): string {
    return this.nodes.map((n) => n.logs(lines)).join('\n');
  }

  /** Kills every node and removes the data directories. Safe to call twice. */
  async stopAll(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.kill9()));
    rmSync(this.root, { recursive: true, force: true });
    liveDirs.delete(this.root);
  }
}

// ---- HTTP API ----

async function getJson<T>(url: string, timeoutMs = 2000): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: (await res.json()) as T };
}

export interface UsageBody {
  key: string;
  ruleId: string | null;
  limits: Array<{ policy: string; usage: number; limit: number }>;
}

/** The key's usage under the first limit of its rule, as `url` sees it now. */
export async function usage(url: string, key: string): Promise<number> {
  const { status, body } = await getJson<UsageBody>(`${url}/v1/usage?key=${encodeURIComponent(key)}`);
  if (status !== 200) throw new Error(`GET /v1/usage at ${url}: HTTP ${status}`);
  return body.limits[0]?.usage ?? 0;
}

export interface PeerStatus {
  node: string;
  messages: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lastHeardAt: number;
}

export interface StatusBody {
  node: string;
  region: string;
  replication: {
    connected: boolean;
    caughtUp: boolean;
    shipping: { messages: number; cells: number; publishErrors: number; requeued: number; heartbeats: number; priority: number; inFlight: number };
    applied: number;
    ownReplayed: number;
    messages: number;
    refused: number;
    peers: PeerStatus[];
    degradation: { degraded: boolean; since: number | null; reason: string | null; stalePeers: string[]; shares: Record<string, number> };
    streams: Record<string, { lastSeq: number; lastAt: number | null; pending: number | null }>;
  };
  overshoot: Array<{ ruleId: string; limit: number; bound: number; model: number; observed: number; nodes: number; ratesPerSecond: Record<string, number>; lagMs: Record<string, number> }>;
  persistence: { flushes: number; rowsWritten: number; failures: number; retryRows: number; droppedRows: number };
  storage: { state: 'ok' | 'degraded'; writable: boolean; fault: StorageFaultBody | null; startup: StorageFaultBody | null };
}

export interface StorageFaultBody {
  code: string;
  message: string;
  atMs: number;
  movedAside?: string[];
}

export async function status(url: string): Promise<StatusBody> {
  return (await getJson<StatusBody>(`${url}/v1/status`)).body;
}

export interface ReadyBody {
  ready: boolean;
  degraded: boolean;
  reasons: string[];
}

export async function readyz(url: string): Promise<{ status: number; body: ReadyBody }> {
  return getJson<ReadyBody>(`${url}/readyz`);
}

/**
 * Polls every node's usage of `key` until all report `expected`; returns the time
 * (performance.now()) at which the poll round that saw agreement had its answers.
 */
/** Wait until every node reports the same usage of `key`; resolves with it. */
export async function waitAgreed(nodes: readonly LimiterNode[], key: string, opts: { timeoutMs?: number } = {}): Promise<number> {
  let last: (number | string)[] = [];
  return waitFor(
    `every node to agree on the usage of ${key}`,
    async () => {
      last = await Promise.all(nodes.map((n) => usage(n.url, key).catch((e: Error) => `error: ${e.message}`)));
      return typeof last[0] === 'number' && last.every((u) => u === last[0]) ? (last[0] as number) + 1 : undefined;
    },
    { timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 20, describe: () => `last seen: ${JSON.stringify(last)}` },
  ).then((v) => v - 1);
}

export async function waitConverged(
  nodes: readonly LimiterNode[],
  key: string,
  expected: number,
  opts: { timeoutMs?: number; intervalMs?: number; slowMs?: number; onSlow?: (seen: Record<string, number | string>) => Promise<void> } = {},
): Promise<number> {
  let last: Record<string, number | string> = {};
  const t0 = performance.now();
  let reported = false;
  return waitFor(
    `every node to report usage ${expected} of ${key}`,
    async () => {
      const seen = await Promise.all(nodes.map((n) => usage(n.url, key).catch((e: Error) => `error: ${e.message}`)));
      const at = performance.now();
      last = Object.fromEntries(nodes.map((n, i) => [n.id, seen[i]!]));
      if (seen.every((u) => u === expected)) return at;
      if (opts.onSlow && !reported && at - t0 > (opts.slowMs ?? 1000)) {
        reported = true;
        await opts.onSlow(last);
      }
      return undefined;
    },
    {
      timeoutMs: opts.timeoutMs ?? 30_000,
      intervalMs: opts.intervalMs ?? 20,
      describe: () => `last seen: ${JSON.stringify(last)}\n${nodes.map((n) => n.logs(15)).join('\n')}`,
    },
  );
}

// ---- load ----

export interface Outcome {
  node: string;
  key: string;
  /** HTTP status, or 0 when the request failed (connection refused or reset). */
  status: number;
  start: number;
  end: number;
}

/** Requests sent to one node by the load generator; can be paused (in-flight requests finish). */
export class Target {
  inflight = 0;
  paused = false;
  private resumeWaiters: Array<() => void> = [];
  constructor(
    readonly node: LimiterNode,
    readonly key: string,
  ) {}

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    for (const r of this.resumeWaiters.splice(0)) r();
  }

  waitResumed(stop: Promise<void>): Promise<void> {
    if (!this.paused) return Promise.resolve();
    return Promise.race([new Promise<void>((r) => this.resumeWaiters.push(r)), stop]);
  }

  /** Pauses and resolves once no request to this node is in flight. */
  async quiesce(): Promise<void> {
    this.pause();
    await waitFor(`in-flight requests to ${this.node.id} to finish`, () => this.inflight === 0, { intervalMs: 1, timeoutMs: 10_000 });
  }
}

export interface Load {
  outcomes: Outcome[];
  /** Resolves when every loop has ended on its own (`maxPerTarget` reached) or after stop(). */
  finished: Promise<Outcome[]>;
  /** Stops issuing requests and resolves when every in-flight one has finished. */
  stop(): Promise<Outcome[]>;
  admitted(filter?: (o: Outcome) => boolean): number;
}

// node:http with keep-alive: about twice the request rate of fetch from one test process.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** POST /v1/check {key, cost: 1}; resolves with the HTTP status, rejects on a network error. */
export function postCheck(url: string, key: string, timeoutMs = 5000): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const body = JSON.stringify({ key, cost: 1 });
    const req = http.request(
      `${url}/v1/check`,
      { method: 'POST', agent, timeout: timeoutMs, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.on('error', reject);
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`POST ${url}/v1/check timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Runs `concurrency` request loops per target until stopped: POST /v1/check {key} with cost 1.
 * `paceMs` waits between a loop's requests (0: back to back). A failed request is recorded with
 * status 0 and its loop backs off 20 ms.
 */
export function startLoad(targets: readonly Target[], opts: { concurrency?: number; paceMs?: number; maxPerTarget?: number } = {}): Load {
  const outcomes: Outcome[] = [];
  let stopping = false;
  let signal!: () => void;
  const stopped = new Promise<void>((r) => (signal = r));
  const sent = new Map<Target, number>();
  const loop = async (t: Target) => {
    while (!stopping) {
      await t.waitResumed(stopped);
      if (stopping) break;
      const n = sent.get(t) ?? 0;
      if (opts.maxPerTarget !== undefined && n >= opts.maxPerTarget) break;
      sent.set(t, n + 1);
      const start = performance.now();
      t.inflight++;
      let code = 0;
      try {
        code = await postCheck(t.node.url, t.key);
      } catch {
        code = 0;
      } finally {
        t.inflight--;
      }
      outcomes.push({ node: t.node.id, key: t.key, status: code, start, end: performance.now() });
      if (code === 0) await Promise.race([sleep(20), stopped]);
      else if (opts.paceMs) await Promise.race([sleep(opts.paceMs), stopped]);
    }
  };
  const loops = targets.flatMap((t) => Array.from({ length: opts.concurrency ?? 1 }, () => loop(t)));
  const all = Promise.all(loops);
  return {
    outcomes,
    finished: all.then(() => outcomes),
    async stop() {
      stopping = true;
      signal();
      await all;
      return outcomes;
    },
    admitted(filter = () => true) {
      return outcomes.filter((o) => o.status === 200 && filter(o)).length;
    },
  };
}

/** One limiter node per region of REGIONS: the layout of the degradation-mode tests. */
export const ONE_NODE_PER_REGION: readonly NodeSpec[] = REGIONS.map((region) => ({ id: `${region}-1`, region }));

/**
 * Rules of the degradation-mode tests: `sh:*` (share, the default), `op:*` (open) and `cl:*`
 * (closed), `ns:*` (share, without near-limit sharing), each `limit` per hour, and an unlimited
 * catch-all. A sliding window by default: an hour of it keeps every admission of a test inside
 * it, where a fixed window resets on the hour, which a test running across it would see as lost
 * counts.
 */
export function modeRules(limit: number, algorithm: 'fixed-window' | 'sliding-window' = 'sliding-window'): string {
  const limits = `limits: [{ limit: ${limit}, window: 1h, algorithm: ${algorithm} }]`;
  return [
    'version: 1',
    'rules:',
    `  - { id: shared, key: "sh:*", ${limits} }`,
    `  - { id: open, key: "op:*", degraded: open, ${limits} }`,
    `  - { id: closed, key: "cl:*", degraded: closed, ${limits} }`,
    `  - { id: nosharing, key: "ns:*", nearLimitSharing: false, ${limits} }`,
    '  - { id: other, key: "*", limits: [{ limit: 1000000000, window: 1h }] }',
    '',
  ].join('\n');
}
