/**
 * Real nats-server processes for integration tests: a supercluster of one server per region
 * (configs rendered by regions/topology.ts, so the tests run the generated layout), or a single
 * standalone JetStream server. Every server gets free ports and a fresh temp store dir; `stop*`
 * removes them. Servers still running when the test process exits are killed by an exit hook.
 *
 * With `gatewayProxies`, each region's gateway port sits behind a TCP proxy
 * (test/helpers/tcp-proxy.ts): the other regions dial the proxy and the region advertises it,
 * so gossip spreads only proxy addresses. The proxy labels each connection with the dialling
 * region (the `gateway` field of its CONNECT line), so `region.cut()` silences a region in both
 * directions: everything into its proxy, and its own connections into the others' proxies.
 * Both directions matter: a JetStream source that is already flowing keeps pushing over the
 * origin's outbound connection when only the other direction is cut. `region.heal()` restores.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import {
  renderRegionNatsConfig,
  topologyFromNames,
  type NatsConfigOptions,
  type NatsPorts,
  type RegionAddress,
} from '../../regions/topology.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';
export const DEFAULT_REGIONS = ['us-east', 'eu-west', 'ap-south'] as const;

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

export interface RegionServer extends ServerHandle {
  ports: NatsPorts;
  /**
   * Cuts every gateway link to and from this region (needs `gatewayProxies`): `blackhole`
   * (default) silently drops traffic, `reset` kills connections and refuses new ones.
   */
  cut(mode?: 'blackhole' | 'reset'): void;
  /** Restores every gateway link to and from this region. */
  heal(): void;
}

export interface Supercluster {
  regions: RegionServer[];
  region(name: string): RegionServer;
  /** The proxy in front of `region`'s gateway port (needs `gatewayProxies`). */
  gatewayProxy(region: string): TcpProxy;
  /** Stops every server and proxy and removes the temp dirs. Safe to call twice. */
  stopAll(): Promise<void>;
  /** Server name of the JetStream meta leader as the first reachable running server sees it. */
  metaLeader(): Promise<string | undefined>;
  /** Waits until every running server reports JetStream ready with all regions in the meta group. */
  waitReady(timeoutMs?: number): Promise<void>;
}

export interface SuperclusterOptions {
  /** Region names (default us-east, eu-west, ap-south). */
  regions?: readonly string[];
  /** Put a TCP proxy in front of every region's gateway port (see `RegionServer.cut`). */
  gatewayProxies?: boolean;
  /** Server ping_interval, e.g. "2s" (default: the server's 2m, as the generated configs). */
  pingInterval?: string;
  readyTimeoutMs?: number;
}

/**
 * Labels a gateway connection with the dialling region: the `gateway` field of the CONNECT
 * line the dialler sends first (after the acceptor's INFO).
 */
export function gatewayPeer(head: Buffer): string | null | undefined {
  const eol = head.indexOf('\r\n');
  if (eol < 0) return undefined;
  const line = head.subarray(0, eol).toString('utf8');
  if (!line.startsWith('CONNECT ')) return null;
  try {
    const gw = (JSON.parse(line.slice(8)) as { gateway?: unknown }).gateway;
    return typeof gw === 'string' ? gw : null;
  } catch {
    return null;
  }
}

/**
 * Free TCP ports for servers the tests start. They are drawn at random below the kernel's
 * ephemeral range (32768–60999 here), each checked by binding it, and never handed out twice
 * by this process: a port from the ephemeral range (what binding port 0 gives) can be taken by
 * any outgoing connection between the check and the server's own bind.
 */
const handedOut = new Set<number>();
const PORT_MIN = 20_000;
const PORT_MAX = 32_000;

export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let attempts = 0; out.length < n; attempts++) {
    if (attempts > 10_000) throw new Error(`no ${n} free ports between ${PORT_MIN} and ${PORT_MAX}`);
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if (handedOut.has(port)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (!ok) continue;
    handedOut.add(port);
    out.push(port);
  }
  return out;
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

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; throws with the last error and `describe()` on timeout. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: { timeoutMs?: number; intervalMs?: number; describe?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const extra = opts.describe ? `\n${opts.describe()}` : '';
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message ?? last}` : ''}${extra}`);
    }
    await delay(opts.intervalMs ?? 50);
  }
}

