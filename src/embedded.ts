/**
 * The embedded limiter: a node's parts (src/node.ts buildNode: rules, engine, SQLite state
 * store, persistence, NATS replication) inside the application's process, without HTTP.
 *
 *   const limiter = await createLimiter({ rules: 'rules.yaml', data: './limiter-data' });
 *   const d = await limiter.check({ key: 'user:42' });   // the same Decision as POST /v1/check
 *   if (d.allowed) ... else retry after d.retryAfterMs
 *   await limiter.close();
 *
 * With `nats`, it replicates with nodes and other embedded limiters exactly as a node does
 * (each needs its own `nodeId` and data directory). Input is validated by the HTTP API's own
 * schema and checks, and refused with the same codes (a LimiterError).
 */
import { settleShareWait } from './http/share-wait.ts';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { loadConfig, type NodeConfig } from './config.ts';
import { admit, isCounted } from './engine/admissions.ts';
import { LimiterError, type ErrorCode } from './engine/errors.ts';
import { validateRules } from './engine/rules.ts';
import { compileSchema, type Check } from './engine/validation.ts';
import type { CheckRequest, Decision, MultiDecision, RefundResult, RuleLevel, RulesConfig } from './engine/types.ts';
import { fromValidation } from './http/errors.ts';
import { DEFAULT_LIMITS, MAX_DIMENSIONS, checkBodySchema, checkKey, checkMetadataBytes, type InputLimits } from './http/schemas.ts';
import { buildNode, type NodeParts, type NodeStatus } from './node.ts';

export type { CheckRequest, Decision, MultiDecision, RefundResult } from './engine/types.ts';
export { LimiterError } from './engine/errors.ts';

export interface CreateLimiterOptions {
  /** A rules file (YAML or JSON) or a rules document (the same shape, already parsed). */
  rules: string | Record<string, unknown>;
  /** Data directory of the SQLite state store (bound to `nodeId`). */
  data: string;
  /** NATS server URL(s): replicate with the nodes and embedded limiters on the same streams. Absent: run alone. */
  nats?: string | readonly string[];
  /** This process's region (default "local"). */
  region?: string;
  /** Every region of the deployment (default: this one). */
  regions?: readonly string[];
  /** Stable id of this limiter; must differ from every node's and other limiter's (default `embedded-<hostname>`). */
  nodeId?: string;
  /** "batch" (default) or "sync": `check()` resolves after the admission is committed. */
  durability?: 'batch' | 'sync';
  /** Log level of the limiter's own pino logger (default "warn"), or a logger. */
  logLevel?: NodeConfig['logLevel'];
  logger?: Logger;
  /**
   * Allowed checks carry an admission id for `refund()` (default true), issued when the
   * Decision's `admissionId` is first read (or the Decision serialised). `false`: none, and
   * refund() is refused.
   */
  refunds?: boolean;
  /** Any other node option by its flag name, e.g. `{ 'flush-interval': '50ms', 'nats-nkey-file': 'node.nk' }`. */
  options?: Readonly<Record<string, string>>;
}

/** What `usage()` answers: the rule a key matches and its usage under every limit (as GET /v1/usage). */
export interface Usage {
  key: string;
  ruleId: string | null;
  limits: { policy: string; usage: number; limit: number }[];
}

export interface Limiter {
  readonly nodeId: string;
  /** Count a request against its key's rule; an allowed check that counted carries an `admissionId`. */
  check(req: CheckRequest): Promise<Decision>;
  /** Several checks at once (all validated before any is counted). */
  checkMany(reqs: readonly CheckRequest[]): Promise<Decision[]>;
  /**
   * Several dimensions of one request (per IP, per user, …) that must all pass: decided
   * together, then all counted, or none when one is denied (`binding` names it).
   */
  checkAll(reqs: readonly CheckRequest[]): Promise<MultiDecision>;
  /** Give back one admission this limiter made, by the id its check answered. */
  refund(admissionId: string): Promise<RefundResult>;
  /** Usage of a key, counting nothing. */
  usage(key: string, metadata?: Readonly<Record<string, string>>): Usage;
  status(): NodeStatus;
  /** Stop replicating (shipping the last admissions), write everything and close the store. */
  close(): Promise<void>;
}

