/**
 * JetStream transport for replicated deltas. It deals only in bytes, subjects, message ids and
 * stream sequences; encoding and applying deltas is the engine's business.
 *
 * Layout (names in ./subjects.ts, reasoning in CONSISTENCY.md):
 * - node N of region R publishes on `limiter.d.R.N` into stream `LIMITER_R` (R1, file storage,
 *   placed in cluster R), with a `Nats-Msg-Id` so a retried publish inside the duplicate window
 *   is stored once;
 * - stream `LIMITER_R_AGG` (placed in cluster R, no subjects) sources every other region's
 *   stream; JetStream itself catches it up after a partition heals;
 * - node N reads `LIMITER_R` (its region's peers) and `LIMITER_R_AGG` (every other region)
 *   through two durable pull consumers named `node-N`, acking each message after the handler
 *   returns. Its own messages are skipped by subject without calling the handler.
 *
 * nats-server 2.9.10 constraints honoured here: no multi-filter or ordered consumers with
 * filter arrays (2.10+), stream and consumer creation need the JetStream meta quorum (so they are
 * created before serving, and only when missing or different), publishing to an existing R1
 * stream works while other regions are cut off.
 */
import { EventEmitter } from 'node:events';
import {
  AckPolicy,
  ConsumerEvents,
  DeliverPolicy,
  DiscardPolicy,
  Events,
  DebugEvents,
  NatsError,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  connect as natsConnect,
  nanos,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type StreamConfig,
  type StreamInfo,
} from 'nats';
import { LimiterError } from '../engine/errors.ts';
import {
  aggregateStreamName,
  assertNodeId,
  assertRegionName,
  durableName,
  nodeSubject,
  regionStreamName,
  regionSubjects,
} from './subjects.ts';

/** Default stream `max_age`: 24 h. Must cover the longest rule window plus the longest partition to tolerate. */
export const DEFAULT_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** Default `duplicate_window`: 2 min (the server default). Outbox retries must land inside it. */
export const DEFAULT_DUPLICATE_WINDOW_MS = 2 * 60 * 1000;
export const DEFAULT_ACK_WAIT_MS = 30_000;
/** Deliveries before the server gives up on a message (backstop for a message that crashes the node). */
export const DEFAULT_MAX_DELIVER = 10;
export const DEFAULT_MAX_ACK_PENDING = 1000;
/** Messages pulled per request. */
export const DEFAULT_BATCH = 256;
/**
 * Pull request expiry (the client re-pulls at expiry; its idle heartbeat is half of it).
 * Measured on nats-server 2.9.10 with nats.js 2.29: 1.5 s made consumers pause for 1.4–2.3 s
 * in most runs, 5 s in none of them (docs/PERFORMANCE.md).
 */
export const DEFAULT_PULL_EXPIRES_MS = 5_000;

/** Client options that detect a dead server in ~6 s and reconnect forever (see FACTS.md). */
export const RECONNECT_OPTIONS = {
  maxReconnectAttempts: -1,
  reconnectTimeWait: 500,
  pingInterval: 2000,
  maxPingOut: 2,
  timeout: 2000,
} as const;

export type ReplicationErrorCode =
  /** NATS or JetStream cannot be reached, or has no quorum to answer. */
  | 'REPLICATION_UNAVAILABLE'
  /** A stream or consumer exists with a configuration that cannot be changed in place. */
  | 'REPLICATION_CONFLICT'
  /** The transport was used wrongly (closed, consume twice, bad argument). */
  | 'REPLICATION_USAGE';

/** A replication failure with a stable code; `cause` holds the NATS error. */
export class ReplicationError extends LimiterError {
  declare readonly code: ReplicationErrorCode;
  constructor(code: ReplicationErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ReplicationError';
  }
}

export interface TransportOptions {
  /** NATS server URL(s) of this region. */
  servers: string | string[];
  /** Connection name shown by the server (default `limiter-<nodeId>`). */
  name?: string;
  /** This node's region. */
  region: string;
  /** Every region of the topology (this one included). The aggregate sources the others. */
  regions: readonly string[];
  nodeId: string;
  /** Stream `max_age` in ms (default 24 h, {@link DEFAULT_MAX_AGE_MS}). */
  maxAgeMs?: number;
  /** Stream `duplicate_window` in ms (default 2 min). */
  duplicateWindowMs?: number;
  /** Consumer `ack_wait` in ms (default 30 s). */
  ackWaitMs?: number;
  /** Consumer `max_deliver` (default 10). */
  maxDeliver?: number;
  /** Consumer `max_ack_pending` (default 1000). */
  maxAckPending?: number;
  /** Messages per pull (default 256). */
  batch?: number;
  /** Pull expiry in ms (default 5 s, minimum 1 s). */
  pullExpiresMs?: number;
  /** Timeout of JetStream API calls and publishes in ms (default 5 s). */
  requestTimeoutMs?: number;
  /** How long `ensureStreams`/`consume` retry while JetStream is unavailable (default 30 s). */
  setupTimeoutMs?: number;
  /** Keep trying the first connection instead of failing (default false). */
  waitOnFirstConnect?: boolean;
  /**
   * Whether a handler error means the message can never be applied (it is then terminated
   * with `msg.term()` instead of retried). Default: {@link isDecodeError}.
   */
  isPoison?: (err: unknown) => boolean;
}

