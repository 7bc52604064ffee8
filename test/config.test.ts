/**
 * Node configuration: flags win over LIMITER_* variables, defaults apply, every problem is
 * reported at once with its code, and the README's options table lists every option.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, OPTIONS, usage } from '../src/config.ts';
import { ConfigError, type Problem } from '../src/engine/errors.ts';

function problemsOf(argv: string[], env: Record<string, string> = {}): Problem[] {
  try {
    loadConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies the defaults', () => {
    const c = loadConfig(['--rules', 'r.yaml'], {});
    expect(c).toMatchObject({
      nodeId: 'local-1',
      region: 'local',
      regions: ['local'],
      host: '127.0.0.1',
      port: 8080,
      data: './data',
      durability: 'batch',
      flushIntervalMs: 50,
      maxKeys: 1_000_000,
      maxKeyBytes: 512,
      denyStatus: 429,
      nats: [],
      streamMaxAgeMs: 24 * 3600 * 1000,
      logLevel: 'info',
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads LIMITER_* variables, and flags win over them', () => {
    const env = { LIMITER_RULES: 'env.yaml', LIMITER_PORT: '9000', LIMITER_FLUSH_INTERVAL: '20ms', LIMITER_NATS: 'nats://a:4222, nats://b:4222', LIMITER_REGION: 'eu-west', LIMITER_REGIONS: 'us-east,eu-west' };
    const c = loadConfig(['--port', '9001'], env);
    expect(c.rules).toBe('env.yaml');
    expect(c.port).toBe(9001);
    expect(c.flushIntervalMs).toBe(20);
    expect(c.nats).toEqual(['nats://a:4222', 'nats://b:4222']);
    expect(c.regions).toEqual(['us-east', 'eu-west']);
  });

  it('lists every problem with its code and where it came from', () => {
    const problems = problemsOf(['--port', 'eighty', '--flush-interval', 'soon', '--durability', 'maybe'], { LIMITER_MAX_KEYS: '1.5' });
    expect(problems.map((p) => [p.path, p.code]).sort()).toEqual([
      ['/flushIntervalMs', 'TYPE_MISMATCH'],
      ['/maxKeys', 'TYPE_MISMATCH'],
      ['/port', 'TYPE_MISMATCH'],
      ['/rules', 'FIELD_MISSING'],
    ]);
    expect(problems.find((p) => p.path === '/maxKeys')?.file).toBe('LIMITER_MAX_KEYS');
    expect(problems.find((p) => p.path === '/port')?.file).toBe('--port');
    // Once the values parse, the schema checks ranges and enums (all of them).
    const later = problemsOf(['--rules', 'r.yaml', '--port', '70000', '--durability', 'maybe', '--node-id', 'has space']);
    expect(later.map((p) => [p.path, p.code, p.file]).sort()).toEqual([
      ['/durability', 'VALUE_NOT_ALLOWED', '--durability'],
      ['/nodeId', 'PATTERN_MISMATCH', '--node-id'],
      ['/port', 'OUT_OF_RANGE', '--port'],
    ]);
    expect(later.find((p) => p.path === '/durability')?.message).toBe('must be one of "batch", "sync", got "maybe"');
    expect(later.find((p) => p.path === '/port')?.message).toBe('must be at most 65535, got 70000');
  });

  it('refuses regions that do not include the node\'s own region, and unknown flags', () => {
    expect(problemsOf(['--rules', 'r.yaml', '--region', 'ap-south', '--regions', 'us-east,eu-west'])[0]).toMatchObject({ path: '/regions' });
    expect(problemsOf(['--rules', 'r.yaml', '--colour', 'blue'])[0]).toMatchObject({ code: 'UNKNOWN_FIELD', message: expect.stringMatching(/colour/) });
  });

  it('security and listener options: defaults, booleans, lists, and the pairs that must agree', () => {
    const c = loadConfig(['--rules', 'r.yaml'], {});
    expect(c).toMatchObject({
      adminToken: '',
      apiTokens: [],
      apiTokensFile: '',
      restrictStatus: false,
      trustedProxies: [],
      forwardedHeader: 'x-forwarded-for',
      tlsCert: '',
      tlsKey: '',
      bodyLimit: 65_536,
      maxHeaderSize: 16_384,
      maxBatch: 1000,
      maxConnections: 1000,
      maxAdmissions: 200_000,
      connectionTimeoutMs: 60_000,
      requestTimeoutMs: 10_000,
      headersTimeoutMs: 5_000,
      keepAliveTimeoutMs: 30_000,
    });
    const token = 'a-token-of-enough-length';
    const d = loadConfig(['--rules', 'r.yaml', '--restrict-status', 'yes', '--trusted-proxies', '10.0.0.0/8, 127.0.0.1,::1'], {
      LIMITER_API_TOKENS: `${token}1,${token}2`,
      LIMITER_ADMIN_TOKEN: token,
      LIMITER_REQUEST_TIMEOUT: '2s',
      LIMITER_HEADERS_TIMEOUT: '1s',
    });
    expect(d).toMatchObject({ restrictStatus: true, trustedProxies: ['10.0.0.0/8', '127.0.0.1', '::1'], apiTokens: [`${token}1`, `${token}2`], adminToken: token, requestTimeoutMs: 2000, headersTimeoutMs: 1000 });
    expect(loadConfig(['--rules', 'r.yaml', '--restrict-status', 'off'], {}).restrictStatus).toBe(false);
    expect(problemsOf(['--rules', 'r.yaml', '--restrict-status', 'maybe']).map((p) => p.path)).toEqual(['/restrictStatus']);
    expect(problemsOf(['--rules', 'r.yaml', '--tls-cert', 'c.pem']).map((p) => p.path)).toEqual(['/tlsKey']);
    expect(problemsOf(['--rules', 'r.yaml', '--headers-timeout', '20s']).map((p) => p.path)).toEqual(['/headersTimeoutMs']);
    expect(problemsOf(['--rules', 'r.yaml', '--trusted-proxies', 'proxy.example']).map((p) => p.path)).toEqual(['/trustedProxies/0']);
    // A token too short to be a secret is refused, and the message does not repeat it.
    const short = problemsOf(['--rules', 'r.yaml', '--admin-token', 'hunter2']);
    expect(short.map((p) => p.path)).toContain('/adminToken');
    expect(JSON.stringify(short)).not.toContain('hunter2');
  });

  it('PORT and HOST, as platforms set them, are fallbacks of LIMITER_PORT and LIMITER_HOST', () => {
    expect(loadConfig(['--rules', 'r.yaml'], { PORT: '9100', HOST: '0.0.0.0' })).toMatchObject({ port: 9100, host: '0.0.0.0' });
    expect(loadConfig(['--rules', 'r.yaml'], { PORT: '9100', LIMITER_PORT: '9200', HOST: '0.0.0.0', LIMITER_HOST: '::1' })).toMatchObject({ port: 9200, host: '::1' });
    expect(loadConfig(['--rules', 'r.yaml', '--port', '9300'], { PORT: '9100' }).port).toBe(9300);
    const problems = problemsOf(['--rules', 'r.yaml'], { PORT: 'eighty' });
    expect(problems).toEqual([expect.objectContaining({ code: 'TYPE_MISMATCH', file: 'PORT', path: '/port' })]);
  });

  it('--help names every option with its variable and default, and so does the README', () => {
    const text = usage();
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    for (const o of Object.values(OPTIONS)) {
      expect(text).toContain(`--${o.flag}`);
      expect(text).toContain(o.env);
      expect(readme, `README lists --${o.flag}`).toContain(`| \`--${o.flag}\` | \`${o.env}\` |`);
    }
  });
});
