/**
 * A histogram for the check path: an observation is a few comparisons and three additions on
 * preallocated arrays (prom-client's Histogram#observe costs several hundred nanoseconds per
 * call, as much as a decision itself). It registers in a prom-client Registry like any metric
 * and is rendered by it in the usual `_bucket`/`_sum`/`_count` form.
 */
import type { Registry } from 'prom-client';

export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    private readonly bounds: Float64Array,
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  /** One observation (seconds). */
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    if (i < b.length) this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: Float64Array;
  private readonly series: HistogramSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    registry: Registry,
  ) {
    this.bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The series of these labels (create it once and keep it: lookups are for set-up, not the hot path). */
  labels(labels: Readonly<Record<string, string>>): HistogramSeries {
    const key = JSON.stringify(labels);
    let s = this.series.find((x) => JSON.stringify(x.labels) === key);
    if (s === undefined) this.series.push((s = new HistogramSeries(this.bounds, labels)));
    return s;
  }

  /** What prom-client's Registry renders (the same shape as its own Histogram#get). */
  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    const values: MetricValue[] = [];
    for (const s of this.series) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i];
        values.push({ value: acc, labels: { ...s.labels, le: this.bounds[i] }, metricName: `${this.name}_bucket` });
      }
      values.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: `${this.name}_bucket` });
      values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: { ...s.labels }, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    for (const s of this.series) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