/** A message handed to the consume handler. */
export interface ReplicatedMessage {
  data: Uint8Array;
  /** `limiter.d.<region>.<nodeId>`: the origin (see parseNodeSubject). */
  subject: string;
  /** Sequence in `stream` (monotonic per stream; persist it to resume with `startAfterSeq`). */
  streamSeq: number;
  /** `LIMITER_<REGION>` (own region's peers) or `LIMITER_<REGION>_AGG` (other regions). */
  stream: string;
  redelivered: boolean;
  /** When the message was stored in `stream` (ms since epoch; for the aggregate: when sourced). */
  storedAtMs: number;
  /** Messages the consumer still holds for this node after this one (0 = caught up). */
  pending: number;
  /** The `Nats-Msg-Id` header, if any. */
  msgId: string | undefined;
}

export type MessageHandler = (msg: ReplicatedMessage) => void | Promise<void>;

export interface ConsumeOptions {
  /**
   * Per stream name, the last sequence already applied (e.g. stored in SQLite with the delta).
   * Delivery resumes right after it: messages at or below it are acked without calling the
   * handler, and if the durable consumer had already moved past it (state lost), the consumer
   * is recreated to replay from there. Streams not listed resume from the durable consumer.
   * Include {@link JetStreamTransport.watermarks} in what you persist: it also covers messages
   * the handler never saw (this node's own), so a restart does not replay them.
   */
  startAfterSeq?: Record<string, number>;
  /**
   * Hand this node's own messages to the handler too (default false: they are acked unseen).
   * A node that lost its data directory sets it, with `startAfterSeq` 0, to rebuild its own
   * contribution from the streams before serving.
   */
  deliverOwn?: boolean;
}

export interface StreamProgress {
  /** Highest sequence processed (handled, own/skipped, or terminated); 0 = none yet. */
  lastSeq: number;
  /** When `lastSeq` advanced (ms since epoch). */
  lastAt: number | null;
  /** Messages still pending for this consumer as of the last message. */
  pending: number | null;
}

export interface TransportStatus {
  connected: boolean;
  /** Server currently connected to. */
  server: string | null;
  /** Streams and consumers exist (ensureStreams succeeded). */
  streamsReady: boolean;
  consuming: boolean;
  reconnects: number;
  /** Consumers restarted because they received nothing while their stream had more. */
  stalls: number;
  lastError: { message: string; code?: string; at: number } | null;
  /** Per stream name: progress of this node's consumer. */
  streams: Record<string, StreamProgress>;
}

export interface PoisonEvent {
  stream: string;
  streamSeq: number;
  subject: string;
  error: unknown;
}

/** Events: connection changes, problems that were handled, and terminated messages. */
export interface TransportEvents {
  connect: [server: string];
  disconnect: [server: string];
  reconnect: [server: string];
  /** A failure the transport handled (retrying); the latest is also in `status().lastError`. */
  failure: [err: Error];
  /** A message the handler could not decode was terminated (`msg.term()`), never redelivered. */
  poison: [event: PoisonEvent];
}

/**
 * Default poison test: a codec error from crdt/ (name `CodecError` or a `CODEC_*` code), or
 * any error carrying `poison: true`.
 */
export function isDecodeError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: unknown; code?: unknown; poison?: unknown };
  return e.poison === true || e.name === 'CodecError' || (typeof e.code === 'string' && e.code.startsWith('CODEC_'));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Errors worth retrying: no responders, timeouts, disconnects, JetStream not ready yet. */
function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NatsError).code;
  if (code === '503' || code === 'TIMEOUT' || code === 'DISCONNECT' || code === 'CONNECTION_REFUSED' || code === '408') return true;
  const api = (err as NatsError).api_error;
  // 10008 JetStream temporarily unavailable; 10023 insufficient resources and 10005 no suitable
  // peers (right after start-up the meta leader has not yet heard from every cluster)
  if (api && (api.err_code === 10008 || api.err_code === 10023 || api.err_code === 10005 || api.code === 503)) return true;
  return /timeout|temporarily unavailable|no responders/i.test(err.message);
}

