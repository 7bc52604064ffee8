/**
 * Real nats-server processes, for the tests, the bench and scripts/regions.ts: one server process
 * (`NatsServer`: start, readiness, stop, kill -9, SIGSTOP/SIGCONT by PID, restart, recent log
 * lines) and a standalone JetStream server on free ports with a temp store dir
 * (`startSingleServer`). A supercluster of one server per region is in ./supercluster.ts.
 *
 * Servers still running when this process exits are killed, and temp dirs registered with
 * `tempRoot` removed, by an exit hook.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect, nkeyAuthenticator, type NatsConnection } from 'nats';
import type { NatsPorts } from '../regions/topology.ts';
import { freePorts } from './ports.ts';
import { waitFor } from './wait.ts';

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';

/** Why NATS_SERVER_BIN cannot be run (`--version` fails), or undefined when it can. */
export function natsServerProblem(): string | undefined {
  const r = spawnSync(NATS_SERVER_BIN, ['--version'], { encoding: 'utf8' });
  if (r.error) {
    return (r.error as NodeJS.ErrnoException).code === 'ENOENT'
      ? `nats-server not found (looked for "${NATS_SERVER_BIN}"${NATS_SERVER_BIN.includes('/') ? '' : ' on PATH'}). Install it: apt-get install nats-server (or set NATS_SERVER_BIN)`
      : `cannot run ${NATS_SERVER_BIN}: ${r.error.message}`;
  }
  if (r.status !== 0) return `${NATS_SERVER_BIN} --version failed (exit ${r.status}): ${r.stderr || r.stdout}`;
  return undefined;
}

export interface ServerHandle {
  name: string;
  /** Client URL, e.g. nats://127.0.0.1:41234. */
  url: string;
  /** Current process id (changes on restart). */
  readonly pid: number;
  /** Monitoring base URL, e.g. http://127.0.0.1:41235. */
  monitorUrl: string;
  storeDir: string;
  /** Graceful stop (SIGTERM, SIGKILL after 5 s). Keeps the store dir. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit. Keeps the store dir. */
  kill9(): Promise<void>;
  /** Freezes the process (no exit; peers see a silent server). */
  sigstop(): void;
  sigcont(): void;
  /** Starts the process again (same config, ports and store dir) and waits until JetStream is ready. */
  restart(opts?: { readyTimeoutMs?: number }): Promise<void>;
  /** Whether the process is running (it may be SIGSTOPped). */
  readonly running: boolean;
  /** The server's recent log lines (stderr/stdout), for failure messages. */
  logs(): string;
}

/** What a caller sees of a server's processes. */
export interface NatsServerHooks {
  /** Every start (also restarts) of the server's process, right after the spawn. */
  onSpawn?(server: NatsServer, proc: ChildProcess): void;
  /** Every output line (stdout and stderr). */
  onLine?(server: NatsServer, line: string): void;
}

export interface NatsServerOptions extends NatsServerHooks {
  /** Run in its own process group (a terminal's Ctrl-C then reaches only the parent). */
  detached?: boolean;
  /** Added to the server's environment (e.g. the `$LIMITER_NKEY_*` its config references). */
  env?: Record<string, string>;
  /** Nkey seed the readiness check connects with (a server that requires credentials). */
  clientSeed?: string;
  /** TLS files the readiness check connects with (a server that requires TLS). */
  clientTls?: { caFile: string; certFile?: string; keyFile?: string };
}

const live = new Set<ChildProcess>();
const liveDirs = new Set<string>();
process.once('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh temp dir, removed by the exit hook unless `removeTempRoot` removed it before. */
export async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(os.tmpdir(), 'limiter-nats-'));
  liveDirs.add(root);
  return root;
}

export async function removeTempRoot(root: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
  liveDirs.delete(root);
}

interface JszMeta {
  meta_cluster?: { name?: string; leader?: string; cluster_size?: number; replicas?: Array<{ current: boolean; offline?: boolean }> };
}

async function fetchJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/** The JetStream meta leader's server name as the server at `monitorUrl` sees it. */
export async function metaLeaderSeenBy(monitorUrl: string): Promise<string | undefined> {
  return ((await fetchJson(`${monitorUrl}/jsz`)) as JszMeta).meta_cluster?.leader;
}

/**
 * JetStream is ready on a server when it knows a meta leader, the meta group has `size` peers
 * all current (as the leader sees them), /healthz says ok and a JetStream API call through a
 * client succeeds.
 */
