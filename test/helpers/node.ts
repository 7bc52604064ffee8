/**
 * One limiter node in the test process (startNode on a free port, a temp data directory) with
 * the given rules: the real HTTP server the client, middleware, nginx and Python tests talk to.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { startNode, type RunningNode } from '../../src/serve.ts';

export interface TestNode {
  node: RunningNode;
  url: string;
  dir: string;
  /** A key's usage under its rule's first limit, read from the node. */
  usage(key: string): Promise<number>;
  close(): Promise<void>;
}

/** `token`: the API token the usage reads send (when `args` configure one). */
export async function startTestNode(rules: object, args: string[] = [], token?: string): Promise<TestNode> {
  const headers: Record<string, string> = token !== undefined ? { authorization: `Bearer ${token}` } : {};
  const dir = mkdtempSync(join(tmpdir(), 'limiter-node-'));
  writeFileSync(join(dir, 'rules.json'), JSON.stringify(rules));
  const node = await startNode(loadConfig(['--rules', join(dir, 'rules.json'), '--data', join(dir, 'data'), '--port', '0', '--log-level', 'warn', ...args], {}));
  return {
    node,
    url: node.url,
    dir,
    usage: async (key) => ((await (await fetch(`${node.url}/v1/usage?key=${encodeURIComponent(key)}`, { headers })).json()) as { limits: { usage: number }[] }).limits[0]?.usage ?? 0,
    close: async () => {
      await node.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
