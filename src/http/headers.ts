/**
 * RateLimit / RateLimit-Policy / Retry-After headers, per the IETF httpapi ratelimit-headers
 * draft-11 (structured fields, RFC 9651):
 *
 *   RateLimit-Policy: "<policy>";q=<limit>;w=<windowSeconds>, ...   (every policy of the rule)
 *   RateLimit: "<policy>";r=<remaining>;t=<seconds until reset>       (the binding policy)
 *   Retry-After: <seconds, >= 1>                                       (on deny)
 *
 * Header strings are cached: the policy list per rule (re-validated against what the limiter
 * returns, so a rules change at run time is picked up) and the quoted name per policy.
 */
import type { Decision, Limiter, PolicyInfo } from '../engine/types.ts';

/** Printable ASCII other than `"` and `\` needs no escaping in an sf-string. */
const SF_PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * Serialises an sf-string. Characters outside printable ASCII cannot be carried by an sf-string;
 * they are replaced by `?` (policy names come from rule ids, which are ASCII in practice).
 */
export function sfString(s: string): string {
  if (SF_PLAIN.test(s)) return `"${s}"`;
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (c >= 0x20 && c <= 0x7e) out += ch;
    else out += '?';
  }
  return out + '"';
}

/** sf-integer: non-negative whole number (the draft requires integers for q, w, r, t). */
function sfNonNegInt(n: number): number {
  if (!(n > 0)) return 0; // also NaN
  return n >= 999_999_999_999_999 ? 999_999_999_999_999 : Math.floor(n);
}

/** Seconds for the `w` parameter and Retry-After: whole seconds, rounded up, at least 1. */
function ceilSeconds(seconds: number): number {
  if (!(seconds > 1)) return 1;
  return sfNonNegInt(Math.ceil(seconds));
}

export function formatPolicyHeader(policies: readonly PolicyInfo[]): string {
  let out = '';
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i];
    if (i > 0) out += ', ';
    out += `${sfString(p.name)};q=${sfNonNegInt(p.limit)};w=${ceilSeconds(p.windowSeconds)}`;
  }
  return out;
}

/** Retry-After in whole seconds, rounded up, at least 1. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return ceilSeconds(retryAfterMs / 1000);
}

function samePolicies(a: readonly PolicyInfo[], b: readonly PolicyInfo[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x.name !== y.name || x.limit !== y.limit || x.windowSeconds !== y.windowSeconds) return false;
  }
  return true;
}

const MAX_CACHE = 10_000;

/** Builds the rate-limit headers of a decision, with per-rule and per-policy caches. */
export class RateLimitHeaders {
  private readonly limiter: Limiter;
  private readonly policyHeaders = new Map<string, { src: readonly PolicyInfo[]; value: string }>();
  private readonly quotedNames = new Map<string, string>();

  constructor(limiter: Limiter) {
    this.limiter = limiter;
  }

  /** The RateLimit-Policy value of a rule ('' when it has no policies). */
  policyHeader(ruleId: string): string {
    const policies = this.limiter.policies(ruleId);
    const hit = this.policyHeaders.get(ruleId);
    if (hit !== undefined) {
      if (hit.src === policies) return hit.value;
      if (samePolicies(hit.src, policies)) {
        hit.src = policies;
        return hit.value;
      }
    }
    const value = formatPolicyHeader(policies);
    if (this.policyHeaders.size >= MAX_CACHE) this.policyHeaders.clear();
    this.policyHeaders.set(ruleId, { src: policies, value });
    return value;
  }

  private quoted(name: string): string {
    let q = this.quotedNames.get(name);
    if (q === undefined) {
      q = sfString(name);
      if (this.quotedNames.size >= MAX_CACHE) this.quotedNames.clear();
      this.quotedNames.set(name, q);
    }
    return q;
  }

  /** The RateLimit value of a decision's binding policy, or '' when there is none. */
  rateLimitHeader(d: Decision): string {
    if (d.policy === null) return '';
    return `${this.quoted(d.policy)};r=${sfNonNegInt(d.remaining)};t=${sfNonNegInt(Math.ceil(d.resetMs / 1000))}`;
  }

  /** Headers for a decision: none when no rule matched; Retry-After only on deny. */
  headersFor(d: Decision): Record<string, string> | null {
    if (d.ruleId === null) return null;
    const h: Record<string, string> = {};
    const policy = this.policyHeader(d.ruleId);
    if (policy !== '') h['ratelimit-policy'] = policy;
    const rl = this.rateLimitHeader(d);
    if (rl !== '') h['ratelimit'] = rl;
    if (!d.allowed) h['retry-after'] = String(retryAfterSeconds(d.retryAfterMs));
    return h;
  }
}
