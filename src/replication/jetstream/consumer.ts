/**
 * Reading one stream through this node's durable push consumer (./provisioning.ts) and handing
 * each message to the handler in stream order, once per run. The server pushes every message
 * the moment it is stored: nothing waits for a batch or a pull. Without acks, the node's own
 * position (`lastSeq`, persisted by the application, back as `startAfterSeq`) is the truth:
 *
 * - a message at or below `lastSeq` (the consumer moved back) is dropped unseen;
 * - a message beyond `lastSeq + 1` reveals lost deliveries (sent to a connection that died, or
 *   skipped by a consumer that was ahead): the gap is fetched by sequence first (./fetch.ts);
 * - an idle heartbeat carries the consumer's last delivered sequence: a lost tail is fetched
 *   the same way, within one heartbeat interval;
 * - after a reconnect, and when the consumer falls silent (nothing for 2.5 heartbeat intervals
 *   while connected), the reader resynchronises: recreates a lost consumer or stream, replays a
 *   recreated stream, fetches what the consumer delivered (silent: what the stream holds).
 *
 * Flow-control requests are answered while the local queue is short: a slow handler throttles
 * the server instead of filling memory.
 */
import type { ConsumerInfo, JetStreamManager, Msg, NatsConnection, StreamInfo, Subscription } from 'nats';
import type { MessageHandler, ReplicatedMessage, StreamProgress, TransportEvents } from '../port.ts';
import { parseNodeSubject } from '../subjects.ts';
import { JS_ERR, isApiError, isRefusal, isTransient, toError } from './errors.ts';
import { RESYNC_REQUEST_TIMEOUT_MS } from './connection.ts';
import { fetchRange, type FetchContext } from './fetch.ts';
import { parseAckReply, type Provisioner } from './provisioning.ts';

/** What a reader needs from the transport. */
export interface ReaderContext {
  nc(): NatsConnection;
  /** JetStream management with the configured time-out (creating consumers and streams). */
  jsm(): JetStreamManager;
  /** JetStream management with a short time-out (resynchronisation and gap fetches, retried). */
  fastJsm(): JetStreamManager;
  connected(): boolean;
  provisioner: Provisioner;
  heartbeatMs: number;
  failure(err: Error): void;
  poison(event: TransportEvents['poison'][0]): void;
  /** The consumer was silent while its stream had more (counted in `status().stalls`). */
  stalled(): void;
  /** Told the `Nats-Stream-Source` header of every message handed over (aggregates: see ./bypass.ts). */
  sourced?(header: string | undefined): void;
}

/** When recreating the consumer at start is cheaper than skipping or fetching the difference. */
export const REPOSITION_LIMIT = 1000;
/** Queue length above which flow-control requests wait (the server stops sending meanwhile). */
const FC_HIGH_WATER = 2000;
const FC_LOW_WATER = 500;

type Item = { kind: 'msg'; seq: number; pending: number; subject: string; data: Uint8Array; source: string | undefined } | { kind: 'fill'; to: number };
type SyncReason = 'reconnect' | 'silence';

export class StreamReader {
  /** Highest sequence handed to the handler (or refused, or known gone); 0 = none yet. */
  lastSeq = 0;
  lastAt: number | null = null;
  pending: number | null = null;

  private readonly deliver: string;
  private sub: Subscription | null = null;
  private readonly queue: Item[] = [];
  /** Highest sequence queued (a message or the end of a fetch). */
  private queuedThrough = 0;
  /** Set and cleared synchronously by {@link pump}, so an item queued as it ends starts another. */
  private pumping = false;
  private pumped: Promise<void> = Promise.resolve();
  private parkedFc: string[] = [];
  /** Last time anything (message, heartbeat, flow control) came from the consumer. */
  private heardAt = Date.now();
  /** Highest stream sequence known to exist (for `pending` of fetched messages). */
  private knownLast = 0;
  private syncing: Promise<void> | null = null;
  private syncAgain: SyncReason | null = null;
  /** Bumped by a reconnect: a resync still waiting on the dead connection gives way. */
  private syncGen = 0;
  private lastSilenceSync = 0;
  private consecutiveStalls = 0;
  private watchdog: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly wakers = new Set<() => void>();
  private readonly fetching: FetchContext = {
    nc: () => this.ctx.nc(),
    timeoutMs: RESYNC_REQUEST_TIMEOUT_MS,
    stopped: () => this.stopped,
    sleep: (ms) => this.sleep(ms),
    failure: (err) => this.ctx.failure(err),
    streamGone: () => this.requestSync('silence'),
  };

