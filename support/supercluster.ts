/**
 * A supercluster of real nats-servers, one per region, joined by gateways (configs rendered by
 * regions/topology.ts, so tests, bench and `npm run regions` all run the generated layout).
 * Tests and the bench take free ports and a temp dir (removed by `stopAll`); scripts/regions.ts
 * passes its topology, fixed ports, its own data dir and process hooks.
 *
 * With `gatewayProxies`, each region's gateway port sits behind a TCP proxy (./tcp-proxy.ts):
 * the other regions dial the proxy and the region advertises it, so gossip spreads only proxy
 * addresses. The proxy labels each connection with the dialling region (the `gateway` field of
 * its CONNECT line), so `region.cut()` silences a region in both directions: everything into its
 * proxy, and its own connections into the others' proxies. Both directions matter: a JetStream
 * source that is already flowing keeps pushing over the origin's outbound connection when only
 * the other direction is cut. `region.heal()` restores.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  renderRegionNatsConfig,
  topologyFromNames,
  type NatsConfigOptions,
  type NatsPorts,
  type RegionAddress,
  type Topology,
} from '../regions/topology.ts';
import { ADMIN_USER, generateCredentials, serverEnv, writeCredentials, type Credential } from '../regions/auth.ts';
import { nkeyAuthenticator, type ConnectionOptions } from 'nats';
import { DEFAULT_MAX_AGE_MS, provisionDeployment } from '../src/replication/jetstream/index.ts';
import { NatsServer, metaLeaderSeenBy, removeTempRoot, tempRoot, type NatsServerOptions, type ServerHandle } from './nats-server.ts';
import { freePorts } from './ports.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

export const DEFAULT_REGIONS = ['us-east', 'eu-west', 'ap-south'] as const;

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
  /** Stops every server and proxy and removes the temp dir. Safe to call twice. */
  stopAll(): Promise<void>;
  /** Server name of the JetStream meta leader as the first reachable running server sees it. */
  metaLeader(): Promise<string | undefined>;
  /** Waits until every running server reports JetStream ready with all regions in the meta group. */
  waitReady(timeoutMs?: number, signal?: AbortSignal): Promise<void>;
  /** The NATS users when the servers require credentials (`nodes` or `credentials` given). */
  readonly credentials: ReadonlyMap<string, Credential> | undefined;
  /** Directory of the users' seed files (`<user>.nk`, regions/auth.ts `seedFile`); undefined without credentials. */
  readonly secretsDir: string | undefined;
  /** Connection options of an admin client (`{}` when the servers take anonymous clients). */
  adminOptions(): Pick<ConnectionOptions, 'authenticator'>;
  /** Creates every stream as the admin user (done by the start when credentials are used and `ready` is not false). */
  provision(): Promise<void>;
}

