/**
 * Composition root of one limiter node: rules → engine → state store → persistence →
 * replication (`buildNode`). The HTTP app over these parts and listening are src/serve.ts
 * (`buildHttp`, `startNode`); main.ts turns flags and environment into a NodeConfig and calls
 * startNode(); the embedded limiter (src/embedded.ts) assembles the same parts without HTTP.
 * The parts do not call each other back: the shipper waits on the engine's change signal, the
 * replicator notes positions into persistence, and this file only wires them.
 */
import { randomWords } from './random-words.ts';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pino, { type Logger } from 'pino';
import type { NodeConfig } from './config.ts';
import { EVENT_LOOP_SIGNAL, eventLoopHealth } from './engine/adaptive.ts';
import { AdmissionLedger, isCounted } from './engine/admissions.ts';
import { Engine } from './engine/engine.ts';
import { formatVersion } from '../crdt/index.ts';
import { ApiTokens } from './http/api-tokens.ts';
import { RulesRegister } from './rules/register.ts';
import { startupRules } from './rules/startup.ts';
import { watchRulesFile, type RulesWatcher } from './rules/watch.ts';
import type { ReadinessReport } from './http/app.ts';
import { ReplicationError } from './replication/errors.ts';
import { JetStreamTransport, type TransportOptions } from './replication/jetstream/index.ts';
import { Replicator } from './replication/replicator.ts';
import type { CheckRequest, Limiter } from './engine/types.ts';
import { DataDirectory, type StorageFault } from './storage/data-dir.ts';
import { Persistence } from './storage/persistence.ts';
import { NodeMetrics } from './metrics/metrics.ts';
import { dashboardFrame } from './http/dashboard/frame.ts';
import { startTracing, traceChecks, type Tracing } from './tracing/tracing.ts';
import { natsCredentials, readPem, rulesSource } from './node-files.ts';

export interface StartNodeOptions {
  /** The rules document (default: read from the config.rules file). */
  rulesDocument?: object;
  /** How often the node publishes its rules version for anti-entropy (ms, default 5000). */
  rulesBeaconMs?: number;
  /** Clock (ms since epoch). Default Date.now. */
  now?: () => number;
  logger?: Logger;
  /** Overrides of the JetStream transport's settings (tests shorten timeouts). */
  transport?: Partial<Omit<TransportOptions, 'servers' | 'region' | 'regions' | 'nodeId'>>;
  /** How long a node without its data directory waits to rebuild from the streams (default 120 s). */
  rebuildTimeoutMs?: number;
  /**
   * How long a node that restarted with its data directory waits, before it listens, to get
   * back from the streams what it had shipped but not yet written to disk (default 5 s; it
   * then serves anyway and keeps catching up).
   */
  resumeTimeoutMs?: number;
  /** An idle node's heartbeat interval (ms, default 1000). */
  heartbeatMs?: number;
  /** How often the API tokens file is polled for changes (ms, default 1000). */
  apiTokensPollMs?: number;
  /** At shutdown, how long failed state-store writes are retried before what is unwritten is reported (default 5 s). */
  shutdownFlushMs?: number;
}

/** What GET /v1/status reports. */
export interface NodeStatus {
  node: string;
  region: string;
  regions: string[];
  startedAt: number;
  uptimeMs: number;
  durability: string;
  flushIntervalMs: number;
  engine: ReturnType<Engine['stats']>;
  /** Load signals and the adaptive rules' factors and effective limits (src/engine/adaptive.ts). */
  adaptive: ReturnType<Engine['adaptiveStatus']>;
  /** Admission ids held for refunds, and how many were forgotten before their window passed (ledger full). */
  admissions: { held: number; forgottenEarly: number };
  persistence: Persistence['stats'];
  /**
   * The state store's condition: `ok`, `degraded` (writes failing, or state lost at start-up
   * and not rebuilt) with the coded fault, and the last fault found at start-up (kept for the
   * record even once it no longer degrades the node).
   */
  storage: { state: 'ok' | 'degraded'; writable: boolean; fault: StorageFault | null; startup: StorageFault | null };
  /** Null when the node runs alone (no --nats). */
  replication: Record<string, unknown> | null;
  /** The rules in force: version (converges across nodes), when applied, and replication counters. */
  rules: ReturnType<RulesRegister['status']>;
  /**
   * Per limit: how far all nodes together can currently exceed it (CONSISTENCY.md §8).
   * A node running alone decides exactly: every bound is 0.
   */
  overshoot: Array<{ ruleId: string; policy: string; limit: number; windowMs: number; bound: number; nodes: number; [k: string]: unknown }>;
}