  constructor(
    private readonly ctx: ReaderContext,
    readonly stream: string,
    private readonly handler: MessageHandler,
  ) {
    this.deliver = ctx.provisioner.deliverSubject(stream);
  }

  progress(): StreamProgress {
    return { lastSeq: this.lastSeq, lastAt: this.lastAt, pending: this.pending };
  }

  /** Positions the consumer right after `startAfter` (Provisioner.position); NATS errors are thrown. */
  async position(startAfter: number): Promise<void> {
    const { after, last } = await this.ctx.provisioner.position(this.stream, startAfter, REPOSITION_LIMIT, (err) => this.ctx.failure(toError(err)));
    this.lastSeq = after;
    this.queuedThrough = after;
    this.knownLast = last;
  }

  /** Starts receiving (after {@link position}). */
  begin(): void {
    this.heardAt = Date.now();
    this.subscribe();
    const every = Math.max(50, Math.floor(this.ctx.heartbeatMs / 2));
    this.watchdog = setInterval(() => this.checkSilence(), every);
    this.watchdog.unref();
  }

  /** The connection is back: find out what was lost meanwhile. */
  onReconnect(): void {
    this.heardAt = Date.now();
    this.requestSync('reconnect');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.sub?.unsubscribe();
    this.sub = null;
    for (const w of this.wakers) w();
    await Promise.all([this.pumped, this.syncing]);
  }

  private subscribe(): void {
    this.sub = this.ctx.nc().subscribe(this.deliver, {
      callback: (err, m) => {
        if (err) this.ctx.failure(err);
        else this.onDelivery(m);
      },
    });
  }

  private onDelivery(m: Msg): void {
    if (this.stopped) return;
    this.heardAt = Date.now();
    const h = m.headers;
    if (m.data.length === 0 && h && h.code >= 100 && h.code < 200) {
      if (m.reply) {
        this.answerFlowControl(m.reply); // a flow-control request
        return;
      }
      // An idle heartbeat: the consumer's last delivered sequence, and whether it waits for
      // the answer to a flow-control request that went to a dead connection.
      const stalled = h.get('Nats-Consumer-Stalled');
      if (stalled) this.answerFlowControl(stalled);
      const last = Number(h.get('Nats-Last-Stream'));
      if (Number.isSafeInteger(last) && last > 0) {
        if (last > this.knownLast) this.knownLast = last;
        if (last > this.queuedThrough && last > this.lastSeq) this.enqueue({ kind: 'fill', to: last });
      }
      return;
    }
    const info = parseAckReply(m.reply);
    if (!info || info.stream !== this.stream) {
      this.ctx.failure(new Error(`${this.stream}: unexpected message on ${this.deliver} (reply ${m.reply ?? 'none'})`));
      return;
    }
    if (info.seq + info.pending > this.knownLast) this.knownLast = info.seq + info.pending;
    this.enqueue({ kind: 'msg', seq: info.seq, pending: info.pending, subject: m.subject, data: m.data, source: h?.get('Nats-Stream-Source') || undefined });
  }

  private answerFlowControl(reply: string): void {
    if (this.queue.length < FC_HIGH_WATER) this.ctx.nc().publish(reply);
    else this.parkedFc.push(reply);
  }

