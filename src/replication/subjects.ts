/**
 * Names on the wire: subjects, stream names and consumer names used for replication.
 *
 * Pure: no I/O. Every name the transport, the topology and the generated NATS configs use is
 * derived here, so they cannot drift apart.
 *
 * Layout (see CONSISTENCY.md):
 * - node `N` of region `R` publishes on `limiter.d.R.N`;
 * - stream `LIMITER_R` (placed in cluster `R`) takes `limiter.d.R.>`;
 * - stream `LIMITER_R_AGG` (placed in cluster `R`, no subjects) sources every other region's
 *   `LIMITER_X`, so a region reads the whole world from two local streams;
 * - each node reads both through durable push consumers named `node-N`.
 */
import { Type } from '@sinclair/typebox';
import type { Problem } from '../engine/errors.ts';
import { compileSchema, problemsFromAjv } from '../engine/validation.ts';
import { ReplicationError } from './errors.ts';

/** Root of every replication subject. */
export const SUBJECT_ROOT = 'limiter.d';

/** Region names: lower-case letters, digits and inner hyphens, e.g. `us-east`. Max 32 chars. */
export const REGION_NAME_RE = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;
export const REGION_NAME_MAX = 32;

/**
 * Node ids: letters, digits, `-` and `_`, max 64 chars. Valid as a subject token and as a
 * JetStream consumer name (no `.`, `*`, `>`, whitespace).
 */
export const NODE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
export const NODE_ID_MAX = 64;

export const RegionNameSchema = Type.String({
  minLength: 1,
  maxLength: REGION_NAME_MAX,
  pattern: REGION_NAME_RE.source,
  description: 'lower-case letters, digits and inner hyphens (like "us-east")',
});

export const NodeIdSchema = Type.String({
  minLength: 1,
  maxLength: NODE_ID_MAX,
  pattern: NODE_ID_RE.source,
  description: 'letters, digits, "-" and "_" (no dots, wildcards or spaces)',
});

const validRegionName = compileSchema(RegionNameSchema);
const validNodeId = compileSchema(NodeIdSchema);

/** Why a region name is invalid (the first problem), or null when it is valid. */
export function regionNameProblem(name: unknown, path = ''): Problem | null {
  return validRegionName(name) ? null : { ...problemsFromAjv(validRegionName.errors)[0]!, path };
}

/** Why a node id is invalid (the first problem), or null when it is valid. */
export function nodeIdProblem(id: unknown, path = ''): Problem | null {
  return validNodeId(id) ? null : { ...problemsFromAjv(validNodeId.errors)[0]!, path };
}

export function assertRegionName(name: string): void {
  const p = regionNameProblem(name);
  if (p) throw new ReplicationError('REPLICATION_USAGE', `invalid region name: ${p.message}`);
}

export function assertNodeId(id: string): void {
  const p = nodeIdProblem(id);
  if (p) throw new ReplicationError('REPLICATION_USAGE', `invalid node id: ${p.message}`);
}

function upper(region: string): string {
  assertRegionName(region);
  return region.toUpperCase().replace(/-/g, '_');
}

/** The stream that holds region `region`'s own deltas: `LIMITER_US_EAST` for `us-east`. */
export function regionStreamName(region: string): string {
  return `LIMITER_${upper(region)}`;
}

/** The stream in `region` that sources every other region's stream: `LIMITER_US_EAST_AGG`. */
export function aggregateStreamName(region: string): string {
  return `LIMITER_${upper(region)}_AGG`;
}

/** Subjects of region `region`'s stream: `limiter.d.us-east.>`. */
export function regionSubjects(region: string): string {
  assertRegionName(region);
  return `${SUBJECT_ROOT}.${region}.>`;
}

/** The one subject node `nodeId` of `region` publishes on: `limiter.d.us-east.us-east-1`. */
export function nodeSubject(region: string, nodeId: string): string {
  assertRegionName(region);
  assertNodeId(nodeId);
  return `${SUBJECT_ROOT}.${region}.${nodeId}`;
}

/**
 * Reads region and node id back from a replication subject; null when the subject is not one
 * (wrong root, wrong token count, invalid names). The node id in the subject is the
 * authoritative origin of a delta (NATS permissions restrict each node to its own subject).
 */
export function parseNodeSubject(subject: string): { region: string; nodeId: string } | null {
  const parts = subject.split('.');
  if (parts.length !== 4 || `${parts[0]}.${parts[1]}` !== SUBJECT_ROOT) return null;
  const region = parts[2]!;
  const nodeId = parts[3]!;
  if (regionNameProblem(region) || nodeIdProblem(nodeId)) return null;
  return { region, nodeId };
}

/**
 * Where node `nodeId`'s push consumer on `stream` delivers: `_limiter.deliver.<region>.<node>.<stream>`.
 * Fixed per node and stream, so a restarted node subscribes where its durable consumer delivers
 * without changing the consumer (which would need the meta quorum). Outside `limiter.d.>`: no
 * stream captures it.
 */
export function deliverSubject(region: string, nodeId: string, stream: string): string {
  return `${deliverPrefix(region, nodeId)}.${stream}`;
}

/** Prefix of every delivery subject of node `nodeId` (its NATS user may subscribe below it only). */
export function deliverPrefix(region: string, nodeId: string): string {
  assertRegionName(region);
  assertNodeId(nodeId);
  return `_limiter.deliver.${region}.${nodeId}`;
}

/** Durable consumer name of node `nodeId` (the same name on both streams it reads). */
export function durableName(nodeId: string): string {
  assertNodeId(nodeId);
  return `node-${nodeId}`;
}
