/**
 * An in-memory bus with the same shape as the JetStream layout (per region a stream of its own
 * nodes' batches, and an aggregate that sources every other region's stream), for testing the
 * replicator's logic on a simulated network, the way yjs tests its sync: links between regions
 * can be cut and healed (the aggregates catch up on heal, as JetStream sources do), a node can
 * lose its server, deliveries have random delays (so streams interleave in any order), and a
 * publish can be stored twice (a retry after a lost ack). `MemoryTransport` implements the
 * transport port (./port.ts) and passes the same contract suite as the JetStream transport.
 *
 * Time is real but short: delays are a few milliseconds of setTimeout.
 */
import { EventEmitter } from 'node:events';
import { isRefusal, ReplicationError } from './errors.ts';
import type { ConsumeOptions, MessageHandler, Transport, TransportEvents, TransportStatus } from './port.ts';

export interface MemoryBusOptions {
  regions: readonly string[];
  /** Delay of one delivery or one publish acknowledgement, in ms (default 0–2 ms at random). */
  delayMs?: () => number;
  /** Probability that a publish is stored twice (default 0). */
  duplicateRate?: number;
  /** Random source (default Math.random). */
  random?: () => number;
}

interface Stored {
  data: Uint8Array;
  origin: string;
}

/** A stream: an append-only list; sequence = index + 1. */
class Stream {
  readonly msgs: Stored[] = [];
  /** Consumers to wake when something is appended. */
  readonly watchers = new Set<() => void>();

  append(m: Stored): void {
    this.msgs.push(m);
    for (const w of this.watchers) w();
  }
}

export class MemoryBus {
  readonly regions: readonly string[];
  private readonly streams = new Map<string, Stream>();
  /** Per aggregate stream, per source region: how many of the source's messages were copied. */
  private readonly sourced = new Map<string, Map<string, number>>();
  private readonly cuts = new Set<string>();
  private readonly offline = new Set<string>();
  private readonly transports = new Set<MemoryTransport>();
  readonly delay: () => number;
  readonly duplicateRate: number;
  readonly random: () => number;

  constructor(opts: MemoryBusOptions) {
    this.regions = [...opts.regions];
    this.random = opts.random ?? Math.random;
    this.delay = opts.delayMs ?? (() => Math.floor(this.random() * 3));
    this.duplicateRate = opts.duplicateRate ?? 0;
    for (const r of this.regions) {
      this.streams.set(regionStream(r), new Stream());
      if (this.regions.length > 1) {
        this.streams.set(aggregateStream(r), new Stream());
        this.sourced.set(aggregateStream(r), new Map(this.regions.filter((o) => o !== r).map((o) => [o, 0])));
      }
    }
  }

  /** A transport for node `nodeId` of `region`. */
  transport(region: string, nodeId: string): MemoryTransport {
    if (!this.regions.includes(region)) throw new ReplicationError('REPLICATION_USAGE', `unknown region ${region}`);
    const t = new MemoryTransport(this, region, nodeId);
    this.transports.add(t);
    return t;
  }

  /** Cut the link between two regions (both directions); nothing is lost, sourcing waits. */
  cut(a: string, b: string): void {
    this.cuts.add(linkId(a, b));
  }

  /** Heal a cut link: the aggregates catch up on what they missed. */
  heal(a: string, b: string): void {
    this.cuts.delete(linkId(a, b));
    this.source();
  }

  /** Cut `region` off from every other region. */
  isolate(region: string): void {
    for (const r of this.regions) if (r !== region) this.cut(region, r);
  }

  /** Heal every link of `region`. */
  rejoin(region: string): void {
    for (const r of this.regions) if (r !== region) this.cuts.delete(linkId(region, r));
    this.source();
  }

  /** A node loses its connection to its region's server (publishes fail, nothing is delivered). */
  disconnect(nodeId: string): void {
    this.offline.add(nodeId);
    for (const t of this.transports) if (t.nodeId === nodeId) t.setConnected(false);
  }

  /** The node's connection comes back: it resumes where it was. */
  reconnect(nodeId: string): void {
    this.offline.delete(nodeId);
    for (const t of this.transports) if (t.nodeId === nodeId) t.setConnected(true);
  }

  isOnline(nodeId: string): boolean {
    return !this.offline.has(nodeId);
  }

  stream(name: string): Stream {
    const s = this.streams.get(name);
    if (s === undefined) throw new ReplicationError('REPLICATION_USAGE', `no stream ${name}`);
    return s;
  }

  /** Store a batch on `region`'s stream, twice now and then (a retried publish). */
  store(region: string, m: Stored): void {
    const s = this.stream(regionStream(region));
    s.append(m);
    if (this.duplicateRate > 0 && this.random() < this.duplicateRate) s.append(m);
    this.source();
  }

  /** Copy what each aggregate can reach of its sources (a JetStream source catching up). */
  private source(): void {
    for (const [agg, cursors] of this.sourced) {
      const region = agg.slice(0, -AGG_SUFFIX.length);
      for (const [src, done] of cursors) {
        if (this.cuts.has(linkId(region, src))) continue;
        const from = this.stream(regionStream(src)).msgs;
        if (done >= from.length) continue;
        const to = this.stream(agg);
        for (let i = done; i < from.length; i++) to.append(from[i]);
        cursors.set(src, from.length);
      }
    }
  }

  forget(t: MemoryTransport): void {
    this.transports.delete(t);
  }
}

