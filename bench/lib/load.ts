/**
 * HTTP load with autocannon (programmatic, in the parent process; the server is a child).
 *
 * Latency percentiles are computed here from every response's duration (autocannon's event
 * gives it with sub-millisecond precision; its own histogram rounds to whole milliseconds,
 * too coarse for a "p99 ≤ bare + 1 ms" target). Throughput is responses / elapsed seconds.
 * Several runs of one target (segments interleaved with other targets) merge into one result.
 */
import autocannon, { type RequestParams } from 'autocannon';
import { percentileSorted } from '../../support/stats.ts';

export interface LoadOptions {
  url: string;
  body: string;
  /** Bodies sent in turn instead of `body` (e.g. checks of many keys), one shared rotation over all connections. */
  bodies?: readonly string[];
  connections: number;
  durationS: number;
}

/** One autocannon run: counts and every response's latency in ms. */
export interface LoadRun {
  responses: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  seconds: number;
  latencies: Float64Array;
}

export interface LoadSummary {
  /** Responses per second over all runs. */
  rps: number;
  responses: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  seconds: number;
  runs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export function load(o: LoadOptions): Promise<LoadRun> {
  return new Promise((resolve, reject) => {
    let lat = new Float64Array(1 << 16);
    let n = 0;
    const bodies = o.bodies;
    let next = 0;
    const inst = autocannon(
      {
        url: o.url,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: o.body,
        connections: o.connections,
        duration: o.durationS,
        pipelining: 1,
        timeout: 10,
        ...(bodies && bodies.length > 0
          ? { requests: [{ setupRequest: (req: RequestParams) => ({ ...req, body: bodies[next++ % bodies.length] }) }] }
          : {}),
      },
      (err, r) => {
        if (err) return reject(err);
        resolve({ responses: n, ok: r['2xx'], non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts, seconds: r.duration, latencies: lat.slice(0, n) });
      },
    );
    inst.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => {
      if (n === lat.length) {
        const next = new Float64Array(lat.length * 2);
        next.set(lat);
        lat = next;
      }
      lat[n++] = ms;
    });
  });
}

export function summarize(runs: readonly LoadRun[]): LoadSummary {
  const total = runs.reduce((a, r) => a + r.latencies.length, 0);
  const all = new Float64Array(total);
  let off = 0;
  for (const r of runs) {
    all.set(r.latencies, off);
    off += r.latencies.length;
  }
  all.sort();
  const sum = (f: (r: LoadRun) => number) => runs.reduce((a, r) => a + f(r), 0);
  const seconds = sum((r) => r.seconds);
  const responses = sum((r) => r.responses);
  return {
    rps: responses / seconds,
    responses,
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    seconds,
    runs: runs.length,
    p50Ms: percentileSorted(all, 50),
    p90Ms: percentileSorted(all, 90),
    p99Ms: percentileSorted(all, 99),
    maxMs: total > 0 ? all[total - 1] : NaN,
  };
}
