/**
 * Composition root of one limiter node: rules → engine → state store → persistence → HTTP.
 * main.ts turns flags and environment into a NodeConfig and calls startNode(); tests and the
 * regions launcher call startNode() directly or run main.ts as a process.
 */
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import type { NodeConfig } from './config.ts';
import { Engine } from './engine/engine.ts';
import { loadRulesFile } from './engine/rules.ts';
import { buildApp, type ReadinessReport } from './http/app.ts';
import { Persistence } from './storage/persistence.ts';
import { SqliteStore } from './storage/sqlite.ts';

export interface StartNodeOptions {
  /** Clock (ms since epoch). Default Date.now. */
  now?: () => number;
  logger?: Logger;
}

export interface RunningNode {
  readonly config: Readonly<NodeConfig>;
  readonly url: string;
  readonly engine: Engine;
  readonly store: SqliteStore;
  readonly persistence: Persistence;
  readonly app: FastifyInstance;
  readonly logger: Logger;
  readiness(): ReadinessReport;
  /** Stop serving, flush everything and close the store. Safe to call twice. */
  close(): Promise<void>;
}

export async function startNode(config: Readonly<NodeConfig>, opts: StartNodeOptions = {}): Promise<RunningNode> {
  const now = opts.now ?? Date.now;
  const logger = opts.logger ?? pino({ level: config.logLevel, base: { node: config.nodeId, region: config.region } });
  const rules = loadRulesFile(config.rules);
  const engine = new Engine({ nodeId: config.nodeId, rules, maxKeys: config.maxKeys });
  const store = new SqliteStore({ dir: config.data, nodeId: config.nodeId, durability: config.durability });
  let storageError: string | undefined;
  const persistence = new Persistence({
    engine,
    store,
    durability: config.durability,
    flushIntervalMs: config.flushIntervalMs,
    now,
    onError: (err) => {
      storageError = err.message;
      logger.error({ err, code: err.code }, 'state store write failed; answering from memory and retrying');
    },
    afterCommit: () => {
      storageError = undefined;
    },
  });
  const restored = persistence.restore();
  logger.info({ cells: restored.cells, ms: Math.round(restored.ms), keys: engine.stats().liveKeys }, 'restored live windows');
  persistence.start();

  const readiness = (): ReadinessReport => {
    const reasons: string[] = [];
    if (storageError !== undefined) reasons.push(`storage: ${storageError}`);
    return { ready: true, degraded: reasons.length > 0, reasons };
  };

  const app = buildApp({
    limiter: engine,
    now,
    maxKeyBytes: config.maxKeyBytes,
    denyStatus: config.denyStatus,
    readiness,
    commit: () => persistence.commitBarrier(),
  });
  await app.listen({ host: config.host, port: config.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  logger.info({ url, durability: config.durability, rules: config.rules, data: config.data }, 'listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await app.close();
      persistence.stop();
      store.close();
      logger.info('stopped');
    })();
    return closing;
  };

  return { config, url, engine, store, persistence, app, logger, readiness, close };
}
