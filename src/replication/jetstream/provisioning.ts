/**
 * Streams and consumers: their configurations, and creating, adopting, fixing or recreating
 * them. Stream layout (names in ../subjects.ts, reasoning in CONSISTENCY.md):
 *
 * - `LIMITER_R` (R1, file storage, placed in cluster R) takes `limiter.d.R.>`, the subjects of
 *   region R's nodes;
 * - `LIMITER_R_AGG` (placed in cluster R, no subjects) sources every other region's stream;
 * - node N reads both through durable push consumers named `node-N`, each delivering to its own
 *   subject (see {@link deliverSubject}), with no acks: the node keeps its positions itself;
 * - both streams allow direct gets, by which a node fetches what a consumer delivered to a
 *   connection that died (./fetch.ts).
 *
 * Creating or changing a stream or consumer needs the JetStream meta quorum, so it is done only
 * when something is missing or different; reading infos does not.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  nanos,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from 'nats';
import { aggregateStreamName, deliverSubject, durableName, regionStreamName, regionSubjects } from '../subjects.ts';

export { deliverSubject } from '../subjects.ts';
import { isPermissionError } from './connection.ts';
import { JS_ERR, ReplicationError, isApiError } from './errors.ts';

/** Default stream `max_age`: 24 h. Must cover the longest rule window plus the longest partition to tolerate. */
export const DEFAULT_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** Default `duplicate_window`: 2 min (the server default). A retried publish (same msg id) inside it is stored once. */
export const DEFAULT_DUPLICATE_WINDOW_MS = 2 * 60 * 1000;
/**
 * Default consumer `idle_heartbeat`. An idle consumer sends one every interval, with the last
 * sequence it delivered: the reader notices a lost delivery within one interval, and a silent
 * consumer (server frozen or consumer gone) within 2.5 intervals.
 */
export const DEFAULT_HEARTBEAT_MS = 400;

export type NamedStreamConfig = Partial<StreamConfig> & { name: string };


/**
 * Stream, stream sequence and pending count from a delivery's reply subject:
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>` (2.9), or with
 * `<domain>.<account hash>` after `ACK` and a random token at the end (2.10+).
 */
export function parseAckReply(reply: string | undefined): { stream: string; seq: number; pending: number } | null {
  const t = (reply ?? '').split('.');
  if (t.length === 9) t.splice(2, 0, '_', '');
  const seq = Number(t[7]);
  const pending = Number(t[10]);
  if (t.length < 11 || t[0] !== '$JS' || t[1] !== 'ACK' || !Number.isSafeInteger(seq) || seq < 1) return null;
  return { stream: t[4]!, seq, pending: Number.isSafeInteger(pending) && pending >= 0 ? pending : 0 };
}

/** Retention settings of every stream. */
export interface StreamSettings {
  maxAgeMs: number;
  duplicateWindowMs: number;
}

/** The stream of one region's nodes, placed in that region's cluster. */
export function regionStreamConfig(region: string, o: StreamSettings): NamedStreamConfig {
  return {
    ...commonStreamConfig(region, o),
    name: regionStreamName(region),
    description: `rate limiter deltas of region ${region}`,
    subjects: [regionSubjects(region)],
  };
}

/** The streams region `region` holds: its own and, with other regions, the aggregate sourcing them. */
export function regionStreamConfigs(region: string, regions: readonly string[], o: StreamSettings): NamedStreamConfig[] {
  const others = [...new Set(regions)].filter((r) => r !== region).sort();
  const out: NamedStreamConfig[] = [regionStreamConfig(region, o)];
  if (others.length) {
    out.push({
      ...commonStreamConfig(region, o),
      name: aggregateStreamName(region),
      description: `rate limiter deltas of every region but ${region}, sourced`,
      sources: others.map((r) => ({ name: regionStreamName(r) })),
    });
  }
  return out;
}