export async function jetStreamReady(h: { url: string; monitorUrl: string; clientSeed?: string; clientTls?: NatsServerOptions['clientTls'] }, size: number): Promise<boolean> {
  const jsz = (await fetchJson(`${h.monitorUrl}/jsz`)) as JszMeta;
  const meta = jsz.meta_cluster;
  if (size > 1) {
    if (!meta?.leader || meta.cluster_size !== size) return false;
    // Only the leader lists the other peers; it must see them all current.
    const replicas = meta.replicas;
    if (replicas && (replicas.length !== size - 1 || replicas.some((r) => !r.current || r.offline))) return false;
  }
  const health = await fetch(`${h.monitorUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
  if (!health.ok) return false;
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: h.url, timeout: 1000, reconnect: false, ...(h.clientSeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(h.clientSeed)) } : {}), ...(h.clientTls ? { tls: { ...h.clientTls } } : {}) });
    const jsm = await nc.jetstreamManager({ timeout: 1000 });
    await jsm.getAccountInfo();
    return true;
  } finally {
    await nc?.close().catch(() => {});
  }
}

/** One nats-server process: `NATS_SERVER_BIN ...args`, started by `spawn()`. */
export class NatsServer implements ServerHandle {
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private logLines: string[] = [];
  private stopped = false;
  /** How many servers the JetStream meta group should have (restart waits for them). */
  clusterSize = 1;

  constructor(
    readonly name: string,
    readonly ports: NatsPorts,
    readonly url: string,
    readonly monitorUrl: string,
    readonly storeDir: string,
    private readonly args: string[],
    private readonly opts: NatsServerOptions = {},
  ) {}

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  logs(): string {
    return `--- ${this.name} log (last ${this.logLines.length} lines) ---\n${this.logLines.join('\n')}`;
  }

  private log(line: string): void {
    this.logLines.push(line);
    if (this.logLines.length > 200) this.logLines.shift();
  }

  spawn(): void {
    if (this.running) throw new Error(`${this.name}: already running (pid ${this.pid})`);
    const p = spawn(NATS_SERVER_BIN, this.args, { stdio: ['ignore', 'pipe', 'pipe'], detached: this.opts.detached ?? false, env: { ...process.env, ...this.opts.env } });
    this.proc = p;
    live.add(p);
    const onLine = (line: string) => {
      if (!line) return;
      this.log(line);
      this.opts.onLine?.(this, line);
    };
    createInterface({ input: p.stdout! }).on('line', onLine);
    createInterface({ input: p.stderr! }).on('line', onLine);
    this.exited = new Promise<void>((resolve) => {
      p.once('exit', (code, signal) => {
        live.delete(p);
        this.log(`[process exited: code=${code} signal=${signal}]`);
        resolve();
      });
    });
    p.once('error', (err) => this.log(`[spawn error: ${err.message}]`));
    this.opts.onSpawn?.(this, p);
  }

  /** Waits until JetStream is ready with `size` servers in the meta group. */
  async waitReady(size: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await waitFor(`JetStream ready on ${this.name} (${this.url})`, async () => {
      if (!this.running) throw new Error(`${this.name} is not running`);
      return jetStreamReady({ url: this.url, monitorUrl: this.monitorUrl, clientSeed: this.opts.clientSeed, clientTls: this.opts.clientTls }, size);
    }, { timeoutMs, intervalMs: 100, describe: () => this.logs(), signal });
  }

  sigstop(): void {
    if (this.proc?.pid) process.kill(this.proc.pid, 'SIGSTOP');
  }

  sigcont(): void {
    if (this.proc?.pid) process.kill(this.proc.pid, 'SIGCONT');
  }

  async kill9(): Promise<void> {
    if (!this.running) return;
    this.proc!.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.sigcont();
    this.proc!.kill('SIGTERM');
    const t = setTimeout(() => this.proc?.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }

  async restart(opts: { readyTimeoutMs?: number } = {}): Promise<void> {
    if (this.stopped) throw new Error(`${this.name}: cluster already stopped`);
    this.spawn();
    await this.waitReady(this.clusterSize, opts.readyTimeoutMs ?? 20_000);
  }

  /** No restart after this (the owner stopped everything). */
  markStopped(): void {
    this.stopped = true;
  }
}

/** Starts one standalone JetStream server (no cluster) on free ports with a temp store dir. */
export async function startSingleServer(
  opts: {
    readyTimeoutMs?: number;
    /** Require TLS (and client certificates signed by `caFile`): the server's files and the readiness check's. */
    tls?: { cert: string; key: string; caFile: string; clientCert: string; clientKey: string };
  } = {},
): Promise<ServerHandle & { stopAll(): Promise<void> }> {
  const root = await tempRoot();
  const storeDir = join(root, 'jetstream');
  const [clientPort, monitorPort] = (await freePorts(2)) as [number, number];
  const s = new NatsServer(
    'single',
    { clientPort, clusterPort: 0, gatewayPort: 0, monitorPort },
    `nats://127.0.0.1:${clientPort}`,
    `http://127.0.0.1:${monitorPort}`,
    storeDir,
    [
      ...['-a', '127.0.0.1', '-p', String(clientPort), '-m', String(monitorPort), '-js', '-sd', storeDir, '-n', 'single'],
      ...(opts.tls ? ['--tlsverify', '--tlscert', opts.tls.cert, '--tlskey', opts.tls.key, '--tlscacert', opts.tls.caFile] : []),
    ],
    opts.tls ? { clientTls: { caFile: opts.tls.caFile, certFile: opts.tls.clientCert, keyFile: opts.tls.clientKey } } : {},
  );
  const stopAll = async () => {
    s.markStopped();
    await s.stop();
    await removeTempRoot(root);
  };
  try {
    s.spawn();
    await s.waitReady(1, opts.readyTimeoutMs ?? 20_000);
  } catch (err) {
    await stopAll();
    throw err;
  }
  return Object.assign(s, { stopAll });
}
