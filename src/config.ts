/**
 * Node configuration from command-line flags and LIMITER_* environment variables (flags win),
 * validated once against a TypeBox schema (src/engine/validation.ts) and frozen. Text values are
 * read as their types here, by hand, in one place (durations and booleans have forms JSON Schema
 * has no coercion for); every problem is reported with its code and where the value came from.
 */
import { parseArgs } from 'node:util';
import { Type } from '@sinclair/typebox';
import { parseDuration } from './engine/duration.ts';
import { ConfigError, type ConfigProblem } from './engine/errors.ts';
import { compileSchema, problemsFromAjv } from './engine/validation.ts';
import { NodeIdSchema } from './replication/subjects.ts';
import type { Durability } from './storage/sqlite.ts';

export interface NodeConfig {
  nodeId: string;
  region: string;
  host: string;
  port: number;
  rules: string;
  data: string;
  durability: Durability;
  flushIntervalMs: number;
  maxKeys: number;
  maxKeyBytes: number;
  denyStatus: number;
  /** NATS server URLs (comma-separated in flags and env); empty = run alone. */
  nats: string[];
  /** Every region of the deployment (this one included); the node reads the others' deltas. */
  regions: string[];
  /** File holding this node's NATS nkey seed (`SU…`); empty connects anonymously. */
  natsNkeyFile: string;
  /** TLS to NATS: CA file to verify the server, and a client certificate and key (PEM); empty: none. */
  natsTlsCa: string;
  natsTlsCert: string;
  natsTlsKey: string;
  /** A peer silent longer than this makes the node apply its rules' degradation modes (ms). */
  staleAfterMs: number;
  /** Longest wait of a check for its share of a key's headroom (near-limit sharing), ms. */
  shareWaitMs: number;
  /** Replication streams keep deltas this long (must cover the longest window plus the longest partition tolerated). */
  streamMaxAgeMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Bearer token of the admin routes; empty = admin routes answer 403 ADMIN_DISABLED. */
  adminToken: string;
  /** Serve the admin routes (rules API, reset) on their own listener on this port (same host) only; 0: on the HTTP port. */
  adminPort: number;
  /** Apply an edit of the rules file like a PUT /v1/rules from this node. */
  watchRules: boolean;
  /** Bearer tokens the check, refund and usage routes accept; none (and no file) = open. */
  apiTokens: string[];
  /** File of API tokens, one per line; re-read when it changes and on SIGHUP. */
  apiTokensFile: string;
  /** /v1/status and /v1/usage need the admin token. */
  restrictStatus: boolean;
  /** Proxies (CIDRs or addresses) whose forwarding header is believed. */
  trustedProxies: string[];
  /** Which header the trusted proxies write: X-Forwarded-For or RFC 7239 Forwarded. */
  forwardedHeader: 'x-forwarded-for' | 'forwarded';
  /** PEM certificate chain and private key of the HTTPS listener; both empty = plain HTTP. */
  tlsCert: string;
  tlsKey: string;
  bodyLimit: number;
  maxHeaderSize: number;
  maxBatch: number;
  maxMetadataEntries: number;
  maxMetadataValueBytes: number;
  maxAdmissions: number;
  maxConnections: number;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Serve Prometheus metrics (GET /metrics) and count checks for them. */
  metrics: boolean;
  /** Serve /metrics on its own listener on this port (same host); 0: on the HTTP port. */
  metricsPort: number;
  /** OTLP/HTTP traces URL; empty: no tracing. */
  otlpEndpoint: string;
  /** Trace one check in this many. */
  otlpCheckSample: number;
}

interface OptionDef {
  flag: string;
  env: string;
  type: 'string' | 'integer' | 'duration' | 'list' | 'boolean';
  default?: string;
  help: string;
  /** A variable platforms set (PORT, HOST), read when the LIMITER_* one is not set. */
  fallbackEnv?: string;
}

