/**
 * Time to converge, as one node sees it: how long it takes to work through a backlog of a
 * stream (after a partition heals, a peer or NATS server comes back, or this node restarts).
 *
 * An episode starts at the first batch handed over with at least `minBacklog` batches still
 * waiting behind it in its stream, and ends at the first batch with none waiting (the node has
 * merged everything the stream held when it started): its duration is the time to converge on
 * that stream. Short queues under steady load (a few batches) are not episodes. Per stream, the
 * last episode and the count of episodes are kept for /v1/status and the metrics. Time is a
 * parameter.
 */
export interface CatchUpStats {
  /** Episodes completed. */
  episodes: number;
  /** Duration of the last completed episode (ms), or null. */
  lastMs: number | null;
  /** Batches waiting when the last episode started. */
  lastBacklog: number | null;
  /** When the last episode ended (ms since epoch), or null. */
  lastAt: number | null;
  /** Since when the stream is being worked through now (ms since epoch), or null. */
  since: number | null;
}

export class CatchUp {
  private readonly byStream = new Map<string, CatchUpStats & { backlog: number }>();

  constructor(private readonly minBacklog = 10) {}

  /** A batch of `stream` was handled at `now` with `pending` batches still waiting behind it. */
  note(stream: string, pending: number, now: number): void {
    let s = this.byStream.get(stream);
    if (s === undefined) this.byStream.set(stream, (s = { episodes: 0, lastMs: null, lastBacklog: null, lastAt: null, since: null, backlog: 0 }));
    if (s.since === null) {
      if (pending >= this.minBacklog) {
        s.since = now;
        s.backlog = pending + 1;
      }
      return;
    }
    if (pending > 0) return;
    s.episodes++;
    s.lastMs = now - s.since;
    s.lastBacklog = s.backlog;
    s.lastAt = now;
    s.since = null;
  }

  stats(): Record<string, CatchUpStats> {
    const out: Record<string, CatchUpStats> = {};
    for (const [stream, { backlog: _, ...s }] of this.byStream) out[stream] = s;
    return out;
  }
}
