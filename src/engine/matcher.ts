/**
 * Rule matching: which rule applies to a request. The rule with the lowest rank wins (highest
 * priority, then the most specific level, then file order) among those whose key pattern,
 * metadata constraints and tier all match.
 *
 * Few rules are scanned in rank order (fastest for a handful). Many rules are indexed: exact
 * keys in a Map, prefixes in one Map per distinct prefix length, and the catch-all rules in a
 * list. A prefix Map is keyed by a hash of the prefix, so a check hashes its key once, char by
 * char, and probes each length with a number (slicing the key and hashing each slice costs
 * far more); a bucket's rules are confirmed with startsWith (hashes may collide). Each bucket
 * is in rank order, so it is read only until a match or a rank no better than the best so far.
 */
import type { CompiledRule } from './compile.ts';
import type { TiersSpec } from './types.ts';

type Metadata = Readonly<Record<string, string>> | undefined;

/** Below this many rules a scan beats the index. */
export const INDEX_THRESHOLD = 32;

/** A request's tier: the key mapping, else the metadata entry, else the default (undefined: none). */
export function tierOf(tiers: TiersSpec | undefined, key: string, metadata: Metadata): string | undefined {
  if (tiers === undefined) return undefined;
  const mapped = tiers.keys[key];
  if (mapped !== undefined && Object.hasOwn(tiers.keys, key)) return mapped;
  if (tiers.metadata !== undefined && metadata !== undefined) {
    const v = metadata[tiers.metadata];
    if (v !== undefined && tiers.names.includes(v)) return v;
  }
  return tiers.default;
}

/** Where a request's tier came from (for explain). */
export function tierSourceOf(tiers: TiersSpec | undefined, key: string, metadata: Metadata): 'keys' | 'metadata' | 'default' | null {
  if (tiers === undefined) return null;
  if (Object.hasOwn(tiers.keys, key)) return 'keys';
  if (tiers.metadata !== undefined && metadata !== undefined) {
    const v = metadata[tiers.metadata];
    if (v !== undefined && tiers.names.includes(v)) return 'metadata';
  }
  return tiers.default === undefined ? null : 'default';
}

const UNRESOLVED = Symbol('unresolved');

/**
 * One indexed rule, with what matching reads inlined (one object to load per candidate: with
 * thousands of rules, memory loads dominate), chained to the next rule of its bucket in rank order.
 */
interface Node {
  readonly rank: number;
  /** The prefix to confirm (prefix buckets only; '' elsewhere). */
  readonly prefix: string;
  /** Has metadata or tier constraints. */
  readonly constrained: boolean;
  readonly rule: CompiledRule;
  next: Node | null;
}

export class RuleMatcher {
  /** The rules in rank order when scanned (few rules); empty when indexed. */
  private sorted: readonly CompiledRule[] = [];
  private readonly indexed: boolean;
  /** The tier of the request being matched, resolved at most once per match and only if a rule asks. */
  private tier: string | undefined | typeof UNRESOLVED = UNRESOLVED;
  private readonly exact = new Map<string, Node>();
  /** Distinct prefix lengths, ascending, and per length the rules by hash of their prefix. */
  private readonly prefixLengths: number[] = [];
  private readonly prefixes: Map<number, Node>[] = [];
  private any: Node | null = null;

  private readonly pending: CompiledRule[] = [];
  private readonly byLength = new Map<number, Map<number, Node>>();

  /** A matcher of all these rules (any order); `threshold`: index from this many rules on. */
  static of(rules: readonly CompiledRule[], tiers: TiersSpec | undefined, threshold = INDEX_THRESHOLD): RuleMatcher {
    const m = new RuleMatcher(tiers, rules.length, threshold);
    for (const r of rules) m.add(r);
    m.seal();
    return m;
  }

  /**
   * An empty matcher for `count` rules, filled by `add` (one rule at a time, so that a large
   * set can be indexed in slices) and closed by `seal` before its first match.
   */
  constructor(
    private readonly tiers: TiersSpec | undefined,
    count: number,
    threshold = INDEX_THRESHOLD,
  ) {
    this.indexed = count >= threshold;
  }

