/**
 * The JetStream transport: implements the replicator's port (../port.ts) on NATS JetStream by
 * composing the connection (./connection.ts), the streams and consumers (./provisioning.ts)
 * and one reader per stream (./consumer.ts). It deals only in bytes, subjects, message ids and
 * stream sequences; encoding and applying deltas is the replicator's business.
 *
 * nats-server 2.9.10 constraints honoured here: no multi-filter or ordered consumers (2.10+ or
 * meta quorum), stream and consumer creation need the JetStream meta quorum (so they happen
 * before serving, and only when missing or different), publishing to an existing R1 stream and
 * reading it through a durable consumer work while other regions are cut off.
 */
import { EventEmitter } from 'node:events';
import type { NatsConnection } from 'nats';
import type { ConsumeOptions, MessageHandler, StreamProgress, Transport, TransportEvents, TransportStatus } from '../port.ts';
import { assertNodeId, assertRegionName, nodeSubject } from '../subjects.ts';
import { NatsLink, type NatsTlsFiles } from './connection.ts';
import { nodeInboxPrefix } from './permissions.ts';
import { SourceBypass } from './bypass.ts';
import { StreamReader } from './consumer.ts';
import { ReplicationError, isTransient, toError, wrapError } from './errors.ts';
import { DEFAULT_DUPLICATE_WINDOW_MS, DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_AGE_MS, Provisioner } from './provisioning.ts';

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
  /** Consumer `idle_heartbeat` in ms (default 400 ms, {@link DEFAULT_HEARTBEAT_MS}; minimum 100). */
  heartbeatMs?: number;
  /** Time-out of JetStream API calls and publishes in ms (default 5 s). */
  requestTimeoutMs?: number;
  /** How long `start`/`consume` retry while JetStream is unavailable (default 30 s). */
  setupTimeoutMs?: number;
  /** Keep trying the first connection instead of failing (default false). */
  waitOnFirstConnect?: boolean;
  /** Authenticate as this nkey user (the seed, `SU…`); anonymous without it. */
  nkeySeed?: string;
  /** TLS to the NATS server (PEM file paths). */
  tls?: NatsTlsFiles;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class JetStreamTransport extends EventEmitter<TransportEvents> implements Transport {
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

  private readonly opts: Required<Omit<TransportOptions, 'waitOnFirstConnect' | 'nkeySeed' | 'tls'>> & Pick<TransportOptions, 'nkeySeed' | 'tls'> & { waitOnFirstConnect: boolean };
  private readonly provisioner: Provisioner;
  private link: NatsLink | undefined;
  private connecting: Promise<void> | undefined;
  private readonly readers = new Map<string, StreamReader>();
  /** Reads other regions' streams directly while their sourcing into the aggregate is stalled. */
  private bypass: SourceBypass | null = null;
  private stalls = 0;
  private lastError: TransportStatus['lastError'] = null;
  private streamsReady = false;
  private consuming = false;
  private closed = false;

  constructor(opts: TransportOptions) {
    super();
    assertRegionName(opts.region);
    assertNodeId(opts.nodeId);
    for (const r of opts.regions) assertRegionName(r);
    if (!opts.regions.includes(opts.region)) {
      throw new ReplicationError('REPLICATION_USAGE', `regions [${opts.regions.join(', ')}] must include this node's region "${opts.region}"`);
    }
    this.opts = {
      servers: opts.servers,
      name: opts.name ?? `limiter-${opts.nodeId}`,
      region: opts.region,
      regions: opts.regions,
      nodeId: opts.nodeId,
      maxAgeMs: opts.maxAgeMs ?? DEFAULT_MAX_AGE_MS,
      duplicateWindowMs: opts.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS,
      heartbeatMs: Math.max(100, opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS),
      requestTimeoutMs: opts.requestTimeoutMs ?? 5000,
      setupTimeoutMs: opts.setupTimeoutMs ?? 30_000,
      waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
      nkeySeed: opts.nkeySeed,
      tls: opts.tls,
    };
    if (this.opts.duplicateWindowMs > this.opts.maxAgeMs) {
      throw new ReplicationError('REPLICATION_USAGE', `duplicateWindowMs (${this.opts.duplicateWindowMs}) must not exceed maxAgeMs (${this.opts.maxAgeMs})`);
    }
    this.region = opts.region;
    this.nodeId = opts.nodeId;
    this.subject = nodeSubject(opts.region, opts.nodeId);
    this.provisioner = new Provisioner(this.opts, () => this.requireLink().jsm);
    this.regionStream = this.provisioner.regionStream;
    this.aggregateStream = this.provisioner.aggregateStream;
    this.durable = this.provisioner.durable;
  }

  /** Creates a transport and connects it ({@link connect}). */
  static async connect(opts: TransportOptions): Promise<JetStreamTransport> {
    const t = new JetStreamTransport(opts);
    await t.connect();
    return t;
  }

  /** The streams this node reads: its region's stream and, with other regions, its aggregate. */
  streams(): string[] {
    return this.provisioner.streams();
  }

  /** Connects to NATS (reconnecting forever afterwards). Idempotent. Does not touch JetStream. */
  async connect(): Promise<void> {
    this.assertOpen();
    if (this.link) return;
    this.connecting ??= NatsLink.open(
      {
        servers: this.opts.servers,
        name: this.opts.name,
        waitOnFirstConnect: this.opts.waitOnFirstConnect,
        requestTimeoutMs: this.opts.requestTimeoutMs,
        nkeySeed: this.opts.nkeySeed,
        tls: this.opts.tls,
        inboxPrefix: nodeInboxPrefix(this.opts.nodeId),
      },
      {
        disconnect: (server) => this.emit('disconnect', server),
        reconnect: (server) => {
          for (const r of this.readers.values()) r.onReconnect();
          this.emit('reconnect', server);
        },
        failure: (err) => this.fail(err),
      },
    )
      .then(async (link) => {
        if (this.closed) {
          await link.close();
          throw new ReplicationError('REPLICATION_USAGE', 'transport is closed');
        }
        this.link = link;
      })
      .finally(() => (this.connecting = undefined));
    await this.connecting;
  }

  /**
   * Creates or adopts this region's streams and this node's durable consumers (see
   * Provisioner.ensureAll). Needs the JetStream meta quorum only when something is missing or
   * different; retries while JetStream is unavailable, up to `setupTimeoutMs`.
   */
  async ensureStreams(): Promise<void> {
    this.requireLink();
    await this.retrying('ensure streams and consumers', () => this.provisioner.ensureAll((err) => this.fail(toError(err))));
    this.streamsReady = true;
  }

  /** Connect (if not yet) and create what is missing. Idempotent; retry it after a failure. */
  async start(): Promise<void> {
    await this.connect();
    if (!this.streamsReady) await this.ensureStreams();
  }

  /**
   * Stores one batch on this node's subject with `Nats-Msg-Id: msgId` and waits for the
   * stream's acknowledgement. A duplicate (the stream already had that id within its duplicate
   * window: a retry of a publish that was stored) is success. Throws ReplicationError:
   * `REPLICATION_UNAVAILABLE` when JetStream does not answer.
   */
  async publish(bytes: Uint8Array, msgId: string): Promise<void> {
    const link = this.requireLink();
    if (!msgId) throw new ReplicationError('REPLICATION_USAGE', 'msgId is required');
    let stream: string;
    try {
      // No `expect: {streamName}`: the Nats-Expected-Stream header is stored with the message
      // and then makes every aggregate stream reject it when sourcing ("expected stream does
      // not match"). The stream is checked on the ack instead.
      stream = (await link.js.publish(this.subject, bytes, { msgID: msgId, timeout: this.opts.requestTimeoutMs })).stream;
    } catch (err) {
      this.fail(toError(err));
      throw wrapError(`publish ${this.subject} (msg id ${msgId})`, err);
    }
    if (stream !== this.regionStream) {
      throw new ReplicationError('REPLICATION_CONFLICT', `publish ${this.subject}: stored in stream ${stream}, expected ${this.regionStream} (overlapping streams?)`);
    }
  }

  /**
   * Starts handing every stored message of both streams (this node's own included) to
   * `handler`, per stream in stream order, and resolves once both consumers are positioned
   * after `startAfterSeq` and receiving (see ./consumer.ts for how nothing is lost or
   * repeated). A handler error that is a refusal (CodecError, or `poison: true`) drops the
   * message for good with a `poison` event; any other error is retried in place with backoff.
   */
  async consume(handler: MessageHandler, opts: ConsumeOptions = {}): Promise<void> {
    this.assertOpen();
    if (this.consuming) throw new ReplicationError('REPLICATION_USAGE', 'consume() was already called');
    this.consuming = true;
    try {
      if (!this.link || !this.streamsReady) await this.start();
      const link = this.requireLink();
      const bypass = this.aggregateStream
        ? new SourceBypass({ nc: () => link.nc, connected: () => link.connected && !this.closed, closed: () => this.closed, failure: (err) => this.fail(err) }, handler)
        : null;
      const readers = this.streams().map(
        (stream) =>
          new StreamReader(
            {
              nc: () => link.nc,
              jsm: () => link.jsm,
              fastJsm: () => link.fastJsm,
              connected: () => link.connected && !this.closed,
              provisioner: this.provisioner,
              heartbeatMs: this.opts.heartbeatMs,
              failure: (err) => this.fail(err),
              poison: (event) => this.emit('poison', event),
              stalled: () => this.stalls++,
              sourced: stream === this.aggregateStream && bypass ? (h) => bypass.sourced(h) : undefined,
            },
            stream,
            handler,
          ),
      );
      for (const r of readers) {
        await this.retrying(`position consumer ${r.stream}/${this.durable}`, () => r.position(opts.startAfterSeq?.[r.stream] ?? 0));
      }
      for (const r of readers) {
        this.readers.set(r.stream, r);
        r.begin();
      }
      this.bypass = bypass;
      bypass?.start();
    } catch (err) {
      this.consuming = false;
      throw err;
    }
  }

  /**
   * Per stream, the highest sequence handed to the handler (or refused). Everything at or
   * below it is done: safe to persist as `startAfterSeq`.
   */
  watermarks(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.streams()) out[s] = this.readers.get(s)?.lastSeq ?? 0;
    return out;
  }

  /**
   * Per stream this node reads, its last sequence now (answered by each stream's leader in this
   * region, so it works while other regions are cut off).
   */
  async lastSequences(): Promise<Record<string, number>> {
    const link = this.requireLink();
    const out: Record<string, number> = {};
    for (const s of this.streams()) {
      try {
        out[s] = (await link.jsm.streams.info(s)).state.last_seq;
      } catch (err) {
        throw wrapError(`stream info ${s}`, err);
      }
    }
    return out;
  }

  get connected(): boolean {
    return !!this.link?.connected && !this.closed;
  }

  status(): TransportStatus {
    const streams: Record<string, StreamProgress> = {};
    for (const s of this.streams()) streams[s] = this.readers.get(s)?.progress() ?? { lastSeq: 0, lastAt: null, pending: null };
    const connected = this.connected;
    return {
      connected,
      server: connected ? this.link!.server : null,
      streamsReady: this.streamsReady,
      consuming: this.readers.size > 0 && !this.closed,
      reconnects: this.link?.reconnects ?? 0,
      stalls: this.stalls,
      lastError: this.lastError,
      streams,
    };
  }

  /** The underlying connection (tests, metrics). */
  get connection(): NatsConnection {
    return this.requireLink().nc;
  }

  /** Stops consuming, flushes pending publishes briefly, closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.bypass?.stop();
    await Promise.all([...this.readers.values()].map((r) => r.stop()));
    await this.connecting?.catch(() => {});
    await this.link?.close();
  }

  private fail(err: Error): void {
    this.lastError = { message: err.message, code: (err as { code?: string }).code, at: Date.now() };
    if (this.listenerCount('failure') > 0) this.emit('failure', err);
  }

  private assertOpen(): void {
    if (this.closed) throw new ReplicationError('REPLICATION_USAGE', 'transport is closed');
  }

  private requireLink(): NatsLink {
    this.assertOpen();
    if (!this.link) throw new ReplicationError('REPLICATION_USAGE', 'not connected: call start() (or connect()) first');
    return this.link;
  }

  /** Runs `fn`, retrying transient JetStream errors until `setupTimeoutMs` has passed. */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.opts.setupTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      this.assertOpen();
      try {
        return await fn();
      } catch (err) {
        // A missing stream may yet be provisioned by the admin: wait for it like for a quorum.
        const waitable = isTransient(err) || (err instanceof ReplicationError && err.code === 'REPLICATION_NOT_PROVISIONED');
        if (!waitable || Date.now() > deadline) throw wrapError(what, err);
        this.fail(toError(err));
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }
}