interface JszMeta {
  meta_cluster?: { name?: string; leader?: string; cluster_size?: number; replicas?: Array<{ current: boolean; offline?: boolean }> };
}

async function fetchJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/**
 * JetStream is ready on a server when it knows a meta leader, the meta group has `size` peers
 * all current, /healthz says ok and a JetStream API call through a client succeeds.
 */
async function jetStreamReady(h: ServerHandle, size: number): Promise<boolean> {
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
    nc = await connect({ servers: h.url, timeout: 1000, reconnect: false });
    const jsm = await nc.jetstreamManager({ timeout: 1000 });
    await jsm.getAccountInfo();
    return true;
  } finally {
    await nc?.close();
  }
}

class Server implements RegionServer {
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private logLines: string[] = [];
  private stopped = false;
  constructor(
    readonly name: string,
    readonly ports: NatsPorts,
    readonly url: string,
    readonly monitorUrl: string,
    readonly storeDir: string,
    private readonly args: string[],
    /** Gateway proxies of every region, by region name (empty without `gatewayProxies`). */
    private readonly proxies: ReadonlyMap<string, TcpProxy> = new Map(),
  ) {}

  cut(mode: 'blackhole' | 'reset' = 'blackhole'): void {
    const own = this.proxies.get(this.name);
    if (!own) throw new Error(`${this.name}: start the supercluster with gatewayProxies to cut regions`);
    own.setMode({ kind: mode });
    for (const [name, p] of this.proxies) if (name !== this.name) p.setMode({ kind: mode }, this.name);
  }

  heal(): void {
    const own = this.proxies.get(this.name);
    if (!own) return;
    own.pass();
    for (const [name, p] of this.proxies) if (name !== this.name) p.clearLabel(this.name);
  }

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  logs(): string {
    return `--- ${this.name} log (last ${this.logLines.length} lines) ---\n${this.logLines.join('\n')}`;
  }

