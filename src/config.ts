/**
 * Node configuration from command-line flags and LIMITER_* environment variables (flags win),
 * validated once against a schema and frozen. Every problem is reported with its code.
 */
import { parseArgs } from 'node:util';
import { Ajv } from 'ajv';
import { parseDuration } from './engine/duration.ts';
import { ConfigError, type ConfigProblem } from './engine/errors.ts';
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
  /** Replication streams keep deltas this long (must cover the longest window plus the longest partition tolerated). */
  streamMaxAgeMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

interface OptionDef {
  flag: string;
  env: string;
  type: 'string' | 'integer' | 'duration' | 'list';
  default?: string;
  help: string;
}

/** Every option: flag, environment variable, default and meaning (README's options table is made from the same facts). */
export const OPTIONS: Record<keyof NodeConfig, OptionDef> = {
  nodeId: { flag: 'node-id', env: 'LIMITER_NODE_ID', type: 'string', default: 'local-1', help: 'Stable id of this node; its data directory is bound to it.' },
  region: { flag: 'region', env: 'LIMITER_REGION', type: 'string', default: 'local', help: 'Region this node runs in.' },
  host: { flag: 'host', env: 'LIMITER_HOST', type: 'string', default: '127.0.0.1', help: 'Address the HTTP server listens on.' },
  port: { flag: 'port', env: 'LIMITER_PORT', type: 'integer', default: '8080', help: 'HTTP port.' },
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
  streamMaxAgeMs: { flag: 'stream-max-age', env: 'LIMITER_STREAM_MAX_AGE', type: 'duration', default: '24h', help: 'How long the replication streams keep deltas: the longest window plus the longest partition to heal by catch-up.' },
  logLevel: { flag: 'log-level', env: 'LIMITER_LOG_LEVEL', type: 'string', default: 'info', help: 'fatal, error, warn, info, debug, trace or silent.' },
};

/** The --help text: every option with its environment variable and default. */
export function usage(): string {
  const rows = Object.values(OPTIONS).map((o) => [`--${o.flag} ${o.type === 'list' ? 'A,B' : o.type === 'duration' ? 'DURATION' : o.type === 'integer' ? 'N' : 'VALUE'}`, o.env, o.default === undefined ? '(required)' : o.default === '' ? '(empty)' : o.default, o.help]);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const w2 = Math.max(...rows.map((r) => r[2].length));
  return [
    'usage: tsx src/main.ts --rules FILE [options]',
    '',
    'Flags win over environment variables.',
    '',
    ...rows.map((r) => `  ${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2].padEnd(w2)}  ${r[3]}`),
    '',
  ].join('\n');
}

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['nodeId', 'region', 'host', 'port', 'rules', 'data', 'durability', 'flushIntervalMs', 'maxKeys', 'maxKeyBytes', 'denyStatus', 'nats', 'regions', 'natsNkeyFile', 'natsTlsCa', 'natsTlsCert', 'natsTlsKey', 'streamMaxAgeMs', 'logLevel'],
  properties: {
    nodeId: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' },
    region: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' },
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    rules: { type: 'string', minLength: 1 },
    data: { type: 'string', minLength: 1 },
    durability: { enum: ['batch', 'sync'] },
    flushIntervalMs: { type: 'integer', minimum: 1, maximum: 60_000 },
    maxKeys: { type: 'integer', minimum: 1, maximum: 100_000_000 },
    maxKeyBytes: { type: 'integer', minimum: 1, maximum: 1024 },
    denyStatus: { type: 'integer', minimum: 400, maximum: 599 },
    nats: { type: 'array', items: { type: 'string', pattern: '^(nats|tls|ws|wss)?:?/?/?[^\\s]+$' } },
    regions: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' }, uniqueItems: true },
    natsNkeyFile: { type: 'string' },
    natsTlsCa: { type: 'string' },
    natsTlsCert: { type: 'string' },
    natsTlsKey: { type: 'string' },
    streamMaxAgeMs: { type: 'integer', minimum: 60_000, maximum: 365 * 24 * 3600 * 1000 },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  },
} as const;

const validate = new Ajv({ allErrors: true }).compile(SCHEMA);

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
    throw new ConfigError([{ code: 'CONFIG_INVALID', file: '<command line>', path: '', message: (cause as Error).message }]);
  }
  const raw: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(OPTIONS) as [keyof NodeConfig, OptionDef][]) {
    const fromFlag = flags[o.flag];
    const source = fromFlag !== undefined ? `--${o.flag}` : env[o.env] !== undefined ? o.env : 'default';
    const text = fromFlag ?? env[o.env] ?? o.default;
    if (text === undefined) continue;
    switch (o.type) {
      case 'string':
        raw[name] = text;
        break;
      case 'integer': {
        const n = Number(text);
        if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) {
          problems.push({ code: 'CONFIG_INVALID', file: source, path: `/${name}`, message: `"${text}" is not an integer` });
        } else raw[name] = n;
        break;
      }
      case 'duration': {
        const ms = parseDuration(text);
        if (ms === undefined) problems.push({ code: 'CONFIG_INVALID', file: source, path: `/${name}`, message: `"${text}" is not a duration like "50ms" or "1s"` });
        else raw[name] = ms;
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
    problems.push({ code: 'CONFIG_INVALID', file: '<command line>', path: '/rules', message: 'no rules file: pass --rules FILE or set LIMITER_RULES' });
  }
  if (problems.length === 0 && !validate(raw)) {
    for (const e of validate.errors ?? []) {
      const name = e.instancePath.split('/')[1] as keyof NodeConfig | undefined;
      const o = name ? OPTIONS[name] : undefined;
      problems.push({ code: 'CONFIG_INVALID', file: o ? `--${o.flag} / ${o.env}` : '<config>', path: e.instancePath, message: e.message ?? 'invalid' });
    }
  }
  if (problems.length === 0) {
    const c = raw as unknown as NodeConfig;
    if (c.regions.length === 0) c.regions = [c.region];
    if ((c.natsTlsCert === '') !== (c.natsTlsKey === '')) {
      problems.push({ code: 'CONFIG_INVALID', file: '--nats-tls-cert / --nats-tls-key', path: '/natsTlsCert', message: 'a client certificate needs its key, and a key its certificate' });
    }
    else if (!c.regions.includes(c.region)) {
      problems.push({ code: 'CONFIG_INVALID', file: '--regions / LIMITER_REGIONS', path: '/regions', message: `must include this node's region "${c.region}"` });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(raw as unknown as NodeConfig);
}
