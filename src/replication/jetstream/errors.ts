/**
 * Errors of the JetStream transport: the shared ReplicationError (re-exported from
 * ../errors.ts, so `instanceof` holds across transports) and the classification of what nats.js
 * 2.29 throws. Classification reads only the NatsError `code` and the JetStream
 * `api_error.err_code`, never message text.
 */
import { ErrorCode, NatsError } from 'nats';
import { ReplicationError, type ReplicationErrorCode } from '../errors.ts';

export { ReplicationError, isRefusal, type ReplicationErrorCode } from '../errors.ts';

/**
 * JetStream API error codes (`api_error.err_code`, nats-server's errors.json) this transport
 * acts on.
 */
export const JS_ERR = {
  /** JSClusterIncompleteErr: incomplete results (a peer did not answer in time). */
  CLUSTER_INCOMPLETE: 10004,
  /** JSClusterNoPeersErr: no suitable peers for placement (right after start-up, before every cluster reported). */
  CLUSTER_NO_PEERS: 10005,
  /** JSClusterNotAvailErr: JetStream system temporarily unavailable (no meta leader, e.g. right after a heal). */
  CLUSTER_NOT_AVAILABLE: 10008,
  /** JSClusterNotLeaderErr: JetStream cluster can not handle request (leader moving). */
  CLUSTER_NOT_LEADER: 10009,
  /** JSConsumerNotFoundErr. */
  CONSUMER_NOT_FOUND: 10014,
  /** JSInsufficientResourcesErr. */
  INSUFFICIENT_RESOURCES: 10023,
  /** JSNoMessageFoundErr: STREAM.MSG.GET of a sequence that is not (or no longer) stored. */
  NO_MESSAGE_FOUND: 10037,
  /** JSStreamNameExistErr: "stream name already in use" (another node created it first; on 2.9 also with the same config). */
  STREAM_NAME_IN_USE: 10058,
  /** JSStreamNotFoundErr. */
  STREAM_NOT_FOUND: 10059,
} as const;

/** NatsError codes of failures that go away by themselves (reachability, quorum, time-outs). */
const TRANSIENT_CODES: ReadonlySet<string> = new Set<string>([
  ErrorCode.Timeout, // request or publish not answered in time
  ErrorCode.NoResponders, // '503': no JetStream API responder yet (also ErrorCode.JetStreamNotEnabled, same code)
  ErrorCode.JetStream408RequestTimeout,
  ErrorCode.Disconnect,
  ErrorCode.ConnectionRefused,
  ErrorCode.ConnectionTimeout,
]);

const TRANSIENT_API: ReadonlySet<number> = new Set<number>([
  JS_ERR.CLUSTER_INCOMPLETE,
  JS_ERR.CLUSTER_NO_PEERS,
  JS_ERR.CLUSTER_NOT_AVAILABLE,
  JS_ERR.CLUSTER_NOT_LEADER,
  JS_ERR.INSUFFICIENT_RESOURCES,
]);

/** The JetStream API error code of `err`, if it is a JetStream API error. */
export function apiErrCode(err: unknown): number | undefined {
  return err instanceof NatsError ? err.api_error?.err_code : undefined;
}

/** Whether `err` is the JetStream API error `errCode` (see {@link JS_ERR}). */
export function isApiError(err: unknown, errCode: number): boolean {
  return apiErrCode(err) === errCode;
}

/** Errors worth retrying: time-outs, no responders, disconnects, JetStream without quorum. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof NatsError)) return false;
  const api = err.api_error?.err_code;
  if (api !== undefined) return TRANSIENT_API.has(api);
  return TRANSIENT_CODES.has(err.code);
}

export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** The ReplicationError code for a failed NATS operation: unavailable when transient, else conflict. */
export function replicationCode(err: unknown): ReplicationErrorCode {
  return isTransient(err) ? 'REPLICATION_UNAVAILABLE' : 'REPLICATION_CONFLICT';
}

/** Wraps a NATS failure of `what` (a ReplicationError passes through unchanged). */
export function wrapError(what: string, err: unknown): ReplicationError {
  if (err instanceof ReplicationError) return err;
  return new ReplicationError(replicationCode(err), `${what}: ${toError(err).message}`, { cause: err });
}
