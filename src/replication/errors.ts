/**
 * The replication room's error type, shared by the replicator and every transport.
 */
import { CodecError } from '../../crdt/index.ts';
import { LimiterError } from '../engine/errors.ts';

export type ReplicationErrorCode =
  /** The bus cannot be reached, or has no quorum to answer. */
  | 'REPLICATION_UNAVAILABLE'
  /** A stream or consumer exists with a configuration that cannot be changed in place. */
  | 'REPLICATION_CONFLICT'
  /** The transport was used wrongly (closed, consume twice, bad argument). */
  | 'REPLICATION_USAGE'
  /** NATS refused this node's credentials, or an operation its permissions do not allow. */
  | 'REPLICATION_UNAUTHORIZED'
  /** A stream this node reads is missing and this node may not create it (run `npm run provision` with the admin user). */
  | 'REPLICATION_NOT_PROVISIONED'
  /** A batch claims to come from another node than the one whose channel it came on, or carries another node's cells. */
  | 'REPLICATION_FORGED'
  /** A batch carries more cells than a node ever ships in one. */
  | 'REPLICATION_BATCH_TOO_LARGE'
  /** A batch comes from a new node while this node already tracks the most peers it accepts. */
  | 'REPLICATION_TOO_MANY_PEERS'
  /** A replicated rules document failed validation (refused; the rules in force stay). */
  | 'REPLICATION_RULES_INVALID';

/** A replication failure with a stable code; `cause` holds the underlying error. */
export class ReplicationError extends LimiterError {
  declare readonly code: ReplicationErrorCode;
  constructor(code: ReplicationErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ReplicationError';
  }
}

/** A batch refused for good (never redelivered, counted by code). */
export function refusal(code: ReplicationErrorCode, message: string): ReplicationError & { poison: true } {
  return Object.assign(new ReplicationError(code, message), { poison: true as const });
}

/**
 * Whether a handler error refuses a batch for good (never redelivered): a decode error from
 * crdt/ (CodecError), or any error marked `poison: true`. Anything else is retried.
 */
export function isRefusal(err: unknown): boolean {
  return err instanceof CodecError || (typeof err === 'object' && err !== null && (err as { poison?: unknown }).poison === true);
}
