/**
 * A whole limiter node (src/node.ts `startNode`, the composition root `src/main.ts` runs), as a
 * child process of the `replication` section. Takes the flags of src/main.ts, answers
 * `{type: 'ready', url}` once listening (a node with `--nats` and a new data directory has then
 * rebuilt from the streams and caught up), and closes the node (last changes shipped, final flush) on
 * `{type: 'stop'}`. Figures are read over HTTP (GET /v1/status, /v1/usage).
 *
 *   tsx bench/children/node.ts --node-id a-1 --region us-east --regions us-east,eu-west \
 *       --nats nats://127.0.0.1:4222 --rules FILE --data DIR --port 0 --log-level warn
 *
 * Logs go to stderr (stdout carries the bench's tables or JSON document); the parent shows the
 * tail of stderr when the child fails.
 */
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { startNode } from '../../src/serve.ts';
import { send, stopRequested } from '../lib/child.ts';

async function main(): Promise<void> {
  // Flags only: LIMITER_* variables of the environment do not leak into a benchmark.
  const config = loadConfig(process.argv.slice(2), {});
  const logger = pino({ level: config.logLevel, base: { node: config.nodeId, region: config.region } }, pino.destination(2));
  const node = await startNode(config, { logger });
  send({ type: 'ready', url: node.url });
  await stopRequested();
  await node.close();
  process.disconnect?.();
}

main().catch((err: unknown) => {
  send({ type: 'error', message: (err as Error)?.stack ?? String(err) });
  process.exitCode = 1;
  process.disconnect?.();
});
