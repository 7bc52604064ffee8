/**
 * Bearer tokens: reading `Authorization: Bearer <token>` and comparing tokens in constant time.
 * Tokens are compared as SHA-256 digests with crypto.timingSafeEqual, so neither the time taken
 * nor an early exit tells how much of a guess was right, whatever the lengths.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerOf(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i.exec(header);
  return m === null ? undefined : m[1];
}

export function digestOf(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Whether `token` is one of `digests`; every digest is compared (no early exit). */
export function matchesAny(token: string | undefined, digests: readonly Buffer[]): boolean {
  if (token === undefined) return false;
  const d = digestOf(token);
  let ok = false;
  for (const known of digests) ok = timingSafeEqual(known, d) || ok;
  return ok;
}
