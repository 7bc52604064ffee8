/**
 * Near-limit sharing (CONSISTENCY.md §12): while every peer is healthy, a burst that hits
 * every node at once must not let each node admit a whole limit before the others' counts
 * arrive. Each node holds, per key, an escrow of the limit and borrows beyond it only with
 * fresh knowledge of the others:
 *
 * 1. Escrow: node i may always admit while its own net count of the key stays within
 *    `floor(s_i × capacity)`, where s_i is its demand-weighted share of the limit (shares of all
 *    nodes sum to at most 1 − margin). No state is kept for this: it is the common case.
 * 2. Borrow: beyond its escrow, node i asks for a grant (and ships a heartbeat, so the peers
 *    that wait too learn how far its counts go). It waits until it has merged every peer's
 *    admissions made up to the moment it asked (`caughtUpTo`), then takes its part of what is
 *    free. There shares follow the key's own demand (each node's own count of the key), so a
 *    key used mostly from one region mostly goes to that region; the nodes that admitted on the
 *    key keep their unused part reserved and split the rest; one that has not admitted on it
 *    takes no part. When the grant is spent, the next one waits again.
 *
 * So everything a node admits beyond its escrow was granted on a view that holds every count
 * made before it asked, less the others' escrows, which stay reserved: a synchronized burst
 * admits about the limit, not one limit per node. What it costs: a node whose traffic exceeds
 * its escrow waits for one replication round per grant (measured in docs/PERFORMANCE.md).
 *
 * The replication room provides the view (`SharingView`); the engine applies it. Pure: time is a
 * parameter.
 */
import type { LimitMath, NodeTable, ScopeId, SlotWindowStore } from '../../crdt/index.ts';
import type { Decision } from './types.ts';

/** What the replication room knows of the peers, for sharing decisions. */
export interface SharingView {
  /** Every peer's admissions made before this time (this node's clock, ms) have been merged, as of `now`. */
  caughtUpTo(now: number): number;
  /** The other nodes sharing the limits (their ids). */
  peers(): readonly string[];
  /** A node's share of a scope's limit (0..1); this node's when `node` is its own id. */
  share(scope: ScopeId, node: string): number;
  /** Typical time for a peer's counts to arrive (ms): the retry hint of a `SHARE_WAIT` denial. */
  lagMs(): number;
  /** What the shares of all nodes leave unallocated (0..1): grants keep it too. */
  margin(): number;
  /** Part of a limit spread evenly over the nodes before demand counts (0..1). */
  floor(): number;
}

/** A limit as sharing needs it. */
export interface ShareableLimit {
  readonly scope: ScopeId;
  readonly math: LimitMath;
  readonly store: SlotWindowStore;
  readonly name: string;
  /** The rule shares near its limit (RuleSpec.nearLimitSharing, default true). */
  readonly sharing: boolean;
}

interface Grant {
  /** This node's own net count when the grant was made. */
  base: number;
  /** What may be admitted on top of `base`. */
  amount: number;
  /** When this node first needed more than the grant (0: not waiting). */
  askedAt: number;
  /** When the grant was made (grants older than a window are dropped). */
  at: number;
}

/** The last units of a grant go to one node per round, in turn (ms). */
const ROUND_MS = 100;

export interface SharingCounters {
  /** Checks denied while waiting for the peers' counts before a grant. */
  waits: number;
  /** Grants made beyond escrows. */
  grants: number;
}

export class NearLimitSharing {
  private readonly grants = new Map<ScopeId, Map<string, Grant>>();
  readonly counters: SharingCounters = { waits: 0, grants: 0 };

  constructor(
    private readonly view: SharingView,
    private readonly nodes: NodeTable,
  ) {}

  private get selfId(): string {
    return this.nodes.self;
  }

  /**
   * The denial for `cost` more on entry `e` (−1: none yet) of `lim`, whose usage is `usage`,
   * or null when sharing admits it (the normal check has already passed).
   */
  deny(ruleId: string, lim: ShareableLimit, key: string, e: number, cost: number, usage: number, now: number): Decision | null {
    const cap = lim.math.capacity;
    const escrow = Math.floor(this.view.share(lim.scope, this.selfId) * cap);
    // Far from the limit (the common case) the key's whole usage is within the escrow, so this
    // node's own part of it is too: no need to read the own count.
    if (usage + cost <= escrow) return null;
    const own = e < 0 ? 0 : lim.store.ownSumOf(e);
    if (own + cost <= escrow) return null;
    let byKey = this.grants.get(lim.scope);
    if (byKey === undefined) this.grants.set(lim.scope, (byKey = new Map()));
    let g = byKey.get(key);
    if (g !== undefined && now - g.at > lim.math.windowMs) g = undefined;
    if (g !== undefined && g.askedAt === 0 && own - g.base + cost <= g.amount) return null;
    if (g === undefined) byKey.set(key, (g = { base: own, amount: 0, askedAt: now, at: now }));
    else if (g.askedAt === 0) g.askedAt = now;
    if (this.view.caughtUpTo(now) >= g.askedAt) {
      g.base = own;
      g.amount = this.grantOf(lim, key, e, usage, now);
      g.askedAt = 0;
      g.at = now;
      this.counters.grants++;
      if (cost <= g.amount) return null;
      g.askedAt = now;
    }
    this.counters.waits++;
    return {
      allowed: false,
      limit: cap,
      remaining: Math.max(0, Math.floor(cap - usage)),
      resetMs: 0,
      retryAfterMs: Math.max(1, Math.ceil(this.view.lagMs())),
      ruleId,
      policy: lim.name,
      code: 'SHARE_WAIT',
    };
  }

