/**
 * A node serving HTTP: the app over a node's parts (`buildHttp`: the check API, admin routes,
 * metrics and dashboard as configured) and the listeners (`startNode`: the HTTP port, and the
 * --metrics-port and --admin-port listeners when set). The parts come from src/node.ts.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { NodeConfig } from './config.ts';
import type { Engine } from './engine/engine.ts';
import { buildAdminApp } from './http/admin-app.ts';
import { buildApp, type ReadinessReport } from './http/app.ts';
import { dashboardFrame } from './http/dashboard/frame.ts';
import { registerDashboard } from './http/dashboard/routes.ts';
import { DEFAULT_LIMITS } from './http/schemas.ts';
import type { NodeMetrics } from './metrics/metrics.ts';
import { serveMetrics, type MetricsServer } from './metrics/server.ts';
import { buildNode, type NodeParts, type NodeStatus, type StartNodeOptions } from './node.ts';
import { redactUrl } from './replication/jetstream/index.ts';
import type { Replicator } from './replication/replicator.ts';
import type { RulesRegister } from './rules/register.ts';
import type { DataDirectory } from './storage/data-dir.ts';
import type { Persistence } from './storage/persistence.ts';

export interface RunningNode {
  readonly config: Readonly<NodeConfig>;
  readonly url: string;
  readonly engine: Engine;
  readonly rules: RulesRegister;
  readonly store: DataDirectory;
  readonly persistence: Persistence;
  readonly app: FastifyInstance;
  /** Where the rules admin API is served: `url`, or the --admin-port listener's URL. */
  readonly adminUrl: string;
  readonly logger: Logger;
  readonly replicator: Replicator | undefined;
  /** Prometheus metrics (undefined with --metrics false). */
  readonly metrics: NodeMetrics | undefined;
  /** Where GET /metrics is served: the HTTP URL, or the --metrics-port listener's. */
  readonly metricsUrl: string | undefined;
  readiness(): ReadinessReport;
  status(): NodeStatus;
  /** Re-read the API tokens file (SIGHUP). Returns whether it was read. */
  reloadApiTokens(): boolean;
  /** Stop serving, flush everything and close the store. Safe to call twice. */
  close(): Promise<void>;
}

/** The HTTP app over a node's parts (not listening). */
export function buildHttp(parts: NodeParts): FastifyInstance {
  const { config, limiter, admissions, now, engine, apiTokens } = parts;
  return buildApp({
    limiter,
    admissions,
    now,
    maxKeyBytes: config.maxKeyBytes,
    bodyLimit: config.bodyLimit,
    maxBatch: config.maxBatch,
    maxMetadataEntries: config.maxMetadataEntries,
    maxMetadataValueBytes: config.maxMetadataValueBytes,
    denyStatus: config.denyStatus,
    ...(parts.replicator !== undefined ? { shareWait: { progress: () => engine.peersProgress.next(), maxWaitMs: config.shareWaitMs } } : {}),
    readiness: () => parts.readiness(),
    commit: () => parts.commit(),
    inspect: (key, metadata, at) => engine.inspect(key, metadata, at),
    explain: (key, metadata) => engine.explain(key, metadata),
    setSignal: (name, health, at) => engine.setSignal(name, health, at),
    status: () => parts.status(),
    instrument: (a) => parts.metrics?.instrument(a),
    extraRoutes: (a, { statusGuard, limits }) => {
      if (config.metricsPort === 0) parts.metrics?.serve(a, statusGuard);
      registerDashboard(a, { guard: statusGuard, limits, frame: (key) => parts.frame(key) as ReturnType<typeof dashboardFrame> });
    },
    adminToken: config.adminToken,
    rules: parts.rules,
    adminRoutes: config.adminPort === 0,
    apiTokens,
    restrictStatus: config.restrictStatus,
    trustedProxies: config.trustedProxies,
    forwardedHeader: config.forwardedHeader,
    server: {
      maxHeaderSize: config.maxHeaderSize,
      maxConnections: config.maxConnections,
      connectionTimeoutMs: config.connectionTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      headersTimeoutMs: config.headersTimeoutMs,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      tls: parts.tls,
    },
  });
}

/** Build a node, its HTTP app, and listen. */
export async function startNode(config: Readonly<NodeConfig>, opts: StartNodeOptions = {}): Promise<RunningNode> {
  const parts = await buildNode(config, opts);
  const { logger, apiTokens, tls, replicator } = parts;
  const app = buildHttp(parts);
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await parts.close(0);
    throw err;
  }
  let metricsServer: MetricsServer | undefined;
  if (parts.metrics !== undefined && config.metricsPort !== 0) {
    try {
      metricsServer = await serveMetrics(parts.metrics, config.host, config.metricsPort);
    } catch (err) {
      await app.close();
      await parts.close(0);
      throw err;
    }
  }
  let adminApp: FastifyInstance | undefined;
  if (config.adminPort !== 0) {
    adminApp = buildAdminApp({
      rules: parts.rules,
      limiter: parts.limiter,
      limits: { ...DEFAULT_LIMITS, maxKeyBytes: config.maxKeyBytes, maxMetadataEntries: config.maxMetadataEntries, maxMetadataValueBytes: config.maxMetadataValueBytes, maxBatch: config.maxBatch },
      now: parts.now,
      commit: () => parts.commit(),
      adminToken: config.adminToken,
      tls,
      logger,
    });
    try {
      await adminApp.listen({ host: config.host, port: config.adminPort });
    } catch (err) {
      await app.close();
      await metricsServer?.close();
      await parts.close(0);
      throw err;
    }
  }
  apiTokens.watch();
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `${tls !== undefined ? 'https' : 'http'}://${host}:${port}`;
  const adminAddr = adminApp?.server.address();
  const adminUrl = typeof adminAddr === 'object' && adminAddr !== null ? `${tls !== undefined ? 'https' : 'http'}://${host}:${adminAddr.port}` : url;
  const metricsUrl = parts.metrics === undefined ? undefined : `${metricsServer?.url ?? url}/metrics`;
  logger.info(
    { url, metrics: metricsUrl, durability: config.durability, rules: config.rules, data: config.data, nats: config.nats.map(redactUrl), apiTokens: apiTokens.required, admin: config.adminToken !== '', trustedProxies: config.trustedProxies },
    'listening',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await app.close();
      await adminApp?.close();
      await metricsServer?.close();
      await parts.close(2000);
      logger.info('stopped');
    })();
    return closing;
  };

  const { engine, store, persistence, readiness, status } = parts;
  return { config, url, adminUrl, engine, rules: parts.rules, store, persistence, app, logger, replicator, metrics: parts.metrics, metricsUrl, readiness, status, reloadApiTokens: () => apiTokens.reload(), close };
}