  add(r: CompiledRule): void {
    if (!this.indexed) {
      this.pending.push(r);
      return;
    }
    const m = r.match;
    const node: Node = { rank: r.rank, prefix: m.kind === 'prefix' ? m.value : '', constrained: r.meta.length > 0 || r.tier !== null, rule: r, next: null };
    if (m.kind === 'any') this.any = insert(this.any, node);
    else if (m.kind === 'exact') this.exact.set(m.value, insert(this.exact.get(m.value) ?? null, node));
    else {
      let bucket = this.byLength.get(m.value.length);
      if (bucket === undefined) this.byLength.set(m.value.length, (bucket = new Map()));
      const h = prefixHash(m.value);
      bucket.set(h, insert(bucket.get(h) ?? null, node));
    }
  }

  seal(): void {
    if (!this.indexed) {
      this.sorted = this.pending.sort(byRank);
      return;
    }
    for (const len of [...this.byLength.keys()].sort((a, b) => a - b)) {
      this.prefixLengths.push(len);
      this.prefixes.push(this.byLength.get(len)!);
    }
  }

  /** The rule that applies to a request, or undefined. */
  match(key: string, metadata?: Metadata): CompiledRule | undefined {
    this.tier = UNRESOLVED;
    if (!this.indexed) return this.scan(key, metadata);
    let best: Node | null = null;
    let bestRank = Infinity;
    const ex = this.exact.get(key);
    if (ex !== undefined) {
      best = this.first(ex, bestRank, key, metadata);
      if (best !== null) bestRank = best.rank;
    }
    const lengths = this.prefixLengths;
    const n = lengths.length;
    let h = 0;
    let pos = 0;
    for (let i = 0; i < n; i++) {
      const len = lengths[i];
      if (len > key.length) break;
      while (pos < len) h = (Math.imul(h, 31) + key.charCodeAt(pos++)) | 0;
      const bucket = this.prefixes[i].get(h);
      if (bucket === undefined) continue;
      const r = this.first(bucket, bestRank, key, metadata);
      if (r !== null) {
        best = r;
        bestRank = r.rank;
      }
    }
    if (this.any !== null) {
      const r = this.first(this.any, bestRank, key, metadata);
      if (r !== null) best = r;
    }
    return best === null ? undefined : best.rule;
  }

  private scan(key: string, metadata: Metadata): CompiledRule | undefined {
    const rules = this.sorted;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i];
      const m = r.match;
      if (m.kind === 'exact') {
        if (key !== m.value) continue;
      } else if (m.kind === 'prefix') {
        if (!key.startsWith(m.value)) continue;
      }
      if (this.accepts(r, key, metadata)) return r;
    }
    return undefined;
  }

  /** The first rule of a bucket (rank order) that accepts the request and ranks before `bestRank`. */
  private first(node: Node | null, bestRank: number, key: string, metadata: Metadata): Node | null {
    for (; node !== null; node = node.next) {
      if (node.rank >= bestRank) return null;
      if (node.prefix !== '' && !key.startsWith(node.prefix)) continue;
      if (!node.constrained || this.accepts(node.rule, key, metadata)) return node;
    }
    return null;
  }

  /** Metadata and tier constraints (the key pattern is the caller's). */
  private accepts(r: CompiledRule, key: string, metadata: Metadata): boolean {
    const meta = r.meta;
    for (let j = 0; j < meta.length; j++) {
      const v = metadata === undefined ? undefined : metadata[meta[j][0]];
      if (v === undefined) return false;
      const allowed = meta[j][1];
      if (allowed.length === 1 ? allowed[0] !== v : !allowed.includes(v)) return false;
    }
    if (r.tier !== null) {
      if (this.tier === UNRESOLVED) this.tier = tierOf(this.tiers, key, metadata);
      if (this.tier !== r.tier) return false;
    }
    return true;
  }
}

function byRank(a: CompiledRule, b: CompiledRule): number {
  return a.rank - b.rank;
}

/** The hash a prefix bucket is keyed by (the same the match computes char by char). */
function prefixHash(prefix: string): number {
  let h = 0;
  for (let i = 0; i < prefix.length; i++) h = (Math.imul(h, 31) + prefix.charCodeAt(i)) | 0;
  return h;
}

/** Insert into a rank-ordered chain; returns its head. */
function insert(head: Node | null, node: Node): Node {
  if (head === null || node.rank < head.rank) {
    node.next = head;
    return node;
  }
  let at = head;
  while (at.next !== null && at.next.rank < node.rank) at = at.next;
  node.next = at.next;
  at.next = node;
  return head;
}