  spawn(): void {
    if (this.running) throw new Error(`${this.name}: already running (pid ${this.pid})`);
    const p = spawn(NATS_SERVER_BIN, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    live.add(p);
    const onData = (buf: Buffer) => {
      for (const line of buf.toString('utf8').split('\n')) {
        if (!line) continue;
        this.logLines.push(line);
        if (this.logLines.length > 200) this.logLines.shift();
      }
    };
    p.stdout!.on('data', onData);
    p.stderr!.on('data', onData);
    this.exited = new Promise<void>((resolve) => {
      p.once('exit', (code, signal) => {
        live.delete(p);
        this.logLines.push(`[process exited: code=${code} signal=${signal}]`);
        resolve();
      });
    });
    p.once('error', (err) => this.logLines.push(`[spawn error: ${err.message}]`));
  }

  async waitReady(size: number, timeoutMs: number): Promise<void> {
    await waitFor(`JetStream ready on ${this.name} (${this.url})`, async () => {
      if (!this.running) throw new Error(`${this.name} is not running`);
      return jetStreamReady(this, size);
    }, { timeoutMs, intervalMs: 100, describe: () => this.logs() });
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

  /** Set by the owner: how many servers the meta group should have. */
  clusterSize = 1;

  async restart(opts: { readyTimeoutMs?: number } = {}): Promise<void> {
    if (this.stopped) throw new Error(`${this.name}: cluster already stopped`);
    this.spawn();
    await this.waitReady(this.clusterSize, opts.readyTimeoutMs ?? 20_000);
  }

  markStopped(): void {
    this.stopped = true;
  }
}

/**
 * Starts one nats-server per region, joined by gateways into a supercluster, and waits until
 * JetStream is ready everywhere (meta leader elected, every region in the meta group).
 */
export async function startSupercluster(opts: SuperclusterOptions = {}): Promise<Supercluster> {
  const names = [...(opts.regions ?? DEFAULT_REGIONS)];
  const topology = topologyFromNames(names);
  const root = await mkdtemp(join(os.tmpdir(), 'limiter-nats-'));
  liveDirs.add(root);
  const servers: Server[] = [];
  const proxies: TcpProxy[] = [];
  let stopped = false;
  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    for (const s of servers) s.markStopped();
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(proxies.map((p) => p.close()));
    await rm(root, { recursive: true, force: true });
    liveDirs.delete(root);
  };
  try {
    const ports = await freePorts(names.length * 4);
    const addresses: Record<string, RegionAddress> = {};
    const regionPorts = new Map<string, NatsPorts>();
    names.forEach((name, i) => {
      const [clientPort, clusterPort, gatewayPort, monitorPort] = ports.slice(i * 4, i * 4 + 4) as [number, number, number, number];
      const p = { clientPort, clusterPort, gatewayPort, monitorPort };
      regionPorts.set(name, p);
      addresses[name] = { ports: p, host: '127.0.0.1' };
    });
    const proxyOf = new Map<string, TcpProxy>();
    if (opts.gatewayProxies) {
      for (const name of names) {
        const proxy = await startTcpProxy({ target: { port: regionPorts.get(name)!.gatewayPort }, label: gatewayPeer });
        proxies.push(proxy);
        proxyOf.set(name, proxy);
        addresses[name]!.gatewayUrl = `nats://${proxy.address}`;
      }
    }
    const cfgOpts: NatsConfigOptions = {
      listenHost: '127.0.0.1',
      routeHost: '127.0.0.1',
      addresses,
      pingInterval: opts.pingInterval,
      header: false,
    };
    for (const name of names) {
      const dir = join(root, name);
      const storeDir = join(dir, 'jetstream');
      await mkdir(storeDir, { recursive: true });
      const conf = join(dir, 'nats.conf');
      await writeFile(conf, renderRegionNatsConfig(topology, name, { ...cfgOpts, storeDir }));
      const p = regionPorts.get(name)!;
      const s = new Server(
        name,
        p,
        `nats://127.0.0.1:${p.clientPort}`,
        `http://127.0.0.1:${p.monitorPort}`,
        storeDir,
        ['-c', conf],
        proxyOf,
      );
      s.clusterSize = names.length;
      servers.push(s);
    }
    for (const s of servers) s.spawn();
    const sc: Supercluster = {
      regions: servers,
      region(name: string) {
        const s = servers.find((x) => x.name === name);
        if (!s) throw new Error(`no region ${name}`);
        return s;
      },
      gatewayProxy(region: string) {
        const p = proxyOf.get(region);
        if (!p) throw new Error(`no gateway proxy for ${region} (start with gatewayProxies)`);
        return p;
      },
      stopAll,
      async metaLeader() {
        for (const s of servers.filter((x) => x.running)) {
          try {
            return ((await fetchJson(`${s.monitorUrl}/jsz`)) as JszMeta).meta_cluster?.leader;
          } catch {
            /* try the next one */
          }
        }
        return undefined;
      },
      async waitReady(timeoutMs = 30_000) {
        await Promise.all(servers.filter((s) => s.running).map((s) => s.waitReady(names.length, timeoutMs)));
      },
    };
    await sc.waitReady(opts.readyTimeoutMs ?? 30_000);
    return sc;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Starts one standalone JetStream server (no cluster) on free ports with a temp store dir. */
export async function startSingleServer(opts: { readyTimeoutMs?: number } = {}): Promise<ServerHandle & { stopAll(): Promise<void> }> {
  const root = await mkdtemp(join(os.tmpdir(), 'limiter-nats-'));
  liveDirs.add(root);
  const storeDir = join(root, 'jetstream');
  const [clientPort, monitorPort] = (await freePorts(2)) as [number, number];
  const s = new Server(
    'single',
    { clientPort, clusterPort: 0, gatewayPort: 0, monitorPort },
    `nats://127.0.0.1:${clientPort}`,
    `http://127.0.0.1:${monitorPort}`,
    storeDir,
    ['-a', '127.0.0.1', '-p', String(clientPort), '-m', String(monitorPort), '-js', '-sd', storeDir, '-n', 'single'],
  );
  const stopAll = async () => {
    s.markStopped();
    await s.stop();
    await rm(root, { recursive: true, force: true });
    liveDirs.delete(root);
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
