/**
 * Prometheus metrics of one node (prom-client), an adapter around the engine like HTTP, NATS
 * and SQLite: the engine keeps no metrics of its own.
 *
 * What a check costs: the limiter handed to HTTP is wrapped (`wrap`) so that each decision
 * adds one to a plain per-rule counter and one observation to the engine latency histogram;
 * an onResponse hook observes the HTTP latency of the check routes. Everything else
 * (replication, overshoot, keys, storage) is read from the node's existing counters when
 * Prometheus scrapes, so it costs nothing between scrapes.
 *
 * Cardinality is bounded by configuration, never by traffic: labels are rule ids, policy
 * names, peer node ids, stream names, routes, status codes and error codes. No key is ever
 * a label.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FastifyInstance, onRequestHookHandler, onResponseHookHandler } from 'fastify';
import type { EngineStats } from '../engine/engine.ts';
import type { CheckRequest, Decision, Limiter, MultiDecision } from '../engine/types.ts';
import type { CodecErrorCode } from '../../crdt/index.ts';
import type { ReplicationErrorCode } from '../replication/errors.ts';
import type { Replicator } from '../replication/replicator.ts';
import type { PersistenceStats } from '../storage/persistence.ts';
import { FastHistogram, type HistogramSeries } from './histogram.ts';

/** What the metrics read from the node at scrape time (a subset of GET /v1/status). */
export interface MetricsSnapshot {
  engine: EngineStats;
  admissions: { held: number; forgottenEarly: number };
  persistence: PersistenceStats;
  storage: { state: 'ok' | 'degraded'; writable: boolean; fault: { code: string } | null };
  overshoot: ReadonlyArray<{ ruleId: string; policy: string; limit: number; windowMs: number; bound: number; observed?: number; nodes: number }>;
  /** The rules in force (src/rules/register.ts); absent: not reported. */
  rules?: { version: string; appliedAt: number; stats: { refused: number } };
}

export interface MetricsSources {
  node: string;
  region: string;
  status(): MetricsSnapshot;
  readiness(): { ready: boolean; degraded?: boolean };
  /** Absent while the node runs alone (then no replication metric is exported). */
  replicator: Replicator | undefined;
  /** The node's clock (ms since epoch). */
  now(): number;
}

/** The label value of a check that matched no rule (rule ids cannot contain parentheses). */
export const NO_RULE = '(none)';

/** Codes a received batch is refused with (src/replication/replicator.ts), exported from 0. */
const REFUSAL_CODES: ReadonlyArray<CodecErrorCode | ReplicationErrorCode> = [
  'CODEC_MALFORMED',
  'CODEC_UNSUPPORTED_VERSION',
  'CODEC_LIMIT_EXCEEDED',
  'CODEC_INVALID_FIELD',
  'REPLICATION_FORGED',
  'REPLICATION_BATCH_TOO_LARGE',
  'REPLICATION_TOO_MANY_PEERS',
];

/** Check routes whose HTTP latency is observed (fastify route urls). */
const CHECK_ROUTES = new Set(['/v1/check', '/v1/check/batch']);

/** Seconds: 1 µs (an engine decision) to 1 s (a slow HTTP answer). */
const LATENCY_BUCKETS = [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.25, 1];
const FLUSH_BUCKETS = [1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1, 5];

export class NodeMetrics {
  readonly registry = new Registry();
  /** Per rule id: [allowed, denied] decisions (plain numbers: the hot path does no more than add). */
  private readonly checks = new Map<string | null, [number, number]>();
  private readonly engineLatency: HistogramSeries;
  private readonly httpLatency = new Map<string, HistogramSeries>();
  /** Per route and status: requests answered (collected on scrape). */
  private readonly httpRequests = new Map<string, { route: string; code: string; n: number }>();
  private readonly flushLatency: Histogram;
  private readonly latency: FastHistogram;
  /** The snapshot of the scrape in progress (read once per scrape by every collector). */
  private snap: { status: MetricsSnapshot; ready: { ready: boolean; degraded?: boolean }; now: number } | undefined;