/** A node's parts, assembled and replicating but not serving HTTP (buildNode). */
export interface NodeParts {
  readonly config: Readonly<NodeConfig>;
  readonly engine: Engine;
  /** The rules register: the rules in force, changed by the admin API, the watched file and replication. */
  readonly rules: RulesRegister;
  /** What decides: the engine, or with `sync` durability the engine whose admissions wait on the commit. */
  readonly limiter: Limiter;
  readonly admissions: AdmissionLedger;
  readonly apiTokens: ApiTokens;
  /** HTTPS listener certificate and key, read at build time; undefined: plain HTTP. */
  readonly tls: { cert: Buffer; key: Buffer } | undefined;
  /** Durability barrier after something was counted (a promise with `sync` durability). */
  commit(): Promise<unknown> | undefined;
  readonly now: () => number;
  readonly store: DataDirectory;
  readonly persistence: Persistence;
  readonly logger: Logger;
  readonly replicator: Replicator | undefined;
  /** Prometheus metrics (undefined with --metrics false). */
  readonly metrics: NodeMetrics | undefined;
  /** OTLP tracing (undefined without --otlp-endpoint). */
  readonly tracing: Tracing | undefined;
  /** What the dashboard streams: this node's view, and the followed key's usage. */
  frame(key: string | undefined): unknown;
  readiness(): ReadinessReport;
  status(): NodeStatus;
  /** Stop replication (shipping the last admissions for up to `shipMs`), flush everything and close the store. Safe to call twice. */
  close(shipMs?: number): Promise<void>;
}