/** Every option: flag, environment variable, default and meaning (README's options table is made from the same facts). */
export const OPTIONS: Record<keyof NodeConfig, OptionDef> = {
  nodeId: { flag: 'node-id', env: 'LIMITER_NODE_ID', type: 'string', default: 'local-1', help: 'Stable id of this node; its data directory is bound to it.' },
  region: { flag: 'region', env: 'LIMITER_REGION', type: 'string', default: 'local', help: 'Region this node runs in.' },
  host: { flag: 'host', env: 'LIMITER_HOST', fallbackEnv: 'HOST', type: 'string', default: '127.0.0.1', help: 'Address the HTTP server listens on (HOST when LIMITER_HOST is not set).' },
  port: { flag: 'port', env: 'LIMITER_PORT', fallbackEnv: 'PORT', type: 'integer', default: '8080', help: 'HTTP port (PORT when LIMITER_PORT is not set).' },
  rules: { flag: 'rules', env: 'LIMITER_RULES', type: 'string', help: 'Rules file (YAML or JSON). Required.' },
  data: { flag: 'data', env: 'LIMITER_DATA', type: 'string', default: './data', help: 'Data directory for the SQLite state store.' },
  durability: { flag: 'durability', env: 'LIMITER_DURABILITY', type: 'string', default: 'batch', help: '"batch" (flush every interval) or "sync" (commit before answering).' },
  flushIntervalMs: { flag: 'flush-interval', env: 'LIMITER_FLUSH_INTERVAL', type: 'duration', default: '50ms', help: 'How often changes are written to SQLite in batch durability (shipping does not wait for it).' },
  maxKeys: { flag: 'max-keys', env: 'LIMITER_MAX_KEYS', type: 'integer', default: '1000000', help: 'Cap on live keys held in memory (all limits together).' },
  maxKeyBytes: { flag: 'max-key-bytes', env: 'LIMITER_MAX_KEY_BYTES', type: 'integer', default: '512', help: 'Longest key accepted, in UTF-8 bytes.' },
  denyStatus: { flag: 'deny-status', env: 'LIMITER_DENY_STATUS', type: 'integer', default: '429', help: 'Status of a denied GET /v1/check (nginx auth_request needs 401 or 403).' },
  nats: { flag: 'nats', env: 'LIMITER_NATS', type: 'list', default: '', help: 'NATS server URL(s), comma-separated; empty runs the node alone.' },
  regions: { flag: 'regions', env: 'LIMITER_REGIONS', type: 'list', default: '', help: 'Every region of the deployment, comma-separated (default: only --region).' },
  natsNkeyFile: { flag: 'nats-nkey-file', env: 'LIMITER_NATS_NKEY_FILE', type: 'string', default: '', help: "File with this node's NATS nkey seed (npm run creds writes secrets/<node-id>.nk); empty connects without credentials." },
  natsTlsCa: { flag: 'nats-tls-ca', env: 'LIMITER_NATS_TLS_CA', type: 'string', default: '', help: 'CA certificate (PEM) that signed the NATS servers\' certificates: connect over TLS and verify them.' },
  natsTlsCert: { flag: 'nats-tls-cert', env: 'LIMITER_NATS_TLS_CERT', type: 'string', default: '', help: 'Client certificate (PEM) for NATS servers that verify clients (with --nats-tls-key).' },
  natsTlsKey: { flag: 'nats-tls-key', env: 'LIMITER_NATS_TLS_KEY', type: 'string', default: '', help: 'Private key (PEM) of --nats-tls-cert.' },
  shareWaitMs: { flag: 'share-wait', env: 'LIMITER_SHARE_WAIT', type: 'duration', default: '500ms', help: "How long a check near its key's limit may wait for the peers' counts (near-limit sharing) before it is answered SHARE_WAIT; 0 answers at once." },
  staleAfterMs: { flag: 'stale-after', env: 'LIMITER_STALE_AFTER', type: 'duration', default: '2500ms', help: "A peer silent this long (no delta, no heartbeat) makes rules apply their degradation mode (share, open or closed)." },
  streamMaxAgeMs: { flag: 'stream-max-age', env: 'LIMITER_STREAM_MAX_AGE', type: 'duration', default: '24h', help: 'How long the replication streams keep deltas: the longest window plus the longest partition to heal by catch-up.' },
  logLevel: { flag: 'log-level', env: 'LIMITER_LOG_LEVEL', type: 'string', default: 'info', help: 'fatal, error, warn, info, debug, trace or silent.' },
  adminToken: { flag: 'admin-token', env: 'LIMITER_ADMIN_TOKEN', type: 'string', default: '', help: 'Bearer token of the admin routes (the rules API, POST /v1/admin/reset); empty disables them (403).' },
  adminPort: { flag: 'admin-port', env: 'LIMITER_ADMIN_PORT', type: 'integer', default: '0', help: 'Serve the admin routes (/v1/rules, POST /v1/admin/reset) on their own listener on this port (same --host and TLS) only; the HTTP port then answers them 404. 0: on the HTTP port.' },
  watchRules: { flag: 'watch-rules', env: 'LIMITER_WATCH_RULES', type: 'boolean', default: 'false', help: 'Apply an edit of the --rules file like a PUT /v1/rules from this node (an invalid edit is logged and refused).' },
  apiTokens: { flag: 'api-token', env: 'LIMITER_API_TOKENS', type: 'list', default: '', help: 'Bearer token(s) the check, refund, usage and status routes require, comma-separated; empty (and no file) leaves them open.' },
  apiTokensFile: { flag: 'api-tokens-file', env: 'LIMITER_API_TOKENS_FILE', type: 'string', default: '', help: 'File of API tokens, one per line; re-read when it changes and on SIGHUP.' },
  restrictStatus: { flag: 'restrict-status', env: 'LIMITER_RESTRICT_STATUS', type: 'boolean', default: 'false', help: 'Make /v1/status and /v1/usage require the admin token.' },
  trustedProxies: { flag: 'trusted-proxies', env: 'LIMITER_TRUSTED_PROXIES', type: 'list', default: '', help: 'Proxy addresses or CIDRs whose forwarding header is believed, comma-separated; empty: the client IP is the socket peer.' },
  forwardedHeader: { flag: 'forwarded-header', env: 'LIMITER_FORWARDED_HEADER', type: 'string', default: 'x-forwarded-for', help: 'Header the trusted proxies write: x-forwarded-for or forwarded (RFC 7239).' },
  tlsCert: { flag: 'tls-cert', env: 'LIMITER_TLS_CERT', type: 'string', default: '', help: 'PEM certificate (chain) of the HTTPS listener; with --tls-key. Empty: plain HTTP.' },
  tlsKey: { flag: 'tls-key', env: 'LIMITER_TLS_KEY', type: 'string', default: '', help: 'PEM private key of the HTTPS listener.' },
  bodyLimit: { flag: 'body-limit', env: 'LIMITER_BODY_LIMIT', type: 'integer', default: '65536', help: 'Largest request body, in bytes.' },
  maxHeaderSize: { flag: 'max-header-size', env: 'LIMITER_MAX_HEADER_SIZE', type: 'integer', default: '16384', help: 'Largest request head (request line and headers), in bytes.' },
  maxBatch: { flag: 'max-batch', env: 'LIMITER_MAX_BATCH', type: 'integer', default: '1000', help: 'Most checks in one POST /v1/check/batch.' },
  maxMetadataEntries: { flag: 'max-metadata-entries', env: 'LIMITER_MAX_METADATA_ENTRIES', type: 'integer', default: '16', help: 'Most metadata entries per check.' },
  maxMetadataValueBytes: { flag: 'max-metadata-value-bytes', env: 'LIMITER_MAX_METADATA_VALUE_BYTES', type: 'integer', default: '256', help: 'Longest metadata value, in UTF-8 bytes.' },
  maxAdmissions: { flag: 'max-admissions', env: 'LIMITER_MAX_ADMISSIONS', type: 'integer', default: '200000', help: 'Admission ids remembered for refunds; beyond it the oldest are forgotten.' },
  maxConnections: { flag: 'max-connections', env: 'LIMITER_MAX_CONNECTIONS', type: 'integer', default: '1000', help: 'Most open HTTP connections; more are closed at once (keep it below the open-file limit).' },
  connectionTimeoutMs: { flag: 'connection-timeout', env: 'LIMITER_CONNECTION_TIMEOUT', type: 'duration', default: '60s', help: 'A socket with no activity for this long is closed.' },
  requestTimeoutMs: { flag: 'request-timeout', env: 'LIMITER_REQUEST_TIMEOUT', type: 'duration', default: '10s', help: 'Time to receive a whole request (headers and body).' },
  headersTimeoutMs: { flag: 'headers-timeout', env: 'LIMITER_HEADERS_TIMEOUT', type: 'duration', default: '5s', help: 'Time to receive the request headers (at most --request-timeout).' },
  keepAliveTimeoutMs: { flag: 'keep-alive-timeout', env: 'LIMITER_KEEP_ALIVE_TIMEOUT', type: 'duration', default: '30s', help: 'An idle keep-alive connection is closed after this long.' },
  metrics: { flag: 'metrics', env: 'LIMITER_METRICS', type: 'boolean', default: 'true', help: 'Serve Prometheus metrics on GET /metrics (false: no /metrics, checks are not counted for it).' },
  otlpEndpoint: { flag: 'otlp-endpoint', env: 'LIMITER_OTLP_ENDPOINT', type: 'string', default: '', help: 'OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces): export OpenTelemetry spans of checks, replication publish and apply; empty: no tracing.' },
  otlpCheckSample: { flag: 'otlp-check-sample', env: 'LIMITER_OTLP_CHECK_SAMPLE', type: 'integer', default: '100', help: 'With --otlp-endpoint: trace one check in this many (1: every check).' },
  metricsPort: { flag: 'metrics-port', env: 'LIMITER_METRICS_PORT', type: 'integer', default: '0', help: 'Serve GET /metrics on its own plain-HTTP listener on this port (same --host, no tokens); 0: on the HTTP port, guarded like /v1/status.' },
};