function toArgv(o: CreateLimiterOptions, rulesFile: string): string[] {
  // No Prometheus metrics: an embedded limiter serves no /metrics, so counting for them would
  // only slow every check.
  const argv = ['--rules', rulesFile, '--data', o.data, '--node-id', o.nodeId ?? `embedded-${hostname()}`, '--log-level', o.logLevel ?? 'warn', '--metrics', 'false'];
  if (o.nats !== undefined) argv.push('--nats', typeof o.nats === 'string' ? o.nats : o.nats.join(','));
  if (o.region !== undefined) argv.push('--region', o.region);
  if (o.regions !== undefined) argv.push('--regions', o.regions.join(','));
  if (o.durability !== undefined) argv.push('--durability', o.durability);
  for (const [flag, value] of Object.entries(o.options ?? {})) argv.push(`--${flag}`, value);
  return argv;
}

/** Start an embedded limiter. Throws a ConfigError (every problem listed) on bad options or rules. */
export async function createLimiter(o: CreateLimiterOptions): Promise<Limiter> {
  if (o === null || typeof o !== 'object') throw new LimiterError('CONFIG_INVALID', 'createLimiter needs an options object: { rules, data }');
  let rules: RulesConfig | undefined;
  let rulesFile: string;
  if (typeof o.rules === 'string') rulesFile = o.rules;
  else {
    rulesFile = '<inline rules>';
    rules = validateRules(o.rules, rulesFile);
  }
  const config = loadConfig(toArgv(o, rulesFile), {});
  const parts = await buildNode(config, { rulesDocument: rules === undefined ? undefined : (o.rules as Record<string, unknown>), logger: o.logger });
  return new EmbeddedLimiter(parts, o.refunds !== false);
}

class EmbeddedLimiter implements Limiter {
  readonly nodeId: string;
  private readonly limits: InputLimits;
  private readonly validate: Check;
  private closed = false;

  constructor(
    private readonly parts: NodeParts,
    private readonly refunds: boolean,
  ) {
    const c = parts.config;
    this.nodeId = c.nodeId;
    this.limits = { ...DEFAULT_LIMITS, maxKeyBytes: c.maxKeyBytes, maxBatch: c.maxBatch, maxMetadataEntries: c.maxMetadataEntries, maxMetadataValueBytes: c.maxMetadataValueBytes };
    this.validate = compileSchema(checkBodySchema(this.limits));
  }

  /** The HTTP API's validation of one check, refusing with its codes. */
  private valid(req: CheckRequest, at: string): CheckRequest {
    if (this.closed) throw new LimiterError('LIMITER_CLOSED', 'the limiter is closed');
    if (!this.validate(req)) {
      const e = fromValidation(this.validate.errors ?? [], 'check');
      throw new LimiterError(e.error, e.message, { details: { path: at + (e.path ?? '') } });
    }
    const p = checkKey(req.key, this.limits, `${at}/key`) ?? (req.metadata !== undefined ? checkMetadataBytes(req.metadata as Record<string, string>, this.limits, `${at}/metadata`) : null);
    if (p !== null) throw new LimiterError(p.code, p.message, { details: { path: p.path } });
    return req;
  }

  private decide(req: CheckRequest, t: number): Decision {
    const d = this.parts.limiter.decide(req, t);
    return this.refunds && isCounted(d) ? new AdmittedDecision(d, this, req, t) : d;
  }

  /** The admission id of an allowed check, issued when first read (AdmittedDecision). */
  issueId(d: Decision, req: CheckRequest, t: number): string {
    const { limiter, admissions } = this.parts;
    return admit({ ...d }, req, t, limiter, admissions).admissionId!;
  }

  async check(req: CheckRequest): Promise<Decision> {
    this.valid(req, '');
    let d = this.decide(req, this.parts.now());
    const { replicator, engine, config } = this.parts;
    // Near the limit, wait for the peers' counts rather than answer SHARE_WAIT (src/http/share-wait.ts).
    if (d.code === 'SHARE_WAIT' && replicator !== undefined && config.shareWaitMs > 0) {
      d = await settleShareWait(d, () => this.decide(req, this.parts.now()), { progress: () => engine.peersProgress.next(), maxWaitMs: config.shareWaitMs });
    }
    if (isCounted(d)) {
      // `sync` durability: answer once the admission is committed (batch: nothing to wait for).
      const committed = this.parts.commit();
      if (committed !== undefined) await committed;
    }
    return d;
  }

