/**
 * OpenTelemetry tracing, an adapter like metrics: with `--otlp-endpoint` set, spans are
 * exported over OTLP/HTTP (JSON) in batches; without it nothing is created at all (the check
 * path does not even test a sampler).
 *
 * Spans: `check` around one decision in every `--otlp-check-sample` (rule, policy, allowed,
 * cost; never the key), `replication.publish` around a published batch and
 * `replication.apply` around a received one (peer, cells, stream, sequence).
 */
import type { Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { CheckRequest, Decision, Limiter } from '../engine/types.ts';

export interface TracingOptions {
  /** OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces. */
  endpoint: string;
  node: string;
  region: string;
  /** Export a batch at least this often (ms, default 1000). */
  exportIntervalMs?: number;
}

export interface Tracing {
  readonly tracer: Tracer;
  /** Export what is buffered, then stop. */
  shutdown(): Promise<void>;
}

export function startTracing(o: TracingOptions): Tracing {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'regionlimit', 'service.instance.id': o.node, 'cloud.region': o.region }),
    sampler: new AlwaysOnSampler(),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: o.endpoint }), { scheduledDelayMillis: o.exportIntervalMs ?? 1000 })],
  });
  return { tracer: provider.getTracer('regionlimit'), shutdown: () => provider.shutdown() };
}

/** The limiter with a `check` span around one decision in `every` (1: all). */
export function traceChecks(inner: Limiter, tracer: Tracer, every: number): Limiter {
  let n = 0;
  return {
    nodeId: inner.nodeId,
    decide(req: CheckRequest, at: number): Decision {
      if (++n < every) return inner.decide(req, at);
      n = 0;
      const span = tracer.startSpan('check');
      try {
        const d = inner.decide(req, at);
        span.setAttributes({ 'regionlimit.rule': d.ruleId ?? '(none)', 'regionlimit.policy': d.policy ?? '', 'regionlimit.allowed': d.allowed, 'regionlimit.cost': req.cost ?? 1 });
        return d;
      } finally {
        span.end();
      }
    },
    ...(inner.decideAll !== undefined ? { decideAll: inner.decideAll.bind(inner) } : {}),
    refundAdmission: (a, at) => inner.refundAdmission(a, at),
    resetOwn: (req, at) => inner.resetOwn(req, at),
    admissionTtlMs: (ruleId) => inner.admissionTtlMs(ruleId),
    policies: (ruleId) => inner.policies(ruleId),
  };
}