  /**
   * This node's part of what is free. Shares here follow the key's own demand, as merged: node
   * j's part is `(1 − m) · (φ / N + (1 − φ) · own_j / Σ own)`. The nodes that admitted on the key
   * keep `⌊share_j × capacity⌋ − own_j` reserved, and the whole units left are split over them
   * (this one included): one each first when there are enough, the rest by their shares, the
   * units left by a lottery weighted by the remainders, drawn from a hash of (key, usage,
   * round). Nodes that hold the same counts in the same round compute the same split and never
   * hand the same unit out twice; from one round to the next the last units change hands, so a
   * node that asks is not starved by one that has stopped.
   */
  private grantOf(lim: ShareableLimit, key: string, e: number, usage: number, now: number): number {
    const cap = lim.math.capacity;
    const ownByNode = new Map<number, number>();
    if (e >= 0) lim.store.forEachCell(e, (_slot, node, p, n) => ownByNode.set(node, (ownByNode.get(node) ?? 0) + p - n));
    const peers = this.view.peers();
    const nodes = [this.selfId];
    const owns = [Math.max(0, ownByNode.get(0) ?? 0)];
    for (const peer of peers) {
      const idx = this.nodes.lookup(peer);
      const used = idx === undefined ? 0 : Math.max(0, ownByNode.get(idx) ?? 0);
      // A peer that has admitted nothing on this key in its window takes no part.
      if (used === 0) continue;
      nodes.push(peer);
      owns.push(used);
    }
    const sumOwn = owns.reduce((x, y) => x + y, 0);
    const m = this.view.margin();
    const phi = this.view.floor();
    const n = peers.length + 1;
    const shares = nodes.map((node, i) => (sumOwn > 0 ? (1 - m) * (phi / n + ((1 - phi) * owns[i]!) / sumOwn) : this.view.share(lim.scope, node)));
    let reserved = 0;
    for (let i = 1; i < nodes.length; i++) reserved += Math.max(0, Math.floor(shares[i]! * cap) - owns[i]!);
    const free = Math.floor(Math.max(0, cap - usage - reserved));
    if (free === 0) return 0;
    const total = shares.reduce((x, y) => x + y, 0);
    // Every node taking part gets one unit first when there are enough (so a node with a small
    // share is never starved by one that has stopped asking); the rest by shares.
    const base = free >= nodes.length ? 1 : 0;
    const rest = free - base * nodes.length;
    const scale = total > 0 ? 1 / total : 0;
    // The last units rotate between the nodes from one round to the next.
    const round = Math.floor(now / ROUND_MS);
    const parts = nodes.map((node, i) => {
      const x = shares[i]! * scale * rest;
      return { node, whole: base + Math.floor(x), rest: x - Math.floor(x) };
    });
    // The units left (fewer than the nodes) go by lottery weighted by the remainders, drawn from
    // a hash of (key, usage, round): the same draw on every node, a new one each round.
    let left = free - parts.reduce((sum, p) => sum + p.whole, 0);
    const mine = parts[0]!;
    let grant = mine.whole;
    // In node-id order, so that every node draws over the same list.
    const open = parts.filter((p) => p.rest > 0).sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    for (let unit = 0; left > 0 && open.length > 0; unit++, left--) {
      const weight = open.reduce((sum, p) => sum + p.rest, 0);
      let u = (fnv1a(`${key}\u0000${usage}\u0000${round}\u0000${unit}`) / 2 ** 32) * weight;
      let pick = open.length - 1;
      for (let i = 0; i < open.length; i++) {
        u -= open[i]!.rest;
        if (u < 0) {
          pick = i;
          break;
        }
      }
      if (open[pick] === mine) grant++;
      open.splice(pick, 1);
    }
    return grant;
  }

  /** Drop grants older than their window (call from the engine's sweep). */
  sweep(now: number, windowOf: (scope: ScopeId) => number | undefined): void {
    for (const [scope, byKey] of this.grants) {
      const w = windowOf(scope);
      if (w === undefined) {
        this.grants.delete(scope);
        continue;
      }
      for (const [key, g] of byKey) if (now - g.at > w) byKey.delete(key);
      if (byKey.size === 0) this.grants.delete(scope);
    }
  }

  /** Keys holding a grant (for status). */
  get size(): number {
    let n = 0;
    for (const m of this.grants.values()) n += m.size;
    return n;
  }
}

/** 32-bit FNV-1a of a string (a tie-break every node computes alike). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