function isNotFound(err: unknown, errCode: number): boolean {
  return err instanceof NatsError && err.api_error?.err_code === errCode;
}
const STREAM_NOT_FOUND = 10059;
/** "stream name already in use": another node created it first (also with the same config, on 2.9). */
const STREAM_NAME_IN_USE = 10058;
const CONSUMER_NOT_FOUND = 10014;

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** A consumer that has received nothing this long while its stream has more is restarted. */
const STALL_MS = 1000;

/** Thrown to abandon a pull set-up when the connection was re-established meanwhile. */
const RESTART = new Error('restart after reconnect');

/** When recreating a consumer is cheaper than pulling and skipping already-applied messages. */
const REPOSITION_SKIP_LIMIT = 1000;

interface StreamState extends StreamProgress {
  /** Messages at or below this were applied before (startAfterSeq): ack without handling. */
  skipThrough: number;
}

export class JetStreamTransport extends EventEmitter<TransportEvents> {
  readonly region: string;
  readonly nodeId: string;
  /** The subject this node publishes on. */
  readonly subject: string;
  /** This region's stream (own region's nodes). */
  readonly regionStream: string;
  /** This region's aggregate of the other regions' streams; null with a single region. */
  readonly aggregateStream: string | null;
  /** Durable consumer name used on both streams. */
  readonly durable: string;

  private readonly opts: Required<Omit<TransportOptions, 'name' | 'servers' | 'waitOnFirstConnect'>>;
  private readonly otherRegions: string[];
  private readonly connectOpts: Pick<TransportOptions, 'servers' | 'name' | 'waitOnFirstConnect'>;
  private nc: NatsConnection | undefined;
  private js!: JetStreamClient;
  private jsm!: JetStreamManager;
  private connected = false;
  private server: string | null = null;
  private reconnects = 0;
  /** Consumers restarted by the stall watchdog. */
  private stalls = 0;
  private lastError: TransportStatus['lastError'] = null;
  private streamsReady = false;
  private closed = false;
  private consuming: { stop: () => Promise<void> } | null = null;
  private readonly streamState = new Map<string, StreamState>();

  constructor(opts: TransportOptions) {
    super();
    this.connectOpts = { servers: opts.servers, name: opts.name, waitOnFirstConnect: opts.waitOnFirstConnect };
    assertRegionName(opts.region);
    assertNodeId(opts.nodeId);
    for (const r of opts.regions) assertRegionName(r);
    if (!opts.regions.includes(opts.region)) {
      throw new ReplicationError('REPLICATION_USAGE', `regions [${opts.regions.join(', ')}] must include this node's region "${opts.region}"`);
    }
    this.region = opts.region;
    this.nodeId = opts.nodeId;
    this.subject = nodeSubject(opts.region, opts.nodeId);
    this.regionStream = regionStreamName(opts.region);
    this.otherRegions = [...new Set(opts.regions)].filter((r) => r !== opts.region).sort();
    this.aggregateStream = this.otherRegions.length ? aggregateStreamName(opts.region) : null;
    this.durable = durableName(opts.nodeId);
    this.opts = {
      region: opts.region,
      regions: opts.regions,
      nodeId: opts.nodeId,
      maxAgeMs: opts.maxAgeMs ?? DEFAULT_MAX_AGE_MS,
      duplicateWindowMs: opts.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS,
      ackWaitMs: opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS,
      maxDeliver: opts.maxDeliver ?? DEFAULT_MAX_DELIVER,
      maxAckPending: opts.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
      batch: opts.batch ?? DEFAULT_BATCH,
      pullExpiresMs: Math.max(1000, opts.pullExpiresMs ?? DEFAULT_PULL_EXPIRES_MS),
      requestTimeoutMs: opts.requestTimeoutMs ?? 5000,
      setupTimeoutMs: opts.setupTimeoutMs ?? 30_000,
      isPoison: opts.isPoison ?? isDecodeError,
    };
    if (this.opts.duplicateWindowMs > this.opts.maxAgeMs) {
      throw new ReplicationError('REPLICATION_USAGE', `duplicateWindowMs (${this.opts.duplicateWindowMs}) must not exceed maxAgeMs (${this.opts.maxAgeMs})`);
    }
    for (const s of this.streams()) this.streamState.set(s, { lastSeq: 0, lastAt: null, pending: null, skipThrough: 0 });
  }

  /**
   * Creates a transport and connects it ({@link connect}). To receive the first `connect` event,
   * construct it, add listeners, then call the instance `connect()`.
   */
  static async connect(opts: TransportOptions): Promise<JetStreamTransport> {
    const t = new JetStreamTransport(opts);
    await t.connect();
    return t;
  }

