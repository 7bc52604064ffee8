/**
 * The JetStream transport (see ./transport.ts): what the rest of the code imports.
 */
export { JetStreamTransport, type TransportOptions } from './transport.ts';
export { NatsLink, RECONNECT_OPTIONS, RESYNC_REQUEST_TIMEOUT_MS, isAuthError, isPermissionError, redactUrl, type ConnectionOptions, type NatsTlsFiles } from './connection.ts';
export { provisionDeployment, type ProvisionOptions, type ProvisionResult } from './admin.ts';
export { nodeInboxPrefix, nodePermissions, type NodePermissions } from './permissions.ts';
export {
  DEFAULT_DUPLICATE_WINDOW_MS,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_MAX_AGE_MS,
  Provisioner,
  provisionStreams,
  type StreamSettings,
  deliverSubject,
  parseAckReply,
  type NamedStreamConfig,
  type ProvisioningOptions,
} from './provisioning.ts';
export { REPOSITION_LIMIT, StreamReader, type ReaderContext } from './consumer.ts';
export { FETCH_WINDOW, fetchRange, type FetchContext, type FetchedMsg } from './fetch.ts';
export {
  JS_ERR,
  ReplicationError,
  apiErrCode,
  isApiError,
  isRefusal,
  isTransient,
  replicationCode,
  wrapError,
  type ReplicationErrorCode,
} from './errors.ts';
export type { ConsumeOptions, MessageHandler, ReplicatedMessage, StreamProgress, Transport, TransportEvents, TransportStatus } from '../port.ts';
