/** One dashboard frame from what a node already reports (GET /v1/status, /readyz, /v1/usage). */
import type { DashboardFrame } from './routes.ts';

export interface FrameParts {
  at: number;
  node: string;
  region: string;
  readiness: { ready: boolean; degraded?: boolean; reasons?: string[] };
  checks: DashboardFrame['checks'];
  peers: ReadonlyArray<{ node: string; lagP99Ms: number; stalenessMs: number }>;
  overshoot: ReadonlyArray<{ policy: string; limit: number; bound: number; observed?: number }>;
  usage?: { key: string; ruleId: string | null; limits: ReadonlyArray<{ policy: string; usage: number; capacity: number }> };
}

export function dashboardFrame(p: FrameParts): DashboardFrame {
  return {
    at: p.at,
    node: p.node,
    region: p.region,
    ready: p.readiness.ready,
    degraded: p.readiness.degraded === true,
    reasons: p.readiness.reasons ?? [],
    checks: p.checks,
    peers: p.peers.map((x) => ({ node: x.node, lagP99Ms: x.lagP99Ms, stalenessMs: x.stalenessMs })),
    overshoot: p.overshoot.map((o) => ({ policy: o.policy, limit: o.limit, bound: o.bound, observed: o.observed ?? 0 })),
    usage:
      p.usage === undefined
        ? null
        : { key: p.usage.key, ruleId: p.usage.ruleId, limits: p.usage.limits.map((l) => ({ policy: l.policy, usage: Math.round(l.usage * 100) / 100, limit: l.capacity })) },
  };
}