  /**
   * Connects to NATS with reconnect-forever options ({@link RECONNECT_OPTIONS}). Does not touch
   * JetStream: call {@link ensureStreams} before serving, then {@link consume}.
   */
  async connect(): Promise<void> {
    this.assertOpen();
    if (this.nc) throw new ReplicationError('REPLICATION_USAGE', 'connect() was already called');
    try {
      this.nc = await natsConnect({
        servers: this.connectOpts.servers,
        name: this.connectOpts.name ?? `limiter-${this.nodeId}`,
        ...RECONNECT_OPTIONS,
        waitOnFirstConnect: this.connectOpts.waitOnFirstConnect ?? false,
      });
    } catch (err) {
      throw new ReplicationError('REPLICATION_UNAVAILABLE', `cannot connect to NATS at ${String(this.connectOpts.servers)}: ${toError(err).message}`, { cause: err });
    }
    const nc = this.nc;
    this.js = nc.jetstream({ timeout: this.opts.requestTimeoutMs });
    this.jsm = await nc.jetstreamManager({ timeout: this.opts.requestTimeoutMs, checkAPI: false });
    this.connected = true;
    this.server = nc.getServer();
    this.watchStatus(nc);
    this.emit('connect', this.server);
  }

  /** The streams this node reads: its region's stream and, with other regions, its aggregate. */
  streams(): string[] {
    return this.aggregateStream ? [this.regionStream, this.aggregateStream] : [this.regionStream];
  }

