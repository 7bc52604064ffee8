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
  | 'REPLICATION_USAGE';

/** A replication failure with a stable code; `cause` holds the underlying error. */
export class ReplicationError extends LimiterError {
  declare readonly code: ReplicationErrorCode;
  constructor(code: ReplicationErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ReplicationError';
  }
}

/**
 * Whether a handler error refuses a batch for good (never redelivered): a decode error from
 * crdt/ (CodecError), or any error marked `poison: true`. Anything else is retried.
 */
export function isRefusal(err: unknown): boolean {
  return err instanceof CodecError || (typeof err === 'object' && err !== null && (err as { poison?: unknown }).poison === true);
}