  private releaseFlowControl(): void {
    if (this.queue.length < FC_LOW_WATER) for (const r of this.parkedFc.splice(0)) this.ctx.nc().publish(r);
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    const through = item.kind === 'msg' ? item.seq : item.to;
    if (through > this.queuedThrough) this.queuedThrough = through;
    if (!this.pumping) this.pumped = this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const item = this.queue.shift()!;
        try {
          if (item.kind === 'fill') await this.fetchThrough(item.to);
          else await this.take(item);
        } catch (err) {
          this.ctx.failure(toError(err));
        }
        this.releaseFlowControl();
      }
    } finally {
      this.pumping = false;
    }
    this.releaseFlowControl();
  }

  private async take(m: Extract<Item, { kind: 'msg' }>): Promise<void> {
    // Already processed (fetched ahead of the consumer, or the consumer moved back). Not a sign
    // of a recreated stream: a push's pending count can lag behind. The resync checks that.
    if (m.seq <= this.lastSeq) return;
    if (m.seq > this.lastSeq + 1) await this.fetchThrough(m.seq - 1);
    // Not handed over when the fetch stopped short (stopping, or the stream is gone: the
    // resync that follows recreates it and starts over).
    if (m.seq !== this.lastSeq + 1 || this.stopped) return;
    await this.hand(m.seq, m.subject, m.data, m.pending, m.source);
  }

  /** Calls the handler until it accepts or refuses the message; false when stopped first. */
  private async hand(seq: number, subject: string, data: Uint8Array, pending: number, source: string | undefined): Promise<boolean> {
    const origin = parseNodeSubject(subject)?.nodeId;
    const msg: ReplicatedMessage = { data, origin, stream: this.stream, streamSeq: seq, pending };
    for (let attempt = 0; ; attempt++) {
      try {
        this.handler(msg);
        break;
      } catch (err) {
        this.ctx.failure(toError(err));
        if (isRefusal(err)) {
          // Never redelivered: the position moves past it (no acks, nothing to terminate).
          this.ctx.poison({ stream: this.stream, streamSeq: seq, origin, error: err });
          break;
        }
        // Anything else (e.g. a busy store) is retried in place: replication waits, no skip.
        await this.sleep(Math.min(5000, 50 * 2 ** attempt));
        if (this.stopped) return false;
      }
    }
    this.lastSeq = seq;
    this.lastAt = Date.now();
    this.pending = pending;
    this.ctx.sourced?.(source);
    return true;
  }

  /**
   * Fetches and hands over what the stream holds after `lastSeq`, up to `to` (see ./fetch.ts).
   * Sequences it no longer holds (removed by its limits before they were delivered) are passed
   * over and reported.
   */
  private async fetchThrough(to: number): Promise<void> {
    if (to <= this.lastSeq || this.stopped) return;
    const from = this.lastSeq;
    let skipped = 0;
    await fetchRange(this.fetching, this.stream, from + 1, to, async (msg) => {
      if (msg.seq <= this.lastSeq) return true;
      skipped += msg.seq - this.lastSeq - 1;
      if (msg.seq > this.knownLast) this.knownLast = msg.seq;
      return this.hand(msg.seq, msg.subject, msg.data, Math.max(0, this.knownLast - msg.seq), msg.source);
    });
    if (skipped > 0) this.ctx.failure(new Error(`${this.stream}: ${skipped} messages after sequence ${from} were no longer stored when fetched`));
  }

  private checkSilence(): void {
    if (this.stopped || !this.ctx.connected() || this.syncing) return;
    const limit = this.ctx.heartbeatMs * 2.5;
    const now = Date.now();
    if (now - this.heardAt > limit && now - this.lastSilenceSync > limit) {
      this.lastSilenceSync = now;
      this.requestSync('silence');
    }
  }

  /**
   * Runs {@link sync} (once more afterwards if asked again meanwhile), retrying while connected.
   * A reconnect does not wait for a resync in progress: its requests may sit on the dead
   * connection until they time out.
   */
  private requestSync(reason: SyncReason): void {
    if (this.stopped) return;
    if (this.syncing && reason !== 'reconnect') {
      this.syncAgain ??= reason;
      return;
    }
    const gen = ++this.syncGen;
    this.syncAgain = null;
    const current = (this.ctx.connected() ? this.runSync(reason, gen) : Promise.resolve()).finally(() => {
      if (this.syncing === current) this.syncing = null;
    });
    this.syncing = current;
  }

  private async runSync(reason: SyncReason, gen: number): Promise<void> {
    for (let r: SyncReason | null = reason; r && gen === this.syncGen; r = this.syncAgain, this.syncAgain = null) {
      // Not connected: give up, the reconnect syncs again.
      for (let attempt = 0; !this.stopped && this.ctx.connected() && gen === this.syncGen; attempt++) {
        try {
          await this.sync(r);
          break;
        } catch (err) {
          if (!isTransient(err) || attempt > 0) this.ctx.failure(toError(err));
          await this.sleep(Math.min(1000, 100 * 2 ** attempt));
        }
      }
    }
  }

  /** See the file comment. Throws NATS errors (retried by the caller). */
  private async sync(reason: SyncReason): Promise<void> {
    const p = this.ctx.provisioner;
    const fast = this.ctx.fastJsm();
    // Handed over before asking, so stored before the answer was made: the answer's last
    // sequence cannot be below it unless the stream was recreated. (What arrives meanwhile can
    // be beyond the answer's last sequence.)
    const handed = this.lastSeq;
    let si: StreamInfo;
    try {
      si = await fast.streams.info(this.stream);
    } catch (err) {
      if (!isApiError(err, JS_ERR.STREAM_NOT_FOUND)) throw err;
      this.ctx.failure(new Error(`stream ${this.stream} was lost; recreating it`));
      si = await p.ensureStream(p.streamConfig(this.stream));
    }
    if (si.state.last_seq < handed) {
      this.ctx.failure(new Error(`${this.stream}: last processed ${handed} is beyond the stream's last sequence ${si.state.last_seq}; the stream was recreated, replaying it`));
      this.queue.length = 0;
      this.lastSeq = 0;
      this.queuedThrough = 0;
      this.knownLast = si.state.last_seq;
      await p.recreateConsumer(this.stream, 1);
      return;
    }
    if (si.state.last_seq > this.knownLast) this.knownLast = si.state.last_seq;
    let info: ConsumerInfo | null | undefined;
    try {
      info = await p.consumerInfo(this.stream, fast);
    } catch (err) {
      // Cut off from the meta quorum, 2.9 answers the info of a missing consumer with 10008
      // (and cannot create one). After a reconnect: the next delivery or idle heartbeat
      // reveals what was lost; when silent: fetch what the stream holds (direct gets work).
      if (!isApiError(err, JS_ERR.CLUSTER_NOT_AVAILABLE)) throw err;
      if (reason === 'reconnect') return;
      info = undefined;
    }
    if (info === null || (info && !p.consumerMatches(this.stream, info))) {
      this.ctx.failure(new Error(`consumer ${this.stream}/${p.durable} was lost; recreating it at sequence ${this.lastSeq + 1}`));
      // Meanwhile (it needs the meta quorum, which may take a while) read the stream directly.
      if (si.state.last_seq > this.queuedThrough) this.enqueue({ kind: 'fill', to: si.state.last_seq });
      await p.placeConsumer(this.stream, this.lastSeq + 1, 0);
      return;
    }
    // What the consumer sent that never arrived (to a dead connection). When silent although it
    // has more to send (or unknown): stuck, so whatever the stream holds. Silent with nothing
    // to send: its heartbeats are just late.
    const lost = info ? Math.min(info.delivered.stream_seq, si.state.last_seq) : 0;
    const stuck = reason === 'silence' && (!info || info.num_pending > 0) && si.state.last_seq > this.lastSeq;
    const target = stuck ? si.state.last_seq : lost;
    if (target <= this.queuedThrough || target <= this.lastSeq) {
      if (reason === 'silence') this.consecutiveStalls = 0;
      return;
    }
    if (stuck) {
      this.ctx.stalled();
      this.consecutiveStalls++;
      // Renew the interest (a consumer that missed the old connection's departure resumes).
      this.sub?.unsubscribe();
      this.subscribe();
    }
    this.enqueue({ kind: 'fill', to: target });
    if (this.consecutiveStalls >= 3) {
      this.consecutiveStalls = 0;
      this.ctx.failure(new Error(`consumer ${this.stream}/${p.durable} stays silent; recreating it at sequence ${target + 1}`));
      await p.recreateConsumer(this.stream, target + 1).catch((err: unknown) => this.ctx.failure(toError(err)));
    }
  }

  /** A pause that {@link stop} cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => void (clearTimeout(t), this.wakers.delete(done), resolve());
      const t = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }
}