/** The --help text: every option with its environment variable and default. */
export function usage(): string {
  const rows = Object.values(OPTIONS).map((o) => [`--${o.flag} ${o.type === 'list' ? 'A,B' : o.type === 'duration' ? 'DURATION' : o.type === 'integer' ? 'N' : o.type === 'boolean' ? 'BOOL' : 'VALUE'}`, o.env, o.default === undefined ? '(required)' : o.default === '' ? '(empty)' : o.default, o.help]);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const w2 = Math.max(...rows.map((r) => r[2].length));
  return [
    'usage: regionlimit --rules FILE [options]   (from the repository: npm start -- [options])',
    '',
    'Flags win over environment variables.',
    '',
    ...rows.map((r) => `  ${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2].padEnd(w2)}  ${r[3]}`),
    '',
  ].join('\n');
}

const ms = (min: number, max: number) => Type.Integer({ minimum: min, maximum: max });
/** Tokens: printable ASCII without spaces (what fits a Bearer header), at least 16 characters; never echoed. */
const TOKEN = { pattern: '^[\\x21-\\x7e]{16,4096}$', description: '16 to 4096 printable ASCII characters without spaces', writeOnly: true } as const;

/** Schema of the resolved configuration (after flags and variables are read as their types). */
export const CONFIG_SCHEMA = Type.Object(
  {
    nodeId: NodeIdSchema,
    region: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$', description: 'letters, digits, "-" and "_" (at most 64, starting with a letter or digit)' }),
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    rules: Type.String({ minLength: 1 }),
    data: Type.String({ minLength: 1 }),
    durability: Type.Union([Type.Literal('batch'), Type.Literal('sync')]),
    flushIntervalMs: ms(1, 60_000),
    maxKeys: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
    maxKeyBytes: Type.Integer({ minimum: 1, maximum: 1024 }),
    denyStatus: Type.Integer({ minimum: 400, maximum: 599 }),
    nats: Type.Array(Type.String({ pattern: '^(nats|tls|ws|wss)?:?/?/?[^\\s]+$', description: 'a NATS URL like nats://host:4222' })),
    regions: Type.Array(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$', description: 'a region name' }), { uniqueItems: true }),
    natsNkeyFile: Type.String(),
    natsTlsCa: Type.String(),
    natsTlsCert: Type.String(),
    natsTlsKey: Type.String(),
    staleAfterMs: ms(100, 3_600_000),
    shareWaitMs: ms(0, 60_000),
    streamMaxAgeMs: ms(60_000, 365 * 24 * 3600 * 1000),
    logLevel: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
    adminToken: Type.String({ ...TOKEN, pattern: '^$|^[\\x21-\\x7e]{16,4096}$', description: `empty, or ${TOKEN.description}` }),
    apiTokens: Type.Array(Type.String(TOKEN)),
    apiTokensFile: Type.String(),
    restrictStatus: Type.Boolean(),
    trustedProxies: Type.Array(Type.String({ pattern: '^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$', description: 'an IP address or CIDR like 10.0.0.0/8' })),
    forwardedHeader: Type.Union([Type.Literal('x-forwarded-for'), Type.Literal('forwarded')]),
    tlsCert: Type.String(),
    tlsKey: Type.String(),
    bodyLimit: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024 }),
    maxHeaderSize: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 }),
    maxBatch: Type.Integer({ minimum: 1, maximum: 100_000 }),
    maxMetadataEntries: Type.Integer({ minimum: 1, maximum: 1024 }),
    maxMetadataValueBytes: Type.Integer({ minimum: 1, maximum: 65_536 }),
    maxAdmissions: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
    maxConnections: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    connectionTimeoutMs: ms(1, 3_600_000),
    requestTimeoutMs: ms(1, 3_600_000),
    headersTimeoutMs: ms(1, 3_600_000),
    keepAliveTimeoutMs: ms(1, 3_600_000),
    metrics: Type.Boolean(),
    metricsPort: Type.Integer({ minimum: 0, maximum: 65535 }),
    adminPort: Type.Integer({ minimum: 0, maximum: 65535 }),
    watchRules: Type.Boolean(),
    otlpEndpoint: Type.String({ pattern: '^$|^https?://[^\\s]+$', description: 'empty, or an http(s) URL' }),
    otlpCheckSample: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  },
  { additionalProperties: false },
);