  constructor(private readonly src: MetricsSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    const snapshot = () => this.current();

    new Gauge({ name: 'regionlimit_node_info', help: 'This node: its id and region (always 1).', labelNames: ['node', 'region'], registers: [r] }).set({ node: src.node, region: src.region }, 1);

    // ---- checks ----
    const checks = this.checks;
    new Counter({
      name: 'regionlimit_checks_total',
      help: 'Checks decided, by rule and outcome (allowed, denied; bypassed: no rule matched, nothing counted).',
      labelNames: ['rule', 'outcome'],
      registers: [r],
      collect() {
        this.reset();
        for (const [rule, [allowed, denied]] of checks) {
          if (rule === null) this.inc({ rule: NO_RULE, outcome: 'bypassed' }, allowed);
          else {
            this.inc({ rule, outcome: 'allowed' }, allowed);
            this.inc({ rule, outcome: 'denied' }, denied);
          }
        }
      },
    });
    this.latency = new FastHistogram(
      'regionlimit_check_duration_seconds',
      'Time to decide a check: layer="engine" is the decision alone, layer="http" the whole request of a check route (a batch counts once).',
      LATENCY_BUCKETS,
      r,
    );
    this.engineLatency = this.latency.labels({ layer: 'engine' });
    const requests = this.httpRequests;
    counter(r, 'regionlimit_http_requests_total', 'HTTP requests answered, by route and status code.', ['route', 'code'], (c) => {
      for (const q of requests.values()) c.inc({ route: q.route, code: q.code }, q.n);
    });

    // ---- keys ----
    gauge(r, 'regionlimit_live_keys', 'Keys with live counts held in memory (all limits together).', [], (g) => g.set(snapshot().status.engine.liveKeys));
    counter(r, 'regionlimit_evicted_keys_total', 'Keys dropped from memory: reason="cap" (--max-keys reached, least recently used) or "idle" (every slot expired).', ['reason'], (c) => {
      const e = snapshot().status.engine;
      c.inc({ reason: 'cap' }, e.capEvictions);
      c.inc({ reason: 'idle' }, e.idleEvictions);
    });
    counter(r, 'regionlimit_rule_key_cap_denials_total', 'Checks of new keys denied because their rule held its maxKeys (RULE_KEY_CAP).', [], (c) => c.inc(snapshot().status.engine.ruleKeyCapDenials));
    counter(r, 'regionlimit_priority_reserved_denials_total', "Checks denied because only their rule's reserve was left and their priority is below it (PRIORITY_RESERVED).", [], (c) => c.inc(snapshot().status.engine.priorityReservedDenials));
    counter(r, 'regionlimit_priority_bypasses_total', 'Checks a rule let through uncounted because of their priority (bypass).', [], (c) => c.inc(snapshot().status.engine.priorityBypasses));
    gauge(r, 'regionlimit_admissions_held', 'Admission ids remembered for refunds.', [], (g) => g.set(snapshot().status.admissions.held));
    gauge(r, 'regionlimit_rules_info', 'The version of the rules in force (label version, always 1): every node shows the same one once a change has converged.', ['version'], (g) => {
      const v = snapshot().status.rules;
      if (v !== undefined) g.set({ version: v.version }, 1);
    });
    gauge(r, 'regionlimit_rules_version_timestamp_seconds', 'Timestamp of the rules version in force (0: the local rules file, never changed at run time); max - min across nodes > 0 means a change has not reached every node yet.', [], (g) => {
      const v = snapshot().status.rules;
      if (v !== undefined) g.set(Number(v.version.slice(0, v.version.indexOf('.'))) / 1000);
    });
    counter(r, 'regionlimit_rules_refused_total', 'Replicated rules documents refused because they failed validation (REPLICATION_RULES_INVALID).', [], (c) => c.inc(snapshot().status.rules?.stats.refused ?? 0));
    gauge(r, 'regionlimit_rule_scopes', 'Limits (scopes) of the rules in force.', [], (g) => g.set(snapshot().status.engine.scopes));

    // ---- overshoot ----
    gauge(r, 'regionlimit_overshoot_bound', 'How far all nodes together can currently exceed a limit (CONSISTENCY.md §8), in cost units; 0 for a node running alone.', ['rule', 'policy'], (g) => {
      for (const o of snapshot().status.overshoot) g.set({ rule: o.ruleId, policy: o.policy }, o.bound);
    });
    gauge(r, 'regionlimit_overshoot_observed', 'Largest usage above a limit that merging remote counts revealed in the last window, in cost units.', ['rule', 'policy'], (g) => {
      for (const o of snapshot().status.overshoot) g.set({ rule: o.ruleId, policy: o.policy }, o.observed ?? 0);
    });
    gauge(r, 'regionlimit_limit', 'The limit of a policy (requests per window, or bucket capacity).', ['rule', 'policy'], (g) => {
      for (const o of snapshot().status.overshoot) g.set({ rule: o.ruleId, policy: o.policy }, o.limit);
    });

    // ---- state and storage ----
    gauge(r, 'regionlimit_ready', '1 when the node is ready to serve (GET /readyz answers 200).', [], (g) => g.set(snapshot().ready.ready ? 1 : 0));
    gauge(r, 'regionlimit_degraded', '1 when the node serves degraded (storage failing, NATS disconnected, catching up): GET /readyz reasons say why.', [], (g) => g.set(snapshot().ready.degraded === true ? 1 : 0));
    gauge(r, 'regionlimit_storage_degraded', '1 while the state store is degraded; the code label names the fault (STORAGE_* codes, docs/ERRORS.md).', ['code'], (g) => {
      const s = snapshot().status.storage;
      if (s.fault !== null) g.set({ code: s.fault.code }, 1);
      else g.set({ code: '' }, 0);
    });
    gauge(r, 'regionlimit_storage_writable', '1 when the data directory can be written.', [], (g) => g.set(snapshot().status.storage.writable ? 1 : 0));
    this.flushLatency = new Histogram({ name: 'regionlimit_sqlite_flush_duration_seconds', help: 'Time of each successful SQLite write (flush).', buckets: FLUSH_BUCKETS, registers: [r] });
    counter(r, 'regionlimit_sqlite_flush_failures_total', 'SQLite writes that failed (the rows are kept in memory and retried).', [], (c) => c.inc(snapshot().status.persistence.failures));
    counter(r, 'regionlimit_sqlite_rows_written_total', 'Rows (cells) written to SQLite.', [], (c) => c.inc(snapshot().status.persistence.rowsWritten));
    gauge(r, 'regionlimit_sqlite_retry_rows', 'Rows of failed writes held in memory for the next attempt.', [], (g) => g.set(snapshot().status.persistence.retryRows));
    counter(r, 'regionlimit_sqlite_dropped_rows_total', 'Rows of failed writes dropped because too many were held.', [], (c) => c.inc(snapshot().status.persistence.droppedRows));

    // ---- replication ----
    const rep = src.replicator;
    if (rep === undefined) return;
    gauge(r, 'regionlimit_replication_connected', '1 while connected to NATS (absent for a node running alone).', [], (g) => {
      g.set(rep.transportStatus().connected ? 1 : 0);
    });
    gauge(r, 'regionlimit_replication_caught_up', '1 once the consumers have reached the ends of the streams.', [], (g) => {
      g.set(rep.isCaughtUp ? 1 : 0);
    });
    counter(r, 'regionlimit_replication_reconnects_total', 'Reconnections to NATS.', [], (c) => {
      c.inc(rep.transportStatus().reconnects);
    });
    gauge(r, 'regionlimit_replication_pending_messages', 'Messages a stream holds that this node has not read yet.', ['stream'], (g) => {
      for (const [stream, s] of Object.entries(rep.transportStatus().streams)) if (s.pending !== null) g.set({ stream }, s.pending);
    });
    gauge(r, 'regionlimit_replication_lag_seconds', "Transport lag of a peer's batches (receive time − send time) over its last 512 batches, by quantile.", ['peer', 'quantile'], (g) => {
      const s = snapshot();
      for (const p of rep.peers.stats(s.now)) {
        g.set({ peer: p.node, quantile: '0.5' }, p.lagP50Ms / 1000);
        g.set({ peer: p.node, quantile: '0.99' }, p.lagP99Ms / 1000);
      }
    });
    gauge(r, 'regionlimit_replication_catch_up_seconds', 'Time to converge on a stream: how long the last backlog (10 batches or more) took to work through, from its first batch to none waiting.', ['stream'], (g) => {
      for (const [stream, c] of Object.entries(rep.catchUp.stats())) if (c.lastMs !== null) g.set({ stream }, c.lastMs / 1000);
    });
    counter(r, 'regionlimit_replication_catch_ups_total', 'Backlogs (10 batches or more) of a stream worked through.', ['stream'], (c) => {
      for (const [stream, s] of Object.entries(rep.catchUp.stats())) c.inc({ stream }, s.episodes);
    });
    gauge(r, 'regionlimit_peer_staleness_seconds', 'Time since anything (a heartbeat included) was last heard from a peer.', ['peer'], (g) => {
      const s = snapshot();
      for (const p of rep.peers.stats(s.now)) g.set({ peer: p.node }, p.stalenessMs / 1000);
    });
    counter(r, 'regionlimit_replication_deltas_received_total', 'Batches (deltas and heartbeats) received from a peer.', ['peer'], (c) => {
      const s = snapshot();
      for (const p of rep.peers.stats(s.now)) c.inc({ peer: p.node }, p.messages);
    });
    counter(r, 'regionlimit_replication_cells_received_total', 'Cells received from a peer.', ['peer'], (c) => {
      const s = snapshot();
      for (const p of rep.peers.stats(s.now)) c.inc({ peer: p.node }, p.cells);
    });
    counter(r, 'regionlimit_replication_bytes_received_total', 'Bytes of the batches received and merged (own batches replayed at start included).', [], (c) => {
      c.inc(rep.stats.bytes);
    });
    counter(r, 'regionlimit_replication_deltas_sent_total', 'Batches this node published (heartbeats included).', [], (c) => {
      c.inc(rep.shipper.stats.messages);
    });
    counter(r, 'regionlimit_replication_bytes_sent_total', 'Bytes this node published.', [], (c) => {
      c.inc(rep.shipper.stats.bytes);
    });
    counter(r, 'regionlimit_replication_cells_sent_total', 'Cells this node published.', [], (c) => {
      c.inc(rep.shipper.stats.cells);
    });
    counter(r, 'regionlimit_replication_publish_errors_total', 'Publishes that failed (their cells ship again with the next batch).', [], (c) => {
      c.inc(rep.shipper.stats.publishErrors);
    });
    counter(r, 'regionlimit_replication_refused_total', 'Received batches refused for good, by code (CODEC_* and REPLICATION_* codes, docs/ERRORS.md).', ['code'], (c) => {
      // Every code from 0, so that the first refusal shows as an increase.
      for (const code of REFUSAL_CODES) c.inc({ code }, 0);
      for (const [code, n] of Object.entries(rep.refusedCounts())) c.inc({ code }, n);
    });
    gauge(r, 'regionlimit_degradation_active', '1 while a peer is staler than --stale-after or NATS is unreachable: rules apply their degradation mode (share, open, closed).', [], (g) => {
      g.set(rep.modes.degraded ? 1 : 0);
    });
    counter(r, 'regionlimit_degraded_denials_total', 'Checks denied by a rule\'s degradation mode while degraded (share: this node used its share; closed).', ['mode'], (c) => {
      const e = snapshot().status.engine;
      c.inc({ mode: 'share' }, e.degradedShareDenials);
      c.inc({ mode: 'closed' }, e.degradedClosedDenials);
    });
    counter(r, 'regionlimit_share_waits_total', 'Decisions of SHARE_WAIT: a key near its limit waited for the peers\' counts before this node admitted more (near-limit sharing; a check that waits is decided again as batches arrive, so it may count several times).', [], (c) => {
      c.inc(rep.sharingCounters()?.waits ?? 0);
    });
    counter(r, 'regionlimit_share_grants_total', 'Grants of a key\'s headroom beyond this node\'s escrow (near-limit sharing).', [], (c) => {
      c.inc(rep.sharingCounters()?.grants ?? 0);
    });
    counter(r, 'regionlimit_replication_refused_cells_total', 'Received cells refused as impossible for an honest node, by reason.', ['reason'], (c) => {
      for (const [reason, n] of Object.entries(snapshot().status.engine.refusedCells)) c.inc({ reason }, n);
    });
  }

