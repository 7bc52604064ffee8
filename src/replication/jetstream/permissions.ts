/**
 * What a node's NATS user may do: publish its own deltas, read the streams it needs, and
 * manage only its own durable consumers. Everything else, stream administration included, is
 * the admin user's (see docs/SECURITY.md). The generated nats-server configs
 * (regions/topology.ts) carry exactly these lists, so a node's credentials cannot:
 * - publish on another node's subject (forge its counts);
 * - create, change, purge or delete a stream, or delete a message;
 * - create, read or delete another node's consumers, or read their deliveries or replies.
 *
 * Pure: no I/O.
 */
import { aggregateStreamName, assertNodeId, assertRegionName, deliverPrefix, durableName, nodeSubject, regionStreamName } from '../subjects.ts';

export interface NodePermissions {
  publish: string[];
  subscribe: string[];
}

/** Prefix of the node's request inboxes: replies to its JetStream requests come only there. */
export function nodeInboxPrefix(nodeId: string): string {
  assertNodeId(nodeId);
  return `_INBOX.${nodeId}`;
}

/** Subjects node `nodeId` of `region` may publish and subscribe to, with `regions` every region. */
export function nodePermissions(region: string, nodeId: string, regions: readonly string[]): NodePermissions {
  assertRegionName(region);
  assertNodeId(nodeId);
  const all = [...new Set([...regions, region])].sort();
  const durable = durableName(nodeId);
  // The streams it consumes: its region's and, with other regions, its aggregate.
  const own = [regionStreamName(region), ...(all.length > 1 ? [aggregateStreamName(region)] : [])];
  // The streams it may read by direct get: its own two, and every other region's (read
  // directly while their sourcing into the aggregate is stalled).
  const readable = [...own, ...all.filter((r) => r !== region).map(regionStreamName)];
  const publish = [nodeSubject(region, nodeId)];
  for (const s of readable) publish.push(`$JS.API.STREAM.INFO.${s}`, `$JS.API.DIRECT.GET.${s}`);
  for (const s of own) {
    publish.push(
      `$JS.API.CONSUMER.CREATE.${s}.${durable}`,
      `$JS.API.CONSUMER.CREATE.${s}.${durable}.>`,
      `$JS.API.CONSUMER.DURABLE.CREATE.${s}.${durable}`,
      `$JS.API.CONSUMER.INFO.${s}.${durable}`,
      `$JS.API.CONSUMER.DELETE.${s}.${durable}`,
      // Answers to its consumers' flow-control requests.
      `$JS.FC.${s}.${durable}.>`,
    );
  }
  return {
    publish,
    subscribe: [`${nodeInboxPrefix(nodeId)}.>`, `${deliverPrefix(region, nodeId)}.>`],
  };
}