function commonStreamConfig(region: string, o: StreamSettings): Partial<StreamConfig> {
  return {
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    num_replicas: 1,
    max_age: nanos(o.maxAgeMs),
    duplicate_window: nanos(o.duplicateWindowMs),
    discard: DiscardPolicy.Old,
    placement: { cluster: region, tags: [] },
    // Direct gets: the reader fetches lost deliveries by sequence, also without meta quorum.
    allow_direct: true,
  };
}

/**
 * Creates or adopts every stream of a deployment of `regions` (each region's own stream first,
 * then the aggregates, so their sources exist). What the admin user runs (`npm run provision`)
 * where nodes may not administer streams. Returns what it did per stream.
 */
export async function provisionStreams(jsm: JetStreamManager, regions: readonly string[], o: StreamSettings): Promise<Array<{ stream: string; outcome: 'created' | 'updated' | 'unchanged' }>> {
  const all = [...new Set(regions)].sort();
  const configs = [...all.map((r) => regionStreamConfig(r, o)), ...all.flatMap((r) => regionStreamConfigs(r, all, o).slice(1))];
  const out: Array<{ stream: string; outcome: 'created' | 'updated' | 'unchanged' }> = [];
  for (const cfg of configs) out.push({ stream: cfg.name, outcome: (await ensureStream(jsm, cfg)).outcome });
  return out;
}

/**
 * Creates the stream, or adopts it, updating what can be updated in place. Where the user may
 * not administer streams (a node's user: ./permissions.ts), a missing stream is
 * `REPLICATION_NOT_PROVISIONED` and a differing one is adopted as it is (`outcome: 'unchanged'`,
 * `differs: true`).
 */
export async function ensureStream(jsm: JetStreamManager, cfg: NamedStreamConfig): Promise<{ info: StreamInfo; outcome: 'created' | 'updated' | 'unchanged'; differs?: boolean }> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(cfg.name);
  } catch (err) {
    if (!isApiError(err, JS_ERR.STREAM_NOT_FOUND)) throw err;
    try {
      return { info: await jsm.streams.add(cfg), outcome: 'created' };
    } catch (addErr) {
      if (isPermissionError(addErr)) {
        throw new ReplicationError('REPLICATION_NOT_PROVISIONED', `stream ${cfg.name} does not exist and this node's NATS user may not create it: run \`npm run provision\` with the admin user`, { cause: addErr });
      }
      // Another node created it between the lookup and the add: check what it created.
      if (!isApiError(addErr, JS_ERR.STREAM_NAME_IN_USE)) throw addErr;
      info = await jsm.streams.info(cfg.name);
    }
  }
  const c = info.config;
  if (c.storage !== cfg.storage || c.retention !== cfg.retention) {
    throw new ReplicationError(
      'REPLICATION_CONFLICT',
      `stream ${cfg.name} exists with storage=${c.storage} retention=${c.retention}; need storage=${cfg.storage} retention=${cfg.retention} (delete it to recreate)`,
    );
  }
  const sorted = (a: string[] | undefined) => JSON.stringify([...(a ?? [])].sort());
  const differs =
    sorted(c.subjects) !== sorted(cfg.subjects) ||
    c.max_age !== cfg.max_age ||
    c.duplicate_window !== cfg.duplicate_window ||
    c.discard !== cfg.discard ||
    c.num_replicas !== cfg.num_replicas ||
    c.allow_direct !== cfg.allow_direct ||
    sorted((c.sources ?? []).map((s) => s.name)) !== sorted((cfg.sources ?? []).map((s) => s.name));
  if (!differs) return { info, outcome: 'unchanged' };
  try {
    return { info: await jsm.streams.update(cfg.name, cfg), outcome: 'updated' };
  } catch (err) {
    if (isPermissionError(err)) return { info, outcome: 'unchanged', differs: true };
    throw err;
  }
}

export interface ProvisioningOptions {
  region: string;
  /** Every region of the topology, this one included. */
  regions: readonly string[];
  nodeId: string;
  maxAgeMs: number;
  duplicateWindowMs: number;
  heartbeatMs: number;
}

export class Provisioner {
  readonly regionStream: string;
  /** Null with a single region. */
  readonly aggregateStream: string | null;
  readonly durable: string;
  private readonly otherRegions: string[];