  /** The limiter HTTP calls: the same, counting each decision and timing it. */
  wrap(inner: Limiter): Limiter {
    const checks = this.checks;
    const hist = this.engineLatency;
    return {
      nodeId: inner.nodeId,
      decide(req: CheckRequest, at: number): Decision {
        const t0 = performance.now();
        const d = inner.decide(req, at);
        hist.observe((performance.now() - t0) / 1000);
        let c = checks.get(d.ruleId);
        if (c === undefined) checks.set(d.ruleId, (c = [0, 0]));
        c[d.allowed ? 0 : 1]++;
        return d;
      },
      ...(inner.decideAll !== undefined
        ? {
            decideAll(reqs: readonly CheckRequest[], at: number): MultiDecision {
              const t0 = performance.now();
              const m = inner.decideAll!(reqs, at);
              hist.observe((performance.now() - t0) / 1000);
              // Allowed: every dimension was counted; denied: only the denying one decided.
              for (const d of m.allowed ? m.decisions : [m.decisions[m.binding]]) {
                let c = checks.get(d.ruleId);
                if (c === undefined) checks.set(d.ruleId, (c = [0, 0]));
                c[d.allowed ? 0 : 1]++;
              }
              return m;
            },
          }
        : {}),
      refundAdmission: (a, at) => inner.refundAdmission(a, at),
      resetOwn: (req, at) => inner.resetOwn(req, at),
      admissionTtlMs: (ruleId) => inner.admissionTtlMs(ruleId),
      policies: (ruleId) => inner.policies(ruleId),
    };
  }