const validateConfig = compileSchema(CONFIG_SCHEMA);

/** Build the node configuration from argv and env. Throws ConfigError listing every problem. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Readonly<NodeConfig> {
  const problems: ConfigProblem[] = [];
  let flags: Record<string, string | undefined>;
  try {
    const parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.values(OPTIONS).map((o) => [o.flag, { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    });
    flags = parsed.values as Record<string, string | undefined>;
  } catch (cause) {
    const message = (cause as Error).message;
    const option = /'--([^'=\s]+)/.exec(message)?.[1];
    const unknown = (cause as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION';
    const path = option !== undefined ? `/${Object.entries(OPTIONS).find(([, o]) => o.flag === option)?.[0] ?? option}` : '';
    throw new ConfigError([
      unknown && option !== undefined
        ? { code: 'UNKNOWN_FIELD', file: '<command line>', path, message: `unknown option "--${option}"` }
        : { code: 'VALUE_INVALID', file: '<command line>', path, message },
    ]);
  }
  const raw: Record<string, unknown> = {};
  /** Where each value came from (a flag, a variable or the default), named in its problems. */
  const sources: Record<string, string> = {};
  for (const [name, o] of Object.entries(OPTIONS) as [keyof NodeConfig, OptionDef][]) {
    const fromFlag = flags[o.flag];
    const fallback = o.fallbackEnv !== undefined && env[o.env] === undefined ? env[o.fallbackEnv] : undefined;
    const source = fromFlag !== undefined ? `--${o.flag}` : env[o.env] !== undefined ? o.env : fallback !== undefined ? o.fallbackEnv! : 'default';
    const text = fromFlag ?? env[o.env] ?? fallback ?? o.default;
    if (text === undefined) continue;
    sources[name] = source;
    switch (o.type) {
      case 'string':
        raw[name] = text;
        break;
      case 'integer': {
        const n = Number(text);
        if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) {
          problems.push({ code: 'TYPE_MISMATCH', file: source, path: `/${name}`, message: `must be an integer, got ${JSON.stringify(text)}` });
        } else raw[name] = n;
        break;
      }
      case 'duration': {
        const ms = parseDuration(text);
        if (ms === undefined) problems.push({ code: 'TYPE_MISMATCH', file: source, path: `/${name}`, message: `must be a duration like "50ms" or "1s", got ${JSON.stringify(text)}` });
        else raw[name] = ms;
        break;
      }
      case 'boolean': {
        const t = text.trim().toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(t)) raw[name] = true;
        else if (['false', '0', 'no', 'off', ''].includes(t)) raw[name] = false;
        else problems.push({ code: 'TYPE_MISMATCH', file: source, path: `/${name}`, message: `must be a boolean (true/false, yes/no, on/off, 1/0), got ${JSON.stringify(text)}` });
        break;
      }
      case 'list':
        raw[name] = text
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s.length > 0);
        break;
    }
  }
  if (raw.rules === undefined) {
    problems.push({ code: 'FIELD_MISSING', file: '<command line>', path: '/rules', message: 'no rules file: pass --rules FILE or set LIMITER_RULES' });
  }
  if (problems.length === 0 && !validateConfig(raw)) {
    for (const p of problemsFromAjv(validateConfig.errors)) {
      const name = p.path.split('/')[1];
      problems.push({ ...p, file: (name !== undefined ? sources[name] : undefined) ?? '<config>' });
    }
  }
  if (problems.length === 0) {
    const c = raw as unknown as NodeConfig;
    if (c.regions.length === 0) c.regions = [c.region];
    if ((c.natsTlsCert === '') !== (c.natsTlsKey === '')) {
      problems.push({ code: 'FIELD_MISSING', file: '--nats-tls-cert / --nats-tls-key', path: c.natsTlsCert === '' ? '/natsTlsCert' : '/natsTlsKey', message: 'a client certificate needs its key, and a key its certificate' });
    }
    else if (!c.regions.includes(c.region)) {
      problems.push({ code: 'VALUE_INVALID', file: sources.regions ?? '--regions', path: '/regions', message: `must include this node's region "${c.region}"` });
    }
    if ((c.tlsCert === '') !== (c.tlsKey === '')) {
      problems.push({ code: 'FIELD_MISSING', file: '--tls-cert / --tls-key', path: c.tlsCert === '' ? '/tlsCert' : '/tlsKey', message: 'TLS needs both a certificate and a key' });
    }
    if (c.headersTimeoutMs > c.requestTimeoutMs) {
      problems.push({ code: 'OUT_OF_RANGE', file: sources.headersTimeoutMs ?? '--headers-timeout', path: '/headersTimeoutMs', message: `must not be longer than --request-timeout (${c.requestTimeoutMs} ms)` });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(raw as unknown as NodeConfig);
}
