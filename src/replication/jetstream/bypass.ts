/**
 * Catching up across regions without waiting for sourcing. A region's aggregate stream copies
 * the other regions' streams by JetStream sourcing, and after a partition heals or a server
 * restarts, nats-server 2.9 resumes sourcing seconds later (measured 2.5–3.5 s after a healed
 * gateway, while a direct get across that gateway already works after ~1.1 s). So the node
 * reads the origin streams itself while they look stalled:
 *
 * - every message the aggregate hands over carries `Nats-Stream-Source: <origin stream> <seq>`;
 *   the highest origin sequence seen per origin stream, and when, are kept here;
 * - an origin stream silent for longer than `staleMs` (its nodes send heartbeats every second,
 *   so silence means a cut or a stalled source, or no live node there) is read directly, by
 *   direct gets from the next origin sequence on, for up to `attemptMs` per try;
 * - what it finds goes to the same handler, under the origin stream's name. Merging is
 *   idempotent, so the aggregate delivering the same batches later changes nothing.
 */
import type { MessageHandler } from '../port.ts';
import { parseNodeSubject } from '../subjects.ts';
import { isRefusal, toError } from './errors.ts';
import { fetchRange, type FetchContext } from './fetch.ts';
import type { NatsConnection } from 'nats';

export interface BypassContext {
  nc(): NatsConnection;
  connected(): boolean;
  closed(): boolean;
  failure(err: Error): void;
}

export interface BypassOptions {
  /** Read an origin stream directly after this long without a message from it (ms). Default 1500. */
  staleMs?: number;
  /** How long one try keeps retrying an unreachable origin (ms); the next try follows at once. Default 1000. */
  attemptMs?: number;
  /** How often origins are checked (ms). Default 250. */
  intervalMs?: number;
}

interface Origin {
  /** Highest origin sequence handed over, by the aggregate or by a direct read. */
  seen: number;
  /** When the aggregate last delivered a batch of this origin (direct reads do not count). */
  heardAt: number;
  /** No direct read before this (after the origin answered with nothing new). */
  nextTryAt: number;
  running: boolean;
}

/** A direct read, once the origin answers, may take this long (a backlog of a long partition). */
const BULK_MS = 30_000;

export class SourceBypass {
  private readonly origins = new Map<string, Origin>();
  private timer: NodeJS.Timeout | null = null;
  private readonly o: Required<BypassOptions>;
  /** Batches handed over by a direct read (for status and tests). */
  fetched = 0;

  constructor(
    private readonly ctx: BypassContext,
    private readonly handler: MessageHandler,
    opts: BypassOptions = {},
  ) {
    this.o = { staleMs: opts.staleMs ?? 1500, attemptMs: opts.attemptMs ?? 1000, intervalMs: opts.intervalMs ?? 250 };
  }

  /** The aggregate handed over a message with this `Nats-Stream-Source` header. */
  sourced(header: string | undefined): void {
    if (header === undefined) return;
    const space = header.lastIndexOf(' ');
    const seq = Number(header.slice(space + 1));
    if (space <= 0 || !Number.isSafeInteger(seq)) return;
    const name = header.slice(0, space).split(':')[0]!;
    const o = this.origins.get(name);
    if (o === undefined) this.origins.set(name, { seen: seq, heardAt: Date.now(), nextTryAt: 0, running: false });
    else {
      if (seq > o.seen) o.seen = seq;
      o.heardAt = Date.now();
    }
  }

  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    if (this.ctx.closed() || !this.ctx.connected()) return;
    const now = Date.now();
    for (const [name, o] of this.origins) {
      // Read while the aggregate stays quiet about this origin: at every tick while reads find
      // something (the origin is live, its sourcing is not), every staleMs while they find
      // nothing (an origin without live nodes), at once again while it cannot be reached.
      if (o.running || now - o.heardAt < this.o.staleMs || now < o.nextTryAt) continue;
      o.running = true;
      void this.read(name, o).then(
        ({ answered, found }) => {
          o.running = false;
          o.nextTryAt = answered && !found ? Date.now() + this.o.staleMs : 0;
        },
        (err: unknown) => {
          o.running = false;
          this.ctx.failure(toError(err));
        },
      );
    }
  }

  /** One try: hand over what `name` holds after the last origin sequence seen. */
  private async read(name: string, o: Origin): Promise<{ answered: boolean; found: boolean }> {
    const context = (ms: number): FetchContext => {
      const deadline = Date.now() + ms;
      return {
        nc: () => this.ctx.nc(),
        timeoutMs: 250,
        stopped: () => this.ctx.closed() || Date.now() > deadline,
        sleep: (t) => new Promise((r) => setTimeout(r, Math.min(t, 100)).unref()),
        failure: () => {}, // an unreachable origin is the expected case here
        streamGone: () => {},
      };
    };
    const each = async (msg: { seq: number; subject: string; data: Uint8Array }): Promise<boolean> => {
      if (msg.seq <= o.seen) return true;
      try {
        this.handler({ data: msg.data, origin: parseNodeSubject(msg.subject)?.nodeId, stream: name, streamSeq: msg.seq, pending: 0 });
      } catch (err) {
        if (!isRefusal(err)) {
          this.ctx.failure(toError(err));
          return false; // read again on a later try
        }
      }
      o.seen = msg.seq;
      this.fetched++;
      return true;
    };
    // One request first (while the origin is unreachable, only it is retried, up to attemptMs),
    // then, once it answered with a batch, the rest.
    const before = this.fetched;
    const answered = await fetchRange(context(this.o.attemptMs), name, o.seen + 1, o.seen + 1, each);
    if (this.fetched > before) await fetchRange(context(BULK_MS), name, o.seen + 1, Number.MAX_SAFE_INTEGER, each);
    return { answered, found: this.fetched > before };
  }
}
