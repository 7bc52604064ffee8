#!/usr/bin/env node
/**
 * Entry point: `regionlimit [--flags]` (compiled: dist/src/main.js), or `node --import tsx src/main.ts [--flags]` (see README "Configuration" or src/config.ts).
 * Invalid configuration stops start-up with every problem listed; SIGTERM and SIGINT flush
 * the state store and exit cleanly; SIGHUP re-reads the API tokens file.
 */
import { loadConfig, usage } from './config.ts';
import { ConfigError, LimiterError } from './engine/errors.ts';
import { startNode } from './serve.ts';

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(usage());
    return;
  }
  const config = loadConfig(process.argv.slice(2), process.env);
  const node = await startNode(config);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    node.logger.info({ signal }, 'shutting down');
    node.close().then(
      () => process.exit(0),
      (err) => {
        node.logger.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // SIGHUP re-reads the API tokens file (rotation without a restart).
  process.on('SIGHUP', () => {
    node.logger.info('SIGHUP: re-reading the API tokens file');
    node.reloadApiTokens();
  });
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`limiter: ${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof LimiterError) {
    process.stderr.write(`limiter: ${err.code}: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`limiter: failed to start: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
