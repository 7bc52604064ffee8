/**
 * The package root: the embedded limiter (src/embedded.ts) and the node's composition root
 * (src/node.ts, served by src/serve.ts), for applications that run the limiter in their own process. The HTTP client is
 * `regionlimit/client` (src/client/index.ts).
 */
export { createLimiter, type CreateLimiterOptions, type Limiter, type Usage } from './embedded.ts';
export { buildNode, type NodeParts, type StartNodeOptions, type NodeStatus } from './node.ts';
export { buildHttp, startNode, type RunningNode } from './serve.ts';
export { loadConfig, type NodeConfig } from './config.ts';
export { LimiterError, ConfigError, ERROR_CODES, type ErrorCode } from './engine/errors.ts';
export type { CheckRequest, Decision, RefundResult, RulesConfig } from './engine/types.ts';
