/**
 * A simulated deployment for the replicator's logic: every node is a real Engine, Persistence
 * (over a MemoryStore) and Replicator, talking through one in-memory bus (src/replication/
 * memory-bus.ts) whose links can be cut, delayed and made to duplicate. No nats-server.
 */
import pino from 'pino';
import { Engine } from '../../src/engine/engine.ts';
import { validateRules } from '../../src/engine/rules.ts';
import type { Decision, RulesConfig } from '../../src/engine/types.ts';
import { MemoryBus, type MemoryBusOptions, type MemoryTransport } from '../../src/replication/memory-bus.ts';
import type { ModeOptions } from '../../src/replication/modes.ts';
import type { SharingOptions } from '../../src/replication/sharing.ts';
import { Replicator } from '../../src/replication/replicator.ts';
import { MemoryStore } from '../../src/storage/memory.ts';
import { Persistence } from '../../src/storage/persistence.ts';
import { RulesRegister } from '../../src/rules/register.ts';
import { startupRules } from '../../src/rules/startup.ts';

/** The simulated nodes' rules document (each node's rules file). */
export const SIM_RULES_DOCUMENT = {
  version: 1,
  rules: [
    { id: 'small', key: 's:*', limits: [{ limit: 10, window: '1h', algorithm: 'fixed-window' }] },
    { id: 'mid', key: 'm:*', limits: [{ limit: 100, window: '1h', algorithm: 'fixed-window' }] },
    { id: 'big', key: '*', limits: [{ limit: 1_000_000, window: '1h', algorithm: 'fixed-window' }] },
  ],
};
export const SIM_RULES: RulesConfig = validateRules(SIM_RULES_DOCUMENT);

export interface SimNode {
  id: string;
  region: string;
  engine: Engine;
  store: MemoryStore;
  persistence: Persistence;
  transport: MemoryTransport;
  replicator: Replicator;
  /** The node's rules register (src/rules/register.ts), replicated through the bus. */
  rules: RulesRegister;
  /** Decide one request now; true when admitted. */
  check(key: string, cost?: number): boolean;
  /** Decide one request now; the whole Decision. */
  decide(key: string, cost?: number): Decision;
  usage(key: string): number;
}

export interface SimOptions extends Partial<MemoryBusOptions> {
  /** Nodes per region, e.g. { a: 1, b: 2 }. */
  nodes: Record<string, number>;
  rules?: RulesConfig;
  heartbeatMs?: number;
  /** Shipper batching under load: linger (ms) and the utilisation that counts as busy (0: always). */
  lingerMs?: number;
  busyUtilization?: number;
  /** Distinct peers each node accepts (the replicator's default otherwise). */
  maxPeers?: number;
  /** When a node counts as degraded (src/replication/modes.ts). */
  modes?: ModeOptions;
  /** Near-limit sharing (src/replication/sharing.ts); false turns it off. */
  sharing?: SharingOptions | false;
  /** Rules anti-entropy beacon interval (ms, default 5000). */
  rulesBeaconMs?: number;
}

const silent = pino({ level: 'silent' });

export class Sim {
  readonly bus: MemoryBus;
  readonly nodes: SimNode[] = [];
  private readonly rules: RulesConfig;
  private readonly heartbeatMs: number;
  private readonly linger: { lingerMs?: number; busyUtilization?: number; maxPeers?: number; modes?: ModeOptions; sharing?: SharingOptions | false };
  private readonly rulesBeaconMs: number | undefined;

  constructor(opts: SimOptions) {
    this.bus = new MemoryBus({ ...opts, regions: Object.keys(opts.nodes) });
    this.rules = opts.rules ?? SIM_RULES;
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.rulesBeaconMs = opts.rulesBeaconMs;
    this.linger = { lingerMs: opts.lingerMs, busyUtilization: opts.busyUtilization, maxPeers: opts.maxPeers, modes: opts.modes, sharing: opts.sharing };
  }

  static async start(opts: SimOptions): Promise<Sim> {
    const sim = new Sim(opts);
    for (const [region, n] of Object.entries(opts.nodes)) {
      for (let i = 0; i < n; i++) await sim.add(region, `${region}-${i}`);
    }
    return sim;
  }

  /** Start a node (a fresh one, or one restarting on the store it had), its clock `clockOffsetMs` off. */
  async add(region: string, id: string, store = new MemoryStore(), clockOffsetMs = 0): Promise<SimNode> {
    const now = clockOffsetMs === 0 ? Date.now : () => Date.now() + clockOffsetMs;
    // Each node's rules file is SIM_RULES_DOCUMENT when the sim runs the default rules.
    const boot = await startupRules(store, { text: JSON.stringify(this.rules === SIM_RULES ? SIM_RULES_DOCUMENT : documentOf(this.rules)), file: 'sim rules' }, id, now(), silent);
    const engine = new Engine({ nodeId: id, rules: boot.config });
    const rules = new RulesRegister({ engine, store, nodeId: id, now, logger: silent, initial: boot.initial, document: boot.document, publishInitial: boot.publishInitial, beaconMs: this.rulesBeaconMs, minGapMs: this.rulesBeaconMs === undefined ? undefined : Math.min(1000, this.rulesBeaconMs) });
    const persistence = new Persistence({ engine, store, durability: 'batch', flushIntervalMs: 3_600_000, now });
    const restored = persistence.restore();
    const transport = this.bus.transport(region, id);
    const replicator = new Replicator({ engine, transport, positions: persistence, nodeId: id, now, logger: silent, heartbeatMs: this.heartbeatMs, ...this.linger, rules });
    if (restored.cells > 0) engine.shipAllOwn();
    await replicator.start(store.positions());
    rules.start(transport);
    const node: SimNode = {
      id,
      region,
      engine,
      store,
      persistence,
      transport,
      replicator,
      rules,
      check: (key, cost = 1) => engine.decide({ key, cost }, now()).allowed,
      decide: (key, cost = 1) => engine.decide({ key, cost }, now()),
      usage: (key) => engine.inspect(key, undefined, now()).limits[0]?.usage ?? 0,
    };
    this.nodes.push(node);
    return node;
  }

  node(id: string): SimNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Remove a node without shipping or writing anything more (a crash). */
  async crash(id: string): Promise<MemoryStore> {
    const n = this.node(id);
    this.nodes.splice(this.nodes.indexOf(n), 1);
    n.rules.stop();
    await n.transport.close();
    await n.replicator.stop(0);
    return n.store;
  }

  /** Every node's usage of `key`. */
  usages(key: string): number[] {
    return this.nodes.map((n) => n.usage(key));
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) {
      n.rules.stop();
      await n.replicator.stop(0);
    }
  }
}

/** The rules document a validated configuration was read from (the sim's rules files): the configuration less what validation derived. */
function documentOf(config: RulesConfig): object {
  return {
    version: 1,
    slotsPerWindow: config.slotsPerWindow,
    rules: config.rules.map((r) => {
      const { metadata, limits, ...rest } = r;
      return {
        ...rest,
        ...(Object.keys(metadata).length > 0 ? { metadata: Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, [...v]])) } : {}),
        limits: limits.map(({ windowMs: _derived, ...l }) => l),
      };
    }),
  };
}