  /** Checks decided since start, all rules together. */
  checkTotals(): { allowed: number; denied: number; bypassed: number } {
    const t = { allowed: 0, denied: 0, bypassed: 0 };
    for (const [rule, [allowed, denied]] of this.checks) {
      if (rule === null) t.bypassed += allowed;
      else {
        t.allowed += allowed;
        t.denied += denied;
      }
    }
    return t;
  }

  /** A successful SQLite write (Persistence `onFlush`). */
  observeFlush(ms: number): void {
    this.flushLatency.observe(ms / 1000);
  }

  /**
   * Counts every request of every route declared after this call, and times the check
   * routes, with an onResponse hook added to each route (the label is made once per route,
   * not per request). Call it before the routes are declared (buildApp's `instrument`).
   */
  instrument(app: FastifyInstance): void {
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const name = `${methods.join(',')} ${route.url}`;
      const timed = CHECK_ROUTES.has(route.url) ? this.latency.labels({ layer: 'http', route: name }) : undefined;
      const byCode = new Map<number, { route: string; code: string; n: number }>();
      const hook: onResponseHookHandler = (_req, reply, done) => {
        const code = reply.statusCode;
        let c = byCode.get(code);
        if (c === undefined) {
          byCode.set(code, (c = { route: name, code: String(code), n: 0 }));
          this.httpRequests.set(`${name} ${code}`, c);
        }
        c.n++;
        if (timed !== undefined) timed.observe(reply.elapsedTime / 1000);
        done();
      };
      const existing = route.onResponse;
      route.onResponse = existing === undefined ? [hook] : Array.isArray(existing) ? [...existing, hook] : [existing, hook];
    });
  }

  /** GET /metrics on the app, guarded by `guard`. */
  serve(app: FastifyInstance, guard: { onRequest?: onRequestHookHandler }): void {
    app.get('/metrics', { ...guard, exposeHeadRoute: false }, async (_req, reply) => {
      const text = await this.scrape();
      return reply.type(this.registry.contentType).send(text);
    });
  }

  /** The text exposition of every metric, read from the node now. */
  async scrape(): Promise<string> {
    this.snap = undefined;
    try {
      this.current();
      return await this.registry.metrics();
    } finally {
      this.snap = undefined;
    }
  }

  private current(): NonNullable<NodeMetrics['snap']> {
    this.snap ??= { status: this.src.status(), ready: this.src.readiness(), now: this.src.now() };
    return this.snap;
  }
}

function gauge(r: Registry, name: string, help: string, labelNames: string[], collect: (g: Gauge) => void): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset();
      collect(this);
    },
  });
}

function counter(r: Registry, name: string, help: string, labelNames: string[], collect: (c: Counter) => void): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset();
      collect(this);
    },
  });
}
