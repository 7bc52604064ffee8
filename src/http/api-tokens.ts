/**
 * Optional API tokens for the check, refund and usage routes. Tokens come from `--api-token`
 * (several) and/or a file (one per line, blank lines and `#` comments ignored). The file is
 * re-read when it changes (polled) and on `reload()` (SIGHUP in src/main.ts), so tokens rotate
 * without a restart; a file that cannot be read keeps the tokens in force. When a file is
 * configured the routes always need a token, even if the file is empty: a rotation that
 * truncates the file closes the routes instead of opening them.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ConfigError, LimiterError } from '../engine/errors.ts';
import { bearerOf, digestOf, matchesAny } from './tokens.ts';

export interface ApiTokensOptions {
  tokens?: readonly string[];
  file?: string;
  /** How often the file is polled for changes (ms, default 1000). */
  pollMs?: number;
  /** Called when a re-read fails (the tokens in force are kept). */
  onReloadError?: (err: Error) => void;
  /** Called after a successful re-read, with the number of tokens now accepted. */
  onReload?: (count: number) => void;
}

const TOKEN = /^[\x21-\x7e]{16,4096}$/;

function readTokenFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError([{ code: 'CONFIG_UNREADABLE', file, path: '', message: `cannot read the API tokens file: ${(cause as Error).message}` }], 'CONFIG_UNREADABLE');
  }
  const tokens: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    // Never echo the line: it is a secret.
    if (!TOKEN.test(t)) throw new ConfigError([{ code: 'CONFIG_INVALID', file, path: `/line/${i + 1}`, message: 'a token is 16 to 4096 printable ASCII characters without spaces' }]);
    tokens.push(t);
  });
  return tokens;
}

export class ApiTokens {
  /** Whether the routes need a token at all. */
  readonly required: boolean;
  private readonly fixed: Buffer[];
  private digests: Buffer[];
  private readonly file: string | undefined;
  private readonly opts: ApiTokensOptions;
  private watching = false;

  /** Throws ConfigError when the file cannot be read or holds an invalid token. */
  constructor(opts: ApiTokensOptions) {
    this.opts = opts;
    this.file = opts.file !== undefined && opts.file !== '' ? opts.file : undefined;
    this.fixed = (opts.tokens ?? []).map(digestOf);
    this.digests = [...this.fixed, ...(this.file !== undefined ? readTokenFile(this.file).map(digestOf) : [])];
    this.required = this.fixed.length > 0 || this.file !== undefined;
  }

  get count(): number {
    return this.digests.length;
  }

  /** Re-read the file; on failure keep the tokens in force and report the error. Returns whether it was read. */
  reload(): boolean {
    if (this.file === undefined) return true;
    try {
      this.digests = [...this.fixed, ...readTokenFile(this.file).map(digestOf)];
      this.opts.onReload?.(this.digests.length);
      return true;
    } catch (err) {
      this.opts.onReloadError?.(err as Error);
      return false;
    }
  }

  /** Start polling the file for changes (no-op without a file). */
  watch(): void {
    if (this.file === undefined || this.watching) return;
    this.watching = true;
    watchFile(this.file, { interval: this.opts.pollMs ?? 1000, persistent: false }, (cur: Stats, prev: Stats) => {
      if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino) this.reload();
    });
  }

  close(): void {
    if (this.file !== undefined && this.watching) unwatchFile(this.file);
    this.watching = false;
  }

  accepts(token: string | undefined): boolean {
    return matchesAny(token, this.digests);
  }

  /** fastify onRequest hook: 401 API_UNAUTHORIZED without a valid token (when tokens are required). */
  readonly hook = (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    if (!this.required || this.accepts(bearerOf(req.headers.authorization))) return done();
    void reply.header('www-authenticate', 'Bearer realm="limiter"');
    done(new LimiterError('API_UNAUTHORIZED', 'this route needs Authorization: Bearer <API token>'));
  };
}