export interface SuperclusterOptions extends NatsServerOptions {
  /** Region names (default us-east, eu-west, ap-south); ignored with `topology`. */
  regions?: readonly string[];
  /**
   * The limiter nodes that will connect: the servers then require credentials, every node gets
   * its own NATS user with the generated permissions (seed files in `secretsDir`), and the
   * streams are provisioned by the admin user. Regions default to the nodes' regions.
   */
  nodes?: ReadonlyArray<{ id: string; region: string }>;
  /** The topology to render the configs from (default: `regions` with default settings). */
  topology?: Topology;
  /** Ports of every region's server (default: free ports, see ./ports.ts). */
  ports?: Readonly<Record<string, NatsPorts>>;
  /** Directory for configs and stores, kept by `stopAll` (default: a temp dir it removes). */
  root?: string;
  /** Put a TCP proxy in front of every region's gateway port (see `RegionServer.cut`). */
  gatewayProxies?: boolean;
  /** Server ping_interval, e.g. "2s" (default: the server's 2m, as the generated configs). */
  pingInterval?: string;
  /**
   * NATS users of the deployment (regions/auth.ts `generateCredentials` over the topology's
   * node ids): the servers then require them and give each node its permissions. Without it,
   * the servers accept anonymous clients with every permission.
   */
  credentials?: ReadonlyMap<string, Credential>;
  /** Wait until JetStream is ready before returning (default true; else call `waitReady`). */
  ready?: boolean;
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

class RegionNatsServer extends NatsServer implements RegionServer {
  /** Gateway proxies of every region, by region name (empty without `gatewayProxies`). */
  proxies: ReadonlyMap<string, TcpProxy> = new Map();

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
}

/**
 * Starts one nats-server per region, joined by gateways into a supercluster, and (unless
 * `ready: false`) waits until JetStream is ready everywhere (meta leader elected, every region
 * in the meta group).
 */
export async function startSupercluster(opts: SuperclusterOptions = {}): Promise<Supercluster> {
  const topology = opts.topology ?? topologyFromNames([...(opts.regions ?? (opts.nodes ? new Set(opts.nodes.map((n) => n.region)) : DEFAULT_REGIONS))], opts.nodes);
  const names = topology.regions.map((r) => r.name);
  const root = opts.root ?? (await tempRoot());
  const credentials = opts.credentials ?? (opts.nodes ? generateCredentials(topology.regions.flatMap((r) => r.nodes.map((n) => n.id))) : undefined);
  const secretsDir = credentials ? join(root, 'secrets') : undefined;
  if (credentials) writeCredentials(secretsDir!, credentials);
  const servers: RegionNatsServer[] = [];
  const proxies: TcpProxy[] = [];
  let stopped = false;
  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    for (const s of servers) s.markStopped();
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(proxies.map((p) => p.close()));
    if (!opts.root) await removeTempRoot(root);
  };
  try {
    const regionPorts = new Map<string, NatsPorts>();
    if (opts.ports) {
      for (const name of names) {
        const p = opts.ports[name];
        if (!p) throw new Error(`no ports given for region ${name}`);
        regionPorts.set(name, p);
      }
    } else {
      const ports = await freePorts(names.length * 4);
      names.forEach((name, i) => {
        const [clientPort, clusterPort, gatewayPort, monitorPort] = ports.slice(i * 4, i * 4 + 4) as [number, number, number, number];
        regionPorts.set(name, { clientPort, clusterPort, gatewayPort, monitorPort });
      });
    }
    const addresses: Record<string, RegionAddress> = Object.fromEntries(names.map((name) => [name, { ports: regionPorts.get(name)!, host: '127.0.0.1' }]));
    const proxyOf = new Map<string, TcpProxy>();
    if (opts.gatewayProxies) {
      for (const [i, name] of names.entries()) {
        // Each proxy its own jitter draws (see TcpProxy.delay), repeatable from run to run.
        const proxy = await startTcpProxy({ target: { port: regionPorts.get(name)!.gatewayPort }, label: gatewayPeer, seed: i + 1 });
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
      auth: credentials !== undefined,
    };
    for (const name of names) {
      const dir = join(root, name);
      const storeDir = join(dir, 'jetstream');
      await mkdir(storeDir, { recursive: true });
      const conf = join(dir, 'nats.conf');
      await writeFile(conf, renderRegionNatsConfig(topology, name, { ...cfgOpts, storeDir }));
      const p = regionPorts.get(name)!;
      const s = new RegionNatsServer(
        name,
        p,
        `nats://127.0.0.1:${p.clientPort}`,
        `http://127.0.0.1:${p.monitorPort}`,
        storeDir,
        ['-c', conf],
        { detached: opts.detached, onSpawn: opts.onSpawn, onLine: opts.onLine, env: credentials ? serverEnv(credentials) : undefined, clientSeed: credentials?.get(ADMIN_USER)?.seed },
      );
      s.proxies = proxyOf;
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
            return await metaLeaderSeenBy(s.monitorUrl);
          } catch {
            /* try the next one */
          }
        }
        return undefined;
      },
      async waitReady(timeoutMs = 30_000, signal?: AbortSignal) {
        await Promise.all(servers.filter((s) => s.running).map((s) => s.waitReady(names.length, timeoutMs, signal)));
      },
      credentials,
      secretsDir,
      adminOptions() {
        const seed = credentials?.get(ADMIN_USER)?.seed;
        return seed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) } : {};
      },
      async provision() {
        await provisionDeployment({ servers: servers[0]!.url, regions: names, nkeySeed: credentials?.get(ADMIN_USER)?.seed, maxAgeMs: DEFAULT_MAX_AGE_MS });
      },
    };
    if (opts.ready !== false) {
      await sc.waitReady(opts.readyTimeoutMs ?? 30_000);
      if (credentials) await sc.provision();
    }
    return sc;
  } catch (err) {
    await stopAll();
    throw err;
  }
}