  async checkMany(reqs: readonly CheckRequest[]): Promise<Decision[]> {
    if (!Array.isArray(reqs) || reqs.length < 1 || reqs.length > this.limits.maxBatch) {
      throw new LimiterError('BATCH_INVALID', `checkMany takes between 1 and ${this.limits.maxBatch} checks`);
    }
    reqs.forEach((r, i) => this.valid(r, `/checks/${i}`));
    const t = this.parts.now();
    const out = reqs.map((r) => this.decide(r, t));
    if (out.some(isCounted)) await this.parts.commit();
    return out;
  }

  async checkAll(reqs: readonly CheckRequest[]): Promise<MultiDecision> {
    if (!Array.isArray(reqs) || reqs.length < 1 || reqs.length > MAX_DIMENSIONS) {
      throw new LimiterError('BATCH_INVALID', `checkAll takes between 1 and ${MAX_DIMENSIONS} checks`);
    }
    reqs.forEach((r, i) => this.valid(r, `/checks/${i}`));
    const t = this.parts.now();
    const m = this.parts.engine.decideAll(reqs, t);
    if (!m.allowed) return m;
    const decisions = m.decisions.map((d, i) => (this.refunds && d.ruleId !== null && d.bypassed !== true ? new AdmittedDecision(d, this, reqs[i], t) : d));
    if (decisions.some((d) => d.ruleId !== null)) await this.parts.commit();
    return { allowed: true, decisions, binding: m.binding };
  }

  async refund(admissionId: string): Promise<RefundResult> {
    if (this.closed) throw new LimiterError('LIMITER_CLOSED', 'the limiter is closed');
    if (!this.refunds) throw new LimiterError('CONFIG_INVALID', 'this limiter was created with refunds: false and issues no admission ids');
    if (typeof admissionId !== 'string' || admissionId === '') throw new LimiterError('ADMISSION_ID_MISSING', 'refund needs the admissionId a check answered');
    const t = this.parts.now();
    const result = this.parts.limiter.refundAdmission(this.parts.admissions.take(admissionId, t), t);
    if (result.refunded > 0) await this.parts.commit();
    return result;
  }

  usage(key: string, metadata?: Readonly<Record<string, string>>): Usage {
    this.valid(metadata === undefined ? { key } : { key, metadata }, '');
    const r = this.parts.engine.inspect(key, metadata, this.parts.now());
    return { key, ruleId: r.ruleId, limits: r.limits.map((l) => ({ policy: l.policy, usage: Math.round(l.usage * 100) / 100, limit: l.capacity })) };
  }

  status(): NodeStatus {
    return this.parts.status();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.parts.close(2000);
  }
}

/**
 * An allowed check's Decision whose `admissionId` is issued when it is first read: holding an id
 * (a random token, a string, an entry kept for the rule's window) is most of an embedded check's
 * cost, and most callers never refund. Reading it, or serialising the Decision, issues it as
 * the node does; it then refunds exactly this admission.
 */
class AdmittedDecision implements Decision {
  allowed: boolean;
  limit: number;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
  ruleId: string | null;
  policy: string | null;
  level?: RuleLevel;
  #id: string | undefined;
  #owner: EmbeddedLimiter | undefined;
  readonly #req: CheckRequest;
  readonly #at: number;

  constructor(d: Decision, owner: EmbeddedLimiter, req: CheckRequest, at: number) {
    this.allowed = d.allowed;
    this.limit = d.limit;
    this.remaining = d.remaining;
    this.resetMs = d.resetMs;
    this.retryAfterMs = d.retryAfterMs;
    this.ruleId = d.ruleId;
    this.policy = d.policy;
    if (d.level !== undefined) this.level = d.level;
    this.#owner = owner;
    this.#req = req;
    this.#at = at;
  }

  get admissionId(): string | undefined {
    if (this.#owner !== undefined) {
      this.#id = this.#owner.issueId(this, this.#req, this.#at);
      this.#owner = undefined;
    }
    return this.#id;
  }

  toJSON(): Decision {
    return { allowed: this.allowed, limit: this.limit, remaining: this.remaining, resetMs: this.resetMs, retryAfterMs: this.retryAfterMs, ruleId: this.ruleId, policy: this.policy, admissionId: this.admissionId };
  }
}

export type { ErrorCode };