const AGG_SUFFIX = ':agg';
function regionStream(region: string): string {
  return region;
}
function aggregateStream(region: string): string {
  return region + AGG_SUFFIX;
}
function linkId(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

interface Cursor {
  stream: string;
  next: number;
  lastSeq: number;
  lastAt: number | null;
  pending: number | null;
  scheduled: boolean;
  wake: () => void;
}

/** One node's view of the bus: implements the transport port. */
export class MemoryTransport extends EventEmitter<TransportEvents> implements Transport {
  private online: boolean;
  private started = false;
  private closed = false;
  private reconnects = 0;
  private handler: MessageHandler | undefined;
  private readonly cursors: Cursor[] = [];
  private lastError: TransportStatus['lastError'] = null;
  /** Publishes waiting for their acknowledgement (failed when the node disconnects). */
  private readonly inflight = new Set<(err: Error) => void>();

  constructor(
    private readonly bus: MemoryBus,
    readonly region: string,
    readonly nodeId: string,
  ) {
    super();
    this.online = bus.isOnline(nodeId);
  }

  get connected(): boolean {
    return this.online && !this.closed;
  }

  streams(): string[] {
    return this.bus.regions.length > 1 ? [regionStream(this.region), aggregateStream(this.region)] : [regionStream(this.region)];
  }

  async start(): Promise<void> {
    this.assertOpen();
    if (!this.online) throw this.unavailable('start');
    this.started = true;
  }

  publish(bytes: Uint8Array, _msgId: string): Promise<void> {
    this.assertOpen();
    if (!this.online) return Promise.reject(this.unavailable('publish'));
    const data = bytes.slice();
    return new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        this.inflight.delete(fail);
        reject(err);
      };
      this.inflight.add(fail);
      setTimeout(() => {
        if (!this.inflight.delete(fail)) return; // failed meanwhile (disconnect)
        if (!this.connected) return reject(this.unavailable('publish'));
        this.bus.store(this.region, { data, origin: this.nodeId });
        resolve();
      }, this.bus.delay());
    });
  }

  async consume(handler: MessageHandler, opts: ConsumeOptions = {}): Promise<void> {
    this.assertOpen();
    if (!this.started) throw new ReplicationError('REPLICATION_USAGE', 'call start() first');
    if (this.handler) throw new ReplicationError('REPLICATION_USAGE', 'consume() was already called');
    this.handler = handler;
    for (const name of this.streams()) {
      const after = Math.max(0, opts.startAfterSeq?.[name] ?? 0);
      const c: Cursor = { stream: name, next: after, lastSeq: after, lastAt: null, pending: null, scheduled: false, wake: () => this.schedule(c) };
      this.cursors.push(c);
      this.bus.stream(name).watchers.add(c.wake);
      this.schedule(c);
    }
  }

  async lastSequences(): Promise<Record<string, number>> {
    this.assertOpen();
    if (!this.online) throw this.unavailable('lastSequences');
    return Object.fromEntries(this.streams().map((s) => [s, this.bus.stream(s).msgs.length]));
  }

  status(): TransportStatus {
    return {
      connected: this.connected,
      server: null,
      streamsReady: this.started,
      consuming: this.handler !== undefined,
      reconnects: this.reconnects,
      stalls: 0,
      lastError: this.lastError,
      streams: Object.fromEntries(this.cursors.map((c) => [c.stream, { lastSeq: c.lastSeq, lastAt: c.lastAt, pending: c.pending }])),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.cursors) this.bus.stream(c.stream).watchers.delete(c.wake);
    for (const fail of [...this.inflight]) fail(this.unavailable('publish'));
    this.bus.forget(this);
  }

  /** Called by the bus. */
  setConnected(up: boolean): void {
    if (up === this.online || this.closed) return;
    this.online = up;
    if (!up) {
      for (const fail of [...this.inflight]) fail(this.unavailable('publish'));
      this.emit('disconnect', 'memory');
      return;
    }
    this.reconnects++;
    this.emit('reconnect', 'memory');
    for (const c of this.cursors) this.schedule(c);
  }

  private schedule(c: Cursor): void {
    if (c.scheduled || this.closed) return;
    c.scheduled = true;
    setTimeout(() => {
      c.scheduled = false;
      this.deliver(c);
    }, this.bus.delay());
  }

  /** Hand the next stored batch of one stream to the handler (one per turn, so streams interleave). */
  private deliver(c: Cursor): void {
    if (!this.connected || this.handler === undefined) return;
    const msgs = this.bus.stream(c.stream).msgs;
    if (c.next >= msgs.length) return;
    const m = msgs[c.next];
    const seq = ++c.next;
    try {
      this.handler({ data: m.data, origin: m.origin, stream: c.stream, streamSeq: seq, pending: msgs.length - seq });
    } catch (err) {
      this.lastError = { message: (err as Error).message, code: (err as { code?: string }).code, at: Date.now() };
      if (!isRefusal(err)) {
        c.next--; // retried
        setTimeout(() => this.schedule(c), 10);
        return;
      }
      this.emit('poison', { stream: c.stream, streamSeq: seq, origin: m.origin, error: err });
    }
    c.lastSeq = seq;
    c.lastAt = Date.now();
    c.pending = msgs.length - seq;
    if (c.next < msgs.length) this.schedule(c);
  }

  private unavailable(what: string): ReplicationError {
    return new ReplicationError('REPLICATION_UNAVAILABLE', `${what}: node ${this.nodeId} cannot reach the bus`);
  }

  private assertOpen(): void {
    if (this.closed) throw new ReplicationError('REPLICATION_USAGE', 'transport is closed');
  }
}
