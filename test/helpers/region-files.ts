/**
 * A region file's content (regions/<name>.json) for topology tests: ports from `base` up
 * (client, cluster, gateway, monitor, then the one node's HTTP port), one node `<name>-1`.
 */
export function regionFile(name: string, base = 5000, extra: Record<string, unknown> = {}) {
  return {
    name,
    nats: { clientPort: base, clusterPort: base + 1, gatewayPort: base + 2, monitorPort: base + 3 } as Record<string, unknown>,
    nodes: [{ id: `${name}-1`, httpPort: base + 4 }] as Record<string, unknown>[],
    ...extra,
  };
}
