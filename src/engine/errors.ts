/**
 * Typed errors with stable codes. Every error the service can report carries a code from
 * ERROR_CODES; src/http/errors.ts maps codes to HTTP statuses in one place, and
 * docs/ERRORS.md documents every code (a test keeps the two in step).
 */
export const ERROR_CODES = {
  // Request validation (HTTP 400 / 413)
  INVALID_JSON: 'The request body is not valid JSON.',
  INVALID_BODY: 'The request body does not match the schema.',
  UNKNOWN_FIELD: 'The request body has a field the API does not know.',
  KEY_MISSING: 'The request has no key.',
  KEY_EMPTY: 'The key is an empty string.',
  KEY_TOO_LONG: 'The key is longer than the configured maximum (bytes, UTF-8).',
  KEY_INVALID: 'The key contains characters that are not allowed (control characters).',
  COST_INVALID: 'The cost is not a positive integer within the allowed maximum.',
  METADATA_INVALID: 'Metadata must be an object of string values with bounded names and values.',
  METADATA_TOO_MANY: 'The request has more metadata entries than allowed.',
  BATCH_INVALID: 'The batch must hold between 1 and the maximum number of checks.',
  BODY_TOO_LARGE: 'The request body is larger than the configured maximum.',
  UNSUPPORTED_MEDIA_TYPE: 'The request body must be application/json.',
  INVALID_UTF8: 'The request body or query string is not valid UTF-8.',
  ADMISSION_ID_MISSING: 'A refund must name the admission it gives back (admissionId).',
  ADMISSION_ID_INVALID: 'The admissionId is not in the form this service issues.',
  ADMISSION_UNKNOWN: 'No such admission on this node (never issued, or forgotten because too many were held).',
  ADMISSION_EXPIRED: "The admission's window has passed; there is nothing left to refund.",
  ADMISSION_ALREADY_REFUNDED: 'The admission was already refunded.',
  ADMISSION_OTHER_NODE: 'The admission was made on another node; refund it there.',
  PRIORITY_RESERVED: "Only the rule's reserve is left, kept for higher-priority checks: this check's priority is below it.",
  RULE_KEY_CAP: "The rule holds its maximum number of keys (maxKeys): a new key is denied until some expire.",
  SHARE_WAIT: 'The key is near its limit and this node has used its share of the headroom: it waits for the other nodes\' counts before admitting more.',
  DEGRADED_SHARE: 'Peers cannot be seen and the rule is in share mode: this node has admitted its share of the limit.',
  DEGRADED_CLOSED: 'Peers cannot be seen and the rule is in closed mode: its checks are denied until they are back.',
  API_UNAUTHORIZED: 'The route needs an API token (Authorization: Bearer <token>) and none valid was given.',
  ADMIN_UNAUTHORIZED: 'The admin route needs the admin token (Authorization: Bearer <token>) and it was missing or wrong.',
  ADMIN_DISABLED: 'Admin routes are disabled: no admin token is configured.',
  NOT_FOUND: 'No such route.',
  METHOD_NOT_ALLOWED: 'The route does not accept this method.',
  // Configuration (start-up and rules updates)
  CONFIG_INVALID: 'The configuration is invalid; every problem is listed.',
  CONFIG_UNREADABLE: 'The configuration file cannot be read or parsed.',
  RULE_DUPLICATE_ID: 'Two rules have the same id.',
  RULE_INVALID_WINDOW: 'A window is not a duration like "500ms", "1s", "10m", "1h", "1d".',
  RULE_INVALID: 'A rule does not match the rules schema.',
  TOPOLOGY_INVALID: 'The region topology (regions/*.json) is invalid; every problem is listed.',
  // Kinds of problem in a validated document (config, rules, topology, message)
  FIELD_MISSING: 'A required field is missing.',
  TYPE_MISMATCH: 'A value has the wrong type (e.g. a string where an integer is expected).',
  VALUE_NOT_ALLOWED: 'A value is not one of the allowed values.',
  OUT_OF_RANGE: 'A number, length or count is outside its allowed range.',
  PATTERN_MISMATCH: 'A string does not have the required form (e.g. a name with forbidden characters).',
  VALUE_INVALID: 'A value is invalid in a way no more specific code covers (repeated items, values that contradict each other).',
  // Rules at run time (admin API, watched file, replication)
  RULES_INVALID: 'A rules change was refused as a whole (all or nothing); `problems` lists every problem, and the rules in force stay unchanged.',
  RULES_TOO_LARGE: 'The rules document is larger than a rules message can carry (1 000 000 bytes of JSON).',
  RULES_VERSION_STALE: 'If-Match names a rules version that is no longer the current one: read the rules again and retry.',
  RULE_NOT_FOUND: 'No rule with this id in the rules in force.',
  RULE_INVALID_PATTERN: 'A key pattern is malformed ("*" only at the end or alone), or a child rule\'s key is outside its parent\'s pattern.',
  RULE_UNKNOWN_PARENT: 'A rule names a parent that is not a rule of the document.',
  RULE_UNKNOWN_TIER: 'A rule, the key-to-tier mapping or the default tier names a tier the document does not declare.',
  RULE_CYCLE: 'The parents of a rule loop back to it.',
  // Replication and codec
  CODEC_MALFORMED: 'A replicated message is not a valid msgpack delta envelope.',
  CODEC_UNSUPPORTED_VERSION: 'A replicated message has an unknown wire format version.',
  CODEC_LIMIT_EXCEEDED: 'A replicated message exceeds a size, count or range limit.',
  CODEC_INVALID_FIELD: 'A replicated message has a field of the wrong type or range.',
  REPLICATION_UNAVAILABLE: 'NATS or JetStream cannot be reached or has no quorum; the node answers from local state.',
  REPLICATION_CONFLICT: 'A replication stream or consumer exists with a configuration that cannot be changed in place.',
  REPLICATION_USAGE: 'Replication was configured or used wrongly (regions, node id, closed transport).',
  REPLICATION_UNAUTHORIZED: 'NATS refused the node\'s credentials, or an operation its permissions do not allow.',
  REPLICATION_NOT_PROVISIONED: 'A replication stream is missing and this node may not create it; run the provisioning with the admin user.',
  REPLICATION_FORGED: 'A replicated batch claims another origin than its channel, or carries another node\'s cells.',
  REPLICATION_BATCH_TOO_LARGE: 'A replicated batch carries more cells than a node ships in one.',
  REPLICATION_TOO_MANY_PEERS: 'A replicated batch comes from a new node beyond the number of peers accepted.',
  REPLICATION_RULES_INVALID: 'A replicated rules document failed validation; it was refused and the rules in force stay.',
  // Storage and runtime
  STORAGE_FAILURE: 'The state store failed; the node keeps answering from memory.',
  STORAGE_UNAVAILABLE: 'The data directory cannot be opened for writing (read-only, permissions, full); the node serves from memory and retries.',
  STORAGE_CORRUPT: 'The database failed its integrity check or could not be read at start-up; it was moved aside and the state rebuilt.',
  STORAGE_LOST: 'The database was empty or missing although the data directory had held this node\'s state.',
  STORAGE_INCOMPATIBLE: 'The data directory belongs to another node id or an unknown schema version.',
  NOT_READY: 'The node is not ready to serve.',
  INTERNAL: 'An unexpected internal error.',
  // Libraries (the embedded limiter and the client)
  REQUEST_ID_INVALID: 'The requestId of a check is not a string of 1 to 64 characters.',
  LIMITER_CLOSED: 'The embedded limiter or the client was closed.',
  LIMITER_UNREACHABLE: 'The client could not reach the limiter (connection refused, reset or DNS), and no fallback answered.',
  LIMITER_TIMEOUT: 'The limiter did not answer within the client\'s timeout, and no fallback answered.',
  LIMITER_BAD_RESPONSE: 'The limiter answered something the client cannot read (a status or body it does not expect).',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * One problem found in a document (configuration, rules, topology, request body, message): the
 * one shape every validator reports (src/engine/validation.ts translates schema errors into it).
 */
export interface Problem {
  code: ErrorCode;
  /** JSON pointer inside the document, e.g. "/rules/2/limits/0/window"; "" for the whole document. */
  path: string;
  message: string;
  /** File or source the document came from (a path, "--port", "LIMITER_PORT", "<inline>"). */
  file?: string;
}

/** A problem in a configuration (the rules document, the node options). */
export type ConfigProblem = Problem;

export class LimiterError extends Error {
  readonly code: ErrorCode;
  /** Extra, code-specific details (e.g. the offending field). Safe to show to clients. */
  readonly details?: Record<string, unknown>;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ERROR_CODES[code], options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'LimiterError';
    this.code = code;
    if (options?.details) this.details = options.details;
  }
}

/** A configuration was refused; `problems` lists every problem found, not just the first. */
export class ConfigError extends LimiterError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[], code: ErrorCode = 'CONFIG_INVALID') {
    super(
      code,
      `${ERROR_CODES[code]}\n` + problems.map((p) => `  ${p.code} ${p.file ?? ''}${p.path ? ' at ' + p.path : ''}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** The state store failed. The engine keeps answering from memory; the error is counted and logged. */
/** The storage codes a StorageError can carry. */
export type StorageErrorCode = 'STORAGE_FAILURE' | 'STORAGE_UNAVAILABLE' | 'STORAGE_CORRUPT' | 'STORAGE_LOST';

export class StorageError extends LimiterError {
  constructor(message: string, options?: { cause?: unknown; code?: StorageErrorCode }) {
    super(options?.code ?? 'STORAGE_FAILURE', message, options);
    this.name = 'StorageError';
  }
}