  constructor(
    private readonly o: ProvisioningOptions,
    private readonly jsm: () => JetStreamManager,
  ) {
    this.regionStream = regionStreamName(o.region);
    this.otherRegions = [...new Set(o.regions)].filter((r) => r !== o.region).sort();
    this.aggregateStream = this.otherRegions.length ? aggregateStreamName(o.region) : null;
    this.durable = durableName(o.nodeId);
  }

  /** The streams this node reads: its region's stream and, with other regions, its aggregate. */
  streams(): string[] {
    return this.aggregateStream ? [this.regionStream, this.aggregateStream] : [this.regionStream];
  }

  deliverSubject(stream: string): string {
    return deliverSubject(this.o.region, this.o.nodeId, stream);
  }

  /** The stream configurations this node's region needs. */
  streamConfigs(): NamedStreamConfig[] {
    return regionStreamConfigs(this.o.region, this.o.regions, this.o);
  }

  /**
   * This node's consumer on `stream`, first delivering `start` (default: the stream's first
   * message). A durable push consumer: the server sends each message as soon as it is stored
   * (no pull to expire, no batch to fill). No acks (AckPolicy none): the node persists its
   * positions itself and detects a lost delivery by the sequence gap, so nothing ever waits
   * out an ack_wait, and max_ack_pending cannot stall it. Flow control bounds what is in
   * flight; idle heartbeats report the consumer's position while it has nothing to send.
   */
  consumerConfig(stream: string, start?: number): Partial<ConsumerConfig> {
    return {
      durable_name: this.durable,
      description: `rate limiter node ${this.o.nodeId}`,
      deliver_subject: this.deliverSubject(stream),
      ack_policy: AckPolicy.None,
      idle_heartbeat: nanos(this.o.heartbeatMs),
      flow_control: true,
      replay_policy: ReplayPolicy.Instant,
      ...(start && start > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start } : { deliver_policy: DeliverPolicy.All }),
    };
  }

  /** Whether an existing consumer has the configuration {@link consumerConfig} gives. */
  consumerMatches(stream: string, info: ConsumerInfo): boolean {
    const c = info.config;
    const want = this.consumerConfig(stream);
    return (
      c.deliver_subject === want.deliver_subject &&
      c.ack_policy === want.ack_policy &&
      c.flow_control === true &&
      c.idle_heartbeat === want.idle_heartbeat &&
      !c.filter_subject &&
      !c.deliver_group
    );
  }

  /**
   * Creates or adopts this region's stream and aggregate and this node's durable consumers on
   * both. Also creates the other regions' streams if missing (never updates them: each
   * region's own nodes own their config), so the aggregate's sources exist when it is created
   * (a source whose stream is missing is retried by nats-server 2.9 only every few seconds).
   * Best effort for those: a region that cannot be reached now is picked up by the source
   * retry later. Throws the NATS error (the caller retries transient ones).
   */
  async ensureAll(onFailure: (err: unknown) => void): Promise<void> {
    const jsm = this.jsm();
    for (const r of this.otherRegions) {
      const cfg = regionStreamConfig(r, this.o);
      try {
        await jsm.streams.info(cfg.name);
      } catch (err) {
        if (!isApiError(err, JS_ERR.STREAM_NOT_FOUND)) continue;
        await jsm.streams.add(cfg).catch((e: unknown) => {
          // Another node created it, or this node may not (the admin provisions them).
          if (!isApiError(e, JS_ERR.STREAM_NAME_IN_USE) && !isPermissionError(e)) onFailure(e);
        });
      }
    }
    for (const cfg of this.streamConfigs()) await this.ensureStream(cfg, onFailure);
    for (const s of this.streams()) await this.ensureConsumer(s);
  }

  /** Creates the stream, or adopts it (see {@link ensureStream}); a difference it may not fix is told to `onFailure`. */
  async ensureStream(cfg: NamedStreamConfig, onFailure?: (err: unknown) => void): Promise<StreamInfo> {
    const r = await ensureStream(this.jsm(), cfg);
    if (r.differs) onFailure?.(new Error(`stream ${cfg.name} differs from this node's settings and its NATS user may not update it: run \`npm run provision\``));
    return r.info;
  }

  /** The configuration of one of this node's streams by name. */
  streamConfig(stream: string): NamedStreamConfig {
    const cfg = this.streamConfigs().find((c) => c.name === stream);
    if (!cfg) throw new ReplicationError('REPLICATION_USAGE', `${stream} is not a stream this node reads`);
    return cfg;
  }

  /** This node's consumer on `stream`, or null when it does not exist. */
  async consumerInfo(stream: string, jsm: JetStreamManager = this.jsm()): Promise<ConsumerInfo | null> {
    try {
      return await jsm.consumers.info(stream, this.durable);
    } catch (err) {
      if (isApiError(err, JS_ERR.CONSUMER_NOT_FOUND)) return null;
      throw err;
    }
  }

  /**
   * Creates the durable if missing (first delivering `start`). One with another configuration
   * (e.g. the pull consumer of earlier versions) is recreated where it stood: after its ack
   * floor for a consumer with acks, after what it delivered for one without.
   */
  async ensureConsumer(stream: string, start?: number): Promise<ConsumerInfo> {
    const info = await this.consumerInfo(stream);
    if (!info) return this.jsm().consumers.add(stream, this.consumerConfig(stream, start));
    if (this.consumerMatches(stream, info)) return info;
    const next = (info.config.ack_policy === AckPolicy.None ? info.delivered.stream_seq : info.ack_floor.stream_seq) + 1;
    return this.recreateConsumer(stream, next);
  }

  /**
   * Where a reader of `stream` that applied everything up to `startAfter` starts: right after
   * it, or from the start when the stream is younger than that (recreated, store lost; told to
   * `onFailure`). Places the consumer there (see {@link placeConsumer}) and returns the
   * position with the stream's last sequence. Creates the stream if it is missing.
   */
  async position(stream: string, startAfter: number, slack: number, onFailure: (err: unknown) => void): Promise<{ after: number; last: number }> {
    let si: StreamInfo;
    try {
      si = await this.jsm().streams.info(stream);
    } catch (err) {
      if (!isApiError(err, JS_ERR.STREAM_NOT_FOUND)) throw err;
      si = await this.ensureStream(this.streamConfig(stream));
    }
    let after = Math.max(0, Math.floor(startAfter));
    if (after > si.state.last_seq) {
      onFailure(new Error(`${stream}: startAfterSeq ${after} is beyond the stream's last sequence ${si.state.last_seq}; replaying the stream`));
      after = 0;
    }
    await this.placeConsumer(stream, after + 1, slack, onFailure);
    return { after, last: si.state.last_seq };
  }

  /**
   * Makes this node's consumer on `stream` deliver from `start` on: creates it there if missing,
   * recreates it there if its configuration differs or it stands more than `slack` messages off
   * (only best effort then, `onFailure` told: repeats are dropped and a gap is fetched anyway).
   */
  async placeConsumer(stream: string, start: number, slack: number, onFailure?: (err: unknown) => void): Promise<void> {
    const info = await this.consumerInfo(stream);
    if (!info) await this.jsm().consumers.add(stream, this.consumerConfig(stream, start));
    else if (!this.consumerMatches(stream, info)) await this.recreateConsumer(stream, start);
    else if (Math.abs(info.delivered.stream_seq + 1 - start) > slack) {
      await this.recreateConsumer(stream, start).catch((err: unknown) => {
        if (!onFailure) throw err;
        onFailure(err);
      });
    }
  }

  /** Deletes this node's consumer on `stream` (if any) and creates it first delivering `start`. */
  async recreateConsumer(stream: string, start: number): Promise<ConsumerInfo> {
    const jsm = this.jsm();
    try {
      await jsm.consumers.delete(stream, this.durable);
    } catch (err) {
      if (!isApiError(err, JS_ERR.CONSUMER_NOT_FOUND)) throw err;
    }
    return jsm.consumers.add(stream, this.consumerConfig(stream, start));
  }
}