/** Assemble a node's parts: rules, engine, state store, persistence and replication (started and caught up as the configuration says). */
export async function buildNode(config: Readonly<NodeConfig>, opts: StartNodeOptions = {}): Promise<NodeParts> {
  const now = opts.now ?? Date.now;
  const startedAt = now();
  const logger = opts.logger ?? pino({ level: config.logLevel, base: { node: config.nodeId, region: config.region } });
  const source = rulesSource(config, opts.rulesDocument);
  const natsAuth = natsCredentials(config);
  // Read the secrets before anything is opened: a bad file stops start-up with its code.
  const tls = config.tlsCert !== '' ? { cert: readPem(config.tlsCert, '--tls-cert'), key: readPem(config.tlsKey, '--tls-key') } : undefined;
  const apiTokens = new ApiTokens({
    tokens: config.apiTokens,
    file: config.apiTokensFile,
    pollMs: opts.apiTokensPollMs,
    onReload: (count) => logger.info({ tokens: count }, 'API tokens re-read'),
    onReloadError: (err) => logger.error({ err }, 'API tokens file could not be re-read; the tokens in force are kept'),
  });
  const replicating = config.nats.length > 0;
  // The store first: the rules in force may be the ones it kept (src/rules/startup.ts).
  const store = new DataDirectory({ dir: config.data, nodeId: config.nodeId, durability: config.durability, now, log: logger });
  const opened = store.open();
  let boot;
  try {
    boot = await startupRules(store, source, config.nodeId, now(), logger);
  } catch (err) {
    store.close();
    throw err;
  }
  logger.info({ version: formatVersion(boot.initial.version), from: boot.from }, 'rules loaded');
  const engine = new Engine({ nodeId: config.nodeId, rules: boot.config, maxKeys: config.maxKeys });
  const rules = new RulesRegister({ engine, store, nodeId: config.nodeId, now, logger, initial: boot.initial, document: boot.document, publishInitial: boot.publishInitial, beaconMs: opts.rulesBeaconMs });
  const watcher: RulesWatcher | undefined = config.watchRules && opts.rulesDocument === undefined ? watchRulesFile(config.rules, rules, logger) : undefined;
  const longestWindowMs = Math.max(0, ...[...engine.allScopes()].map((cl) => cl.spec.windowMs));
  /** A start-up fault that leaves this node's counts incomplete: until when it degrades the node (a node running alone cannot rebuild them). */
  const startupFault = opened.fault;
  let faultDegradesUntil = 0;
  if (startupFault !== undefined && startupFault.code !== 'STORAGE_UNAVAILABLE' && !replicating) {
    faultDegradesUntil = now() + longestWindowMs;
    logger.warn(
      { code: startupFault.code, movedAside: startupFault.movedAside, degradedUntil: new Date(faultDegradesUntil).toISOString() },
      'STARTED EMPTY: this node runs alone and its earlier counts are gone; keys may admit up to their full limit again until their windows pass',
    );
  }
  let failureLoggedAt = 0;
  let failureLogged = '';
  /** When the current run of failed writes began (0: writes succeed). */
  let failingSince = 0;
  let replicator: Replicator | undefined;
  let transport: JetStreamTransport | undefined;
  let replicationStarted = false;
  let replicationError: string | undefined;
  let stopping = false;
  let metrics: NodeMetrics | undefined;
  const tracing = config.otlpEndpoint !== '' ? startTracing({ endpoint: config.otlpEndpoint, node: config.nodeId, region: config.region }) : undefined;
  const persistence = new Persistence({
    engine,
    store,
    durability: config.durability,
    flushIntervalMs: config.flushIntervalMs,
    now,
    onError: (err) => {
      if (failingSince === 0) failingSince = now();
      // One line per distinct failure, then one every 10 s while it lasts.
      const at = Date.now();
      if (err.message === failureLogged && at - failureLoggedAt < 10_000) return;
      failureLogged = err.message;
      failureLoggedAt = at;
      logger.error({ err, code: err.code, failures: persistence.stats.failures, retryRows: persistence.stats.retryRows }, 'state store write failed; answering from memory and retrying');
    },
    onRecovered: (failures) => {
      failureLogged = '';
      failingSince = 0;
      logger.info({ failures, rowsWritten: persistence.stats.rowsWritten }, 'state store writes succeed again; the rows kept in memory are written');
    },
    onFlush: (ms) => metrics?.observeFlush(ms),
  });
  // A directory that could not be written at start-up and now can: merge what it holds. Until
  // then every flush tries it (the store opens it at most once a second), idle or not.
  store.onReopen = (s) => persistence.restore(s);
  if (!opened.writable) persistence.lastError = store.unavailableError;
  const restored = persistence.restore();
  logger.info({ cells: restored.cells, ms: Math.round(restored.ms), keys: engine.stats().liveKeys }, 'restored live windows');

  /** Write what is left, retrying a failing store; say loudly what could not be written. */
  const finalFlush = async () => {
    const shutdownFlushMs = opts.shutdownFlushMs ?? 5000;
    if (await persistence.flushWithin(shutdownFlushMs)) return;
    const lost = persistence.unwritten();
    logger.fatal(
      { code: persistence.lastError?.code, cells: lost.cells, keys: lost.keys, admittedUnits: lost.ownUnits, droppedRows: lost.dropped, retriedMs: shutdownFlushMs, replicating },
      `NOT WRITTEN: ${lost.cells} cells of ${lost.keys} keys (up to ${lost.ownUnits} units this node admitted) could not be written to the state store; ` +
        (replicating ? 'what was shipped comes back from the streams at the next start' : 'they are lost (this node runs alone)'),
    );
  };

  const cleanup = async () => {
    stopping = true;
    watcher?.close();
    rules.stop();
    await replicator?.stop(0).catch(() => {});
    await finalFlush();
    persistence.stop();
    store.close();
  };

  if (replicating) {
    if (config.streamMaxAgeMs < longestWindowMs) {
      logger.warn({ streamMaxAgeMs: config.streamMaxAgeMs, longestWindowMs }, 'stream max age is shorter than the longest window: a rebuild from the streams can undercount');
    }
    transport = new JetStreamTransport({
      servers: config.nats,
      region: config.region,
      regions: config.regions,
      nodeId: config.nodeId,
      maxAgeMs: config.streamMaxAgeMs,
      waitOnFirstConnect: true,
      ...natsAuth,
      ...opts.transport,
    });
    transport.on('disconnect', () => logger.warn('NATS disconnected; answering from local state'));
    transport.on('reconnect', (server) => logger.info({ server }, 'NATS reconnected; catching up'));
    transport.on('poison', (e) => logger.warn({ stream: e.stream, seq: e.streamSeq, origin: e.origin, err: e.error }, 'refused a replicated batch'));
    replicator = new Replicator({ engine, transport, positions: persistence, nodeId: config.nodeId, now, logger, heartbeatMs: opts.heartbeatMs, modes: { staleAfterMs: config.staleAfterMs }, tracer: tracing?.tracer, rules });
    // Cells restored from disk may never have been shipped (a crash before the publish): ship
    // them all again. Peers merge by max, so what they already have changes nothing.
    if (restored.cells > 0) engine.shipAllOwn();
    // A node whose data directory is new rebuilds every node's contribution, its own earlier
    // life's included, from the streams before it serves. A node that kept its directory
    // resumes after its stored positions, and first gets back its own batches shipped after
    // its last flush (merged by max) so that new admissions build on them.
    const rebuild = store.created;
    const startAfterSeq = rebuild ? {} : store.positions();
    const startReplication = async (timeoutMs: number) => {
      await replicator!.start(startAfterSeq);
      const t = transport!;
      rules.start({ publish: (bytes, msgId) => t.publish(bytes, msgId), get connected() { return t.connected; } });
      replicationStarted = true;
      replicationError = undefined;
      const caughtUp = await replicator!.waitCaughtUp(timeoutMs);
      logger.info({ rebuild, caughtUp, keys: engine.stats().liveKeys }, rebuild ? 'rebuilt state from the streams' : 'replication started');
      return caughtUp;
    };
    const retryInBackground = () =>
      void (async () => {
        for (let attempt = 0; !stopping; attempt++) {
          try {
            await startReplication(30_000);
            return;
          } catch (err) {
            if (stopping) return;
            replicationError = (err as Error).message;
            logger.error({ err }, 'replication failed to start; answering from local state and retrying');
            await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt)).unref());
          }
        }
      })();
    if (rebuild) {
      try {
        const caughtUp = await startReplication(opts.rebuildTimeoutMs ?? 120_000);
        if (!caughtUp) throw new ReplicationError('REPLICATION_UNAVAILABLE', 'timed out rebuilding state from the replication streams');
      } catch (err) {
        await cleanup();
        throw err;
      }
      // Written now when the store can be (else kept and retried like any failed write).
      try {
        persistence.flush();
      } catch (err) {
        logger.error({ err }, 'cannot write the rebuilt state yet; answering from memory and retrying');
      }
    } else {
      const resumeMs = opts.resumeTimeoutMs ?? 5000;
      let timer: NodeJS.Timeout | undefined;
      const first = startReplication(resumeMs).then(
        () => 'done' as const,
        (err: unknown) => err,
      );
      const outcome = await Promise.race([first, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), resumeMs)))]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        logger.warn({ resumeMs }, 'replication not caught up yet; serving from local state while it continues');
        void first.then((r) => {
          if (r !== 'done' && !stopping) retryInBackground();
        });
      } else if (outcome !== 'done') {
        replicationError = (outcome as Error).message;
        logger.error({ err: outcome }, 'replication failed to start; answering from local state and retrying');
        retryInBackground();
      }
    }
  }
  persistence.start();

  const readiness = (): ReadinessReport => {
    const reasons: string[] = [];
    let ready = true;
    const fault = storageFault();
    if (fault !== undefined) reasons.push(`storage: ${fault.code}: ${fault.message}`);
    if (transport !== undefined) {
      const t = transport.status();
      if (!replicationStarted) {
        ready = false;
        reasons.push(replicationError !== undefined ? `replication: ${replicationError}` : 'replication: creating streams and consumers');
      } else if (!t.connected) reasons.push('replication: NATS disconnected; answering from local state');
      else if (!replicator!.isCaughtUp) reasons.push('replication: catching up');
      const d = engine.degraded;
      if (d !== null) reasons.push(`modes: ${d.reason}; rules apply their degradation mode: ${modesByRule(engine)}`);
    }
    return { ready, degraded: reasons.length > 0, reasons };
  };

  /** What degrades the node's storage now: a failing write, or counts lost at start-up that nothing rebuilt (until its windows have passed). */
  function storageFault(): StorageFault | undefined {
    const err = persistence.lastError ?? store.unavailableError;
    if (err !== undefined) return { code: err.code as StorageFault['code'], message: err.message, atMs: failingSince || startupFault?.atMs || now() };
    if (startupFault !== undefined && now() < faultDegradesUntil) {
      return { ...startupFault, message: `${startupFault.message}; started empty (no replication to rebuild from): counts from before are missing until ${new Date(faultDegradesUntil).toISOString()}` };
    }
    return undefined;
  }

  const status = (): NodeStatus => {
    const at = now();
    return {
      node: config.nodeId,
      region: config.region,
      regions: [...config.regions],
      startedAt,
      uptimeMs: at - startedAt,
      durability: config.durability,
      flushIntervalMs: config.flushIntervalMs,
      engine: engine.stats(),
      adaptive: engine.adaptiveStatus(),
      admissions: { held: admissions.size, forgottenEarly: admissions.forgottenEarly },
      persistence: { ...persistence.stats },
      storage: (() => {
        const fault = storageFault();
        return { state: fault ? 'degraded' : 'ok', writable: store.writable, fault: fault ?? null, startup: startupFault ?? null };
      })(),
      replication: replicator ? replicator.status() : null,
      rules: rules.status(),
      overshoot: replicator
        ? replicator.overshoot(at)
        : [...engine.allScopes()].map((cl) => ({ ruleId: cl.ruleId, policy: cl.policy.name, limit: cl.math.capacity, windowMs: cl.spec.windowMs, bound: 0, nodes: 1 })),
    };
  };

  const admissions = new AdmissionLedger({ nodeId: config.nodeId, maxEntries: config.maxAdmissions, random: randomWords() });
  // `sync` durability: an admission whose commit fails is answered 503 and taken back.
  const baseLimiter: Limiter =
    config.durability === 'sync'
      ? {
          nodeId: engine.nodeId,
          decide: (req: CheckRequest, at: number) => {
            const d = engine.decide(req, at);
            // A priority bypass counted nothing: there is nothing to undo.
            if (isCounted(d)) persistence.noteAdmission(() => engine.undoAdmission(req, at));
            return d;
          },
          refundAdmission: (a, at) => engine.refundAdmission(a, at),
          resetOwn: (req, at) => engine.resetOwn(req, at),
          admissionTtlMs: (ruleId) => engine.admissionTtlMs(ruleId),
          policies: (ruleId) => engine.policies(ruleId),
        }
      : engine;
  if (config.metrics) metrics = new NodeMetrics({ node: config.nodeId, region: config.region, status, readiness, replicator, now });
  const counted = metrics ? metrics.wrap(baseLimiter) : baseLimiter;
  const limiter = tracing ? traceChecks(counted, tracing.tracer, config.otlpCheckSample) : counted;
  /** What the dashboard streams: this node's view, and the followed key's usage. */
  const frame = (key: string | undefined) => {
    const at = now();
    return dashboardFrame({
      at,
      node: config.nodeId,
      region: config.region,
      readiness: readiness(),
      checks: metrics?.checkTotals() ?? null,
      peers: replicator?.peers.stats(at) ?? [],
      overshoot: status().overshoot,
      usage: key === undefined ? undefined : { key, ...engine.inspect(key, undefined, at) },
    });
  };
  // The node's own load signal for adaptive rules: its event loop's p99 delay, every second.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const loopTimer = setInterval(() => {
    engine.setSignal(EVENT_LOOP_SIGNAL, eventLoopHealth(loopDelay.percentile(99) / 1e6), now());
    loopDelay.reset();
  }, 1000).unref();
  let closing: Promise<void> | undefined;
  const close = (shipMs = 2000): Promise<void> => {
    closing ??= (async () => {
      stopping = true;
      clearInterval(loopTimer);
      loopDelay.disable();
      apiTokens.close();
      watcher?.close();
      rules.stop();
      // Ship the last admissions (up to shipMs), then write everything (retrying a failing disk
      // for a while) and close.
      await replicator?.stop(shipMs).catch(() => {});
      await finalFlush();
      persistence.stop();
      store.close();
      await tracing?.shutdown().catch((err: unknown) => logger.warn({ err }, 'exporting the last spans failed'));
    })();
    return closing;
  };
  const commit = () => persistence.commitBarrier();
  return { config, engine, rules, limiter, admissions, apiTokens, tls, commit, now, store, persistence, logger, replicator, metrics, tracing, frame, readiness, status, close };
}

/** "api: share, login: closed": each rule's degradation mode, for /readyz. */
function modesByRule(engine: Engine): string {
  return engine.rulesConfig.rules.map((r) => `${r.id}: ${r.degraded ?? 'share'}`).join(', ');
}