  private watchStatus(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        switch (s.type) {
          case Events.Disconnect:
            this.connected = false;
            this.emit('disconnect', String(s.data));
            break;
          case Events.Reconnect:
            this.connected = true;
            this.reconnects++;
            this.server = nc.getServer();
            this.emit('reconnect', String(s.data));
            break;
          case Events.Error:
            this.fail(toError(s.data));
            break;
          case DebugEvents.StaleConnection:
            this.fail(new Error('stale connection: no PONG from the server'));
            break;
          default:
        }
      }
    })().catch(() => {});
  }

  private fail(err: Error): void {
    this.lastError = { message: err.message, code: (err as { code?: string }).code, at: Date.now() };
    if (this.listenerCount('failure') > 0) this.emit('failure', err);
  }

  private assertOpen(): void {
    if (this.closed) throw new ReplicationError('REPLICATION_USAGE', 'transport is closed');
  }

  private assertConnected(): void {
    this.assertOpen();
    if (!this.nc) throw new ReplicationError('REPLICATION_USAGE', 'call connect() first');
  }

  /** Runs `fn`, retrying transient JetStream errors until `setupTimeoutMs` has passed. */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.opts.setupTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      this.assertOpen();
      try {
        return await fn();
      } catch (err) {
        if (err instanceof ReplicationError) throw err;
        if (!isTransient(err) || Date.now() > deadline) {
          throw new ReplicationError(
            isTransient(err) ? 'REPLICATION_UNAVAILABLE' : 'REPLICATION_CONFLICT',
            `${what}: ${toError(err).message}`,
            { cause: err },
          );
        }
        this.fail(toError(err));
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  /** The stream configurations this node's region needs. */
  streamConfigs(): Array<Partial<StreamConfig> & { name: string }> {
    const out: Array<Partial<StreamConfig> & { name: string }> = [this.regionStreamConfig(this.region)];
    if (this.aggregateStream) {
      out.push({
        ...this.commonStreamConfig(this.region),
        name: this.aggregateStream,
        description: `rate limiter deltas of every region but ${this.region}, sourced`,
        sources: this.otherRegions.map((r) => ({ name: regionStreamName(r) })),
      });
    }
    return out;
  }

  /** The stream of one region's nodes, placed in that region's cluster. */
  regionStreamConfig(region: string): Partial<StreamConfig> & { name: string } {
    return {
      ...this.commonStreamConfig(region),
      name: regionStreamName(region),
      description: `rate limiter deltas of region ${region}`,
      subjects: [regionSubjects(region)],
    };
  }

  private commonStreamConfig(region: string): Partial<StreamConfig> {
    return {
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: 1,
      max_age: nanos(this.opts.maxAgeMs),
      duplicate_window: nanos(this.opts.duplicateWindowMs),
      discard: DiscardPolicy.Old,
      placement: { cluster: region, tags: [] },
    };
  }

  /** Consumer configuration of this node (the same on both streams). */
  consumerConfig(start?: number): Partial<ConsumerConfig> {
    return {
      durable_name: this.durable,
      description: `rate limiter node ${this.nodeId}`,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(this.opts.ackWaitMs),
      max_deliver: this.opts.maxDeliver,
      max_ack_pending: this.opts.maxAckPending,
      replay_policy: ReplayPolicy.Instant,
      ...(start && start > 1
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start }
        : { deliver_policy: DeliverPolicy.All }),
    };
  }

  /**
   * Creates or updates this region's stream and aggregate stream and this node's durable
   * consumers on both. Needs the JetStream meta quorum only when something is missing or
   * different; retries while JetStream is unavailable, up to `setupTimeoutMs`.
   */
  async ensureStreams(): Promise<void> {
    this.assertConnected();
    // The aggregate's sources should exist when it is created: a source whose stream is missing
    // is retried by nats-server 2.9 only every few seconds. So the other regions' streams are
    // created here if missing (never updated: each region's own nodes own their config). Best
    // effort: a region that cannot be reached now is picked up by the source retry later.
    for (const r of this.otherRegions) {
      const cfg = this.regionStreamConfig(r);
      try {
        await this.jsm.streams.info(cfg.name);
      } catch (err) {
        if (!isNotFound(err, STREAM_NOT_FOUND)) continue;
        await this.jsm.streams.add(cfg).catch((e: unknown) => {
          if (!isNotFound(e, STREAM_NAME_IN_USE)) this.fail(toError(e));
        });
      }
    }
    for (const cfg of this.streamConfigs()) await this.retrying(`ensure stream ${cfg.name}`, () => this.ensureStream(cfg));
    for (const s of this.streams()) await this.retrying(`ensure consumer ${s}/${this.durable}`, () => this.ensureConsumer(s));
    this.streamsReady = true;
  }

  private async ensureStream(cfg: Partial<StreamConfig> & { name: string }): Promise<StreamInfo> {
    let info: StreamInfo;
    try {
      info = await this.jsm.streams.info(cfg.name);
    } catch (err) {
      if (!isNotFound(err, STREAM_NOT_FOUND)) throw err;
      try {
        return await this.jsm.streams.add(cfg);
      } catch (addErr) {
        // Another node created it between the lookup and the add: check what it created.
        if (!isNotFound(addErr, STREAM_NAME_IN_USE)) throw addErr;
        info = await this.jsm.streams.info(cfg.name);
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
      sorted((c.sources ?? []).map((s) => s.name)) !== sorted((cfg.sources ?? []).map((s) => s.name));
    if (!differs) return info;
    return this.jsm.streams.update(cfg.name, cfg);
  }

  private async consumerInfo(stream: string): Promise<ConsumerInfo | null> {
    try {
      return await this.jsm.consumers.info(stream, this.durable);
    } catch (err) {
      if (isNotFound(err, CONSUMER_NOT_FOUND)) return null;
      throw err;
    }
  }

  /** Creates the durable if missing (starting at `start`), fixes changed settings in place. */
  private async ensureConsumer(stream: string, start?: number): Promise<ConsumerInfo> {
    const info = await this.consumerInfo(stream);
    if (!info) return this.jsm.consumers.add(stream, this.consumerConfig(start));
    const c = info.config;
    if (c.ack_policy !== AckPolicy.Explicit || c.filter_subject) {
      return this.recreateConsumer(stream, info.ack_floor.stream_seq + 1);
    }
    const want = this.consumerConfig();
    if (c.ack_wait !== want.ack_wait || c.max_deliver !== want.max_deliver || c.max_ack_pending !== want.max_ack_pending) {
      return this.jsm.consumers.update(stream, this.durable, {
        ack_wait: want.ack_wait,
        max_deliver: want.max_deliver,
        max_ack_pending: want.max_ack_pending,
      });
    }
    return info;
  }

  private async recreateConsumer(stream: string, start: number): Promise<ConsumerInfo> {
    try {
      await this.jsm.consumers.delete(stream, this.durable);
    } catch (err) {
      if (!isNotFound(err, CONSUMER_NOT_FOUND)) throw err;
    }
    return this.jsm.consumers.add(stream, this.consumerConfig(start));
  }

  /**
   * Publishes one delta on this node's subject with `Nats-Msg-Id: msgId` and waits for the
   * stream's acknowledgement. `duplicate: true` means the stream already had that id within its
   * duplicate window (a retry of a publish that was stored): treat it as acknowledged.
   * Throws {@link ReplicationError} `REPLICATION_UNAVAILABLE` when JetStream does not answer.
   */
  async publish(nodeId: string, bytes: Uint8Array, msgId: string): Promise<{ seq: number; duplicate: boolean }> {
    this.assertConnected();
    if (nodeId !== this.nodeId) {
      throw new ReplicationError('REPLICATION_USAGE', `node ${this.nodeId} cannot publish as ${nodeId}`);
    }
    if (!msgId) throw new ReplicationError('REPLICATION_USAGE', 'msgId is required');
    try {
      // No `expect: {streamName}`: the Nats-Expected-Stream header is stored with the message
      // and then makes every aggregate stream reject it when sourcing ("expected stream does
      // not match"). The stream is checked on the ack instead.
      const ack = await this.js.publish(this.subject, bytes, { msgID: msgId, timeout: this.opts.requestTimeoutMs });
      if (ack.stream !== this.regionStream) {
        throw new ReplicationError(
          'REPLICATION_CONFLICT',
          `publish ${this.subject}: stored in stream ${ack.stream}, expected ${this.regionStream} (overlapping streams?)`,
        );
      }
      return { seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (err instanceof ReplicationError) throw err;
      const e = toError(err);
      this.fail(e);
      throw new ReplicationError(
        isTransient(err) ? 'REPLICATION_UNAVAILABLE' : 'REPLICATION_CONFLICT',
        `publish ${this.subject} (msg id ${msgId}): ${e.message}`,
        { cause: err },
      );
    }
  }

  /**
   * Starts reading both streams through this node's durable consumers and resolves once both
   * are positioned (see {@link ConsumeOptions.startAfterSeq}) and pulling.
   *
   * Per stream, messages are handled one at a time in stream order, and the handler is never
   * called concurrently (one stream waits while the other's message is handled). After the
   * handler returns the message is acked. If it throws an error `isPoison` accepts (a decode
   * error), the message is terminated and a `poison` event emitted; any other error is retried
   * in place with backoff (the ack deadline extended) until it succeeds, so a failing store
   * delays replication instead of skipping deltas. Messages on this node's own subject, and
   * redeliveries of messages already processed, are acked without calling the handler.
   * Survives disconnects, server restarts and consumer loss (the consumer is recreated).
   */
  async consume(handler: MessageHandler, opts: ConsumeOptions = {}): Promise<void> {
    this.assertConnected();
    if (this.consuming) throw new ReplicationError('REPLICATION_USAGE', 'consume() was already called');
    if (!this.streamsReady) await this.ensureStreams();
    for (const stream of this.streams()) {
      await this.retrying(`position consumer ${stream}/${this.durable}`, () => this.position(stream, opts.startAfterSeq?.[stream]));
    }
    let stopping = false;
    let chain: Promise<unknown> = Promise.resolve();
    const serial = (fn: () => void | Promise<void>): Promise<void> => {
      const run = chain.then(fn);
      chain = run.catch(() => {});
      return run;
    };
    const active = new Set<ConsumerMessages>();
    const deliverOwn = opts.deliverOwn === true;
    let signalStop!: () => void;
    const stopped = new Promise<void>((r) => (signalStop = r));
    const loops = this.streams().map((stream) =>
      this.runConsumer(stream, handler, serial, active, () => stopping, stopped, deliverOwn).catch((err) => this.fail(toError(err))),
    );
    this.consuming = {
      stop: async () => {
        stopping = true;
        signalStop();
        for (const m of active) m.stop();
        await Promise.all(loops);
      },
    };
  }

  /** Puts the durable consumer of `stream` where `startAfter` says (see ConsumeOptions). */
  private async position(stream: string, startAfter: number | undefined): Promise<void> {
    const state = this.streamState.get(stream)!;
    let info = await this.ensureConsumer(stream);
    if (startAfter === undefined) {
      // Messages delivered to a previous run but not acked would wait out ack_wait: redeliver now.
      if (info.num_ack_pending > 0) {
        info = await this.recreateConsumer(stream, info.ack_floor.stream_seq + 1).catch((err) => {
          this.fail(toError(err));
          return info;
        });
      }
      return;
    }
    let after = Math.max(0, Math.floor(startAfter));
    const si = await this.jsm.streams.info(stream);
    if (after > si.state.last_seq) {
      // The stream is younger than what was applied (recreated, store lost): replay it all.
      this.fail(new Error(`${stream}: startAfterSeq ${after} is beyond the stream's last sequence ${si.state.last_seq}; replaying the stream`));
      after = 0;
    }
    state.skipThrough = after;
    state.lastSeq = Math.max(state.lastSeq, after);
    const floor = info.ack_floor.stream_seq;
    const mustRewind = floor > after;
    if (mustRewind || info.num_ack_pending > 0 || after - floor > REPOSITION_SKIP_LIMIT) {
      try {
        await this.recreateConsumer(stream, after + 1);
      } catch (err) {
        if (mustRewind) throw err;
        this.fail(toError(err)); // an optimisation only: the skip filter covers it
      }
    }
  }

  private async runConsumer(
    stream: string,
    handler: MessageHandler,
    serial: (fn: () => void | Promise<void>) => Promise<void>,
    active: Set<ConsumerMessages>,
    stopping: () => boolean,
    stopped: Promise<void>,
    deliverOwn: boolean,
  ): Promise<void> {
    for (let attempt = 0, restarted = false; !stopping() && !this.closed; restarted = true) {
      let messages: ConsumerMessages | undefined;
      // After a reconnect the pull must be re-issued promptly: the library's own recovery can
      // sit in a back-off of a whole pull expiry, and a request sent on the dead connection
      // waits out its timeout. So a reconnect restarts this loop, abandoning any such wait.
      let reconnected!: () => void;
      const onReconnect = new Promise<'reconnected'>((resolve) => {
        reconnected = () => {
          attempt = 0;
          messages?.stop();
          resolve('reconnected');
        };
      });
      this.on('reconnect', reconnected);
      const unlessReconnected = async <T>(p: Promise<T>): Promise<T> => {
        p.catch(() => {}); // may settle after being abandoned
        const r = await Promise.race([p, onReconnect, stopped.then(() => 'reconnected' as const)]);
        if (r === 'reconnected') throw RESTART;
        return r as T;
      };
      try {
        if (restarted) await unlessReconnected(this.resume(stream));
        const consumer = await unlessReconnected(this.js.consumers.get(stream, this.durable));
        messages = await consumer.consume({ max_messages: this.opts.batch, expires: this.opts.pullExpiresMs });
        active.add(messages);
        if (stopping()) break;
        const current = messages;
        void (async () => {
          for await (const s of await current.status()) {
            // Consumer gone (deleted, server lost its state) or server silent: restart the loop,
            // which checks and if needed recreates the consumer after the last processed message.
            if (
              s.type === ConsumerEvents.ConsumerDeleted ||
              s.type === ConsumerEvents.HeartbeatsMissed ||
              ((s.type === ConsumerEvents.ConsumerNotFound || s.type === ConsumerEvents.StreamNotFound) && Number(s.data) >= 1)
            ) {
              current.stop();
            }
          }
        })().catch(() => {});
        // Watchdog: a pull consumer can now and then sit idle until its pull request expires
        // although the stream has messages for it (seen with nats.js 2.29 and nats-server 2.9).
        // When nothing has arrived for STALL_MS while the stream holds messages beyond the last
        // one processed, restart the loop, which re-issues the pull at once.
        const startedAt = Date.now();
        let probing = false;
        const watchdog = setInterval(() => {
          const st = this.streamState.get(stream)!;
          if (probing || Date.now() - Math.max(st.lastAt ?? 0, startedAt) < STALL_MS) return;
          probing = true;
          this.jsm.streams
            .info(stream)
            .then((si) => {
              if (si.state.last_seq > st.lastSeq && Date.now() - Math.max(st.lastAt ?? 0, startedAt) >= STALL_MS) {
                this.stalls++;
                current.stop();
              }
            })
            .catch(() => {})
            .finally(() => (probing = false));
        }, STALL_MS / 2);
        watchdog.unref();
        try {
          for await (const m of current) {
            attempt = 0;
            await this.process(stream, m, handler, serial, stopping, deliverOwn);
            if (stopping()) break;
          }
        } finally {
          clearInterval(watchdog);
        }
      } catch (err) {
        if (!stopping() && err !== RESTART) this.fail(toError(err));
      } finally {
        this.off('reconnect', reconnected);
        if (messages) {
          active.delete(messages);
          messages.stop();
        }
      }
      if (stopping() || this.closed) break;
      await Promise.race([sleep(attempt === 0 ? 20 : Math.min(2000, 100 * 2 ** attempt)), stopped]);
      attempt++;
    }
  }

  /**
   * Before pulling again after an interruption: make sure the consumer exists and will deliver
   * right after the last processed message. Messages handed to an earlier pull but not processed
   * would otherwise wait out ack_wait, and a server killed with -9 can come back with an older
   * ack floor; recreating the consumer at `lastSeq + 1` avoids both (best effort: it needs the
   * meta quorum; without it the durable is kept and the skip filter drops repeats).
   */
  private async resume(stream: string): Promise<void> {
    const state = this.streamState.get(stream)!;
    let si: StreamInfo;
    try {
      si = await this.jsm.streams.info(stream);
    } catch (err) {
      if (!isNotFound(err, STREAM_NOT_FOUND)) throw err;
      si = await this.ensureStream(this.streamConfigs().find((c) => c.name === stream)!);
    }
    if (state.lastSeq > si.state.last_seq) {
      this.fail(new Error(`${stream}: last processed ${state.lastSeq} is beyond the stream's last sequence ${si.state.last_seq}; the stream was recreated, replaying it`));
      state.lastSeq = 0;
      state.skipThrough = 0;
    }
    const start = state.lastSeq + 1;
    const info = await this.consumerInfo(stream);
    if (!info) {
      this.fail(new Error(`consumer ${stream}/${this.durable} was lost; recreating it at sequence ${start}`));
      await this.jsm.consumers.add(stream, this.consumerConfig(start));
      return;
    }
    if (info.num_ack_pending > 0 || info.delivered.stream_seq < state.lastSeq) {
      await this.recreateConsumer(stream, start).catch((err) => this.fail(toError(err)));
    }
  }

  private async process(
    stream: string,
    m: JsMsg,
    handler: MessageHandler,
    serial: (fn: () => void | Promise<void>) => Promise<void>,
    stopping: () => boolean,
    deliverOwn: boolean,
  ): Promise<void> {
    const state = this.streamState.get(stream)!;
    const seq = m.info.streamSequence;
    const done = () => {
      if (seq > state.lastSeq) state.lastSeq = seq;
      state.lastAt = Date.now();
      state.pending = m.info.pending;
    };
    if (seq <= state.lastSeq && seq > state.skipThrough && seq + m.info.pending < state.lastSeq) {
      // The stream ends before what was processed: it was recreated. Start over.
      this.fail(new Error(`${stream}: sequence ${seq} (+${m.info.pending} pending) is behind the last processed ${state.lastSeq}; the stream was recreated`));
      state.lastSeq = 0;
    }
    // Already processed (a redelivery, or a server that came back with an older ack floor),
    // applied before this run (startAfterSeq), or this node's own message: ack unseen.
    if (seq <= state.lastSeq || seq <= state.skipThrough || (!deliverOwn && m.subject === this.subject)) {
      m.ack();
      done();
      return;
    }
    const msg: ReplicatedMessage = {
      data: m.data,
      subject: m.subject,
      streamSeq: seq,
      stream,
      redelivered: m.redelivered,
      storedAtMs: Math.floor(m.info.timestampNanos / 1e6),
      pending: m.info.pending,
      msgId: m.headers?.get('Nats-Msg-Id') || undefined,
    };
    for (let attempt = 0; ; attempt++) {
      try {
        await serial(() => handler(msg));
        m.ack();
        done();
        return;
      } catch (err) {
        if (this.opts.isPoison(err)) {
          // No reason argument: nats-server 2.9 does not parse "+TERM <reason>" (2.10+) and
          // would leave the message pending until ack_wait, then redeliver it.
          m.term();
          done();
          this.fail(toError(err));
          this.emit('poison', { stream, streamSeq: seq, subject: m.subject, error: err });
          return;
        }
        this.fail(toError(err));
        if (stopping() || this.closed) {
          m.nak();
          return;
        }
        m.working();
        await sleep(Math.min(5000, 50 * 2 ** attempt));
      }
    }
  }

  /**
   * Per stream, the highest sequence this node has processed (handled, skipped as its own, or
   * terminated). Everything at or below it is done: safe to persist as `startAfterSeq`.
   */
  watermarks(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [s, st] of this.streamState) out[s] = st.lastSeq;
    return out;
  }

  /**
   * Per stream this node reads, its last sequence now (answered by each stream's leader in this
   * region, so it works while other regions are cut off). With {@link watermarks}: caught up
   * when every watermark reaches these.
   */
  async lastSequences(): Promise<Record<string, number>> {
    this.assertConnected();
    const out: Record<string, number> = {};
    for (const s of this.streams()) {
      try {
        out[s] = (await this.jsm.streams.info(s)).state.last_seq;
      } catch (err) {
        throw new ReplicationError(isTransient(err) ? 'REPLICATION_UNAVAILABLE' : 'REPLICATION_CONFLICT', `stream info ${s}: ${toError(err).message}`, { cause: err });
      }
    }
    return out;
  }

  status(): TransportStatus {
    const streams: Record<string, StreamProgress> = {};
    for (const [s, st] of this.streamState) streams[s] = { lastSeq: st.lastSeq, lastAt: st.lastAt, pending: st.pending };
    return {
      connected: this.connected && !this.closed,
      server: this.server,
      streamsReady: this.streamsReady,
      consuming: this.consuming !== null,
      reconnects: this.reconnects,
      stalls: this.stalls,
      lastError: this.lastError,
      streams,
    };
  }

  /** The underlying connection (tests, metrics). */
  get connection(): NatsConnection {
    this.assertConnected();
    return this.nc!;
  }

  /** Stops consuming (waits for the message in hand), flushes acks briefly, closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    const c = this.consuming;
    this.closed = true;
    await c?.stop();
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      await Promise.race([nc.flush().catch(() => {}), sleep(1000)]);
      await nc.close();
    }
    this.connected = false;
  }
}
