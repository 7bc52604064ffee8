/**
 * The engine: matches a request to a rule and decides it against the rule's limits, counting
 * admitted cost in the local node's PN-counter cells. Check-and-count is synchronous (nothing
 * awaits between reading and counting), so concurrent requests on one node can never admit
 * more than the algorithm allows. Work per check is O(1) in keys and nodes.
 *
 * The engine does no I/O: adapters drain its changes (persistence, replication), feed it
 * remote deltas and restored rows, and call `sweep` on a timer. Time is a parameter.
 */
import { EngineState, type EngineOptions } from './state.ts';
import type { CompiledLimit, CompiledRule } from './compile.ts';
import { degradedDenial } from './degradation.ts';
import { explain, type Explanation } from './explain.ts';
import { PRIORITIES } from './types.ts';
import type {
  CheckRequest,
  Decision,
  Limiter,
  MultiDecision,
  PolicyInfo,
  AdmissionRecord,
  RefundRequest,
  RefundResult,
  ResetResult,
} from './types.ts';

export { EngineState, REMOTE_CELL_REFUSALS, type EngineOptions, type EngineStats, type RemoteCellRefusal } from './state.ts';
export { scopeIdOf, type CompiledLimit, type CompiledRule } from './compile.ts';

const NO_RULE: Decision = Object.freeze({
  allowed: true,
  limit: 0,
  remaining: 0,
  resetMs: 0,
  retryAfterMs: 0,
  ruleId: null,
  policy: null,
}) as Decision;

/**
 * From this share of its limit on, a key's admissions ship in the priority lane (at once, even
 * while an ordinary batch is in flight or lingering): the others must see a key near its limit
 * within one transport lag; a key far from it can wait for the next batch.
 */
export const URGENT_SHARE = 0.5;

const PRIORITY_INDEX: Readonly<Record<string, number>> = Object.fromEntries(PRIORITIES.map((p, i) => [p, i]));

/** Decides checks against the rules and stores of its EngineState (src/engine/state.ts). */
export class Engine extends EngineState implements Limiter {
  constructor(opts: EngineOptions) {
    super(opts);
  }

  /** Which rule a request gets, at which level, and where each effective setting came from. */
  explain(key: string, metadata?: Readonly<Record<string, string>>): Explanation {
    return explain(this.matchRule(key, metadata), this.rules.byId, this.rules.config.tiers, key, metadata);
  }

  decide(req: CheckRequest, now: number): Decision {
    const cost = req.cost ?? 1;
    const rule = this.matchRule(req.key, req.metadata);
    if (rule === undefined) return NO_RULE;
    if (rule.priorities !== null) {
      const d = this.priorityGate(rule, req, cost, now, true);
      if (d !== null) return d;
    }
    const single = rule.single;
    if (single !== null) return this.decideOne(rule.id, single, req.key, cost, now, rule.maxKeys);
    return this.decideMany(rule, req.key, cost, now);
  }

  private countDegraded(d: Decision): Decision {
    if (d.code === 'DEGRADED_CLOSED') this.counters.degradedClosedDenials++;
    else this.counters.degradedShareDenials++;
    return d;
  }

  private keyCapDenied(ruleId: string, lim: CompiledLimit): Decision {
    this.counters.ruleKeyCapDenials++;
    return this.keyCapDecision(ruleId, lim);
  }

  /** A multi-dimension check denied: its non-usage denials are counted like single ones. */
  private countDenial(d: Decision): void {
    if (d.code === 'RULE_KEY_CAP') this.counters.ruleKeyCapDenials++;
    else if (d.code === 'PRIORITY_RESERVED') this.counters.priorityReservedDenials++;
    else this.countDegraded(d);
  }

  /**
   * What a request's priority decides before the limits (rules with `reserve` or `bypass`
   * only): a bypass (allowed, counted nowhere), a denial because only the reserve is left and
   * the priority is below it, or null (decide as usual). `count`: add it to the counters.
   */
  private priorityGate(rule: CompiledRule, req: CheckRequest, cost: number, now: number, count: boolean): Decision | null {
    const pr = rule.priorities!;
    const p = PRIORITY_INDEX[req.priority ?? 'normal'] ?? 1;
    if (pr.bypass[p]) {
      if (count) this.counters.priorityBypasses++;
      const seen = this.peek(rule, req.key, 0, now);
      return { allowed: true, limit: seen.limit, remaining: seen.remaining, resetMs: seen.resetMs, retryAfterMs: 0, ruleId: rule.id, policy: seen.policy, level: seen.level, bypassed: true };
    }
    if (p >= pr.reserveFrom || pr.reserveShare === 0) return null;
    for (const lim of rule.limits) {
      const { store, math } = lim;
      const cap = math.capacity;
      const open = Math.floor(cap * (1 - pr.reserveShare));
      const e = store.find(req.key);
      let usage = 0;
      if (e >= 0) {
        store.advance(e, Math.floor(now / math.slotMs));
        usage = math.usage(store, e, now);
      }
      if (usage + cost <= open) continue;
      if (count) this.counters.priorityReservedDenials++;
      // Wait until the usage leaves room for the cost below the reserve.
      const retry = e < 0 || cost > open ? -1 : math.retryAfterMs(store, e, now, cost + cap - open);
      return {
        allowed: false,
        limit: cap,
        remaining: Math.max(0, Math.floor(open - usage)),
        resetMs: e < 0 ? 0 : Math.ceil(math.resetMs(store, e, now)),
        retryAfterMs: retry < 0 ? lim.spec.windowMs : Math.max(1, retry),
        ruleId: rule.id,
        policy: lim.name,
        level: lim.level,
        code: 'PRIORITY_RESERVED',
      };
    }
    return null;
  }

  private keyCapDecision(ruleId: string, lim: CompiledLimit): Decision {
    return {
      allowed: false,
      limit: lim.math.capacity,
      remaining: 0,
      resetMs: 0,
      // Keys leave when their windows have passed without traffic.
      retryAfterMs: lim.spec.windowMs,
      ruleId,
      policy: lim.name,
      level: lim.level,
      code: 'RULE_KEY_CAP',
    };
  }

  private decideOne(ruleId: string, lim: CompiledLimit, key: string, cost: number, now: number, maxKeys = Infinity): Decision {
    const { store, math } = lim;
    const slot = Math.floor(now / math.slotMs);
    let e = store.find(key);
    let usage = 0;
    if (e >= 0) {
      store.advance(e, slot);
      usage = math.usage(store, e, now);
    }
    const cap = math.capacity;
    if (usage + cost <= cap) {
      if (this.degradation !== null) {
        const d = degradedDenial(this.degradation, ruleId, lim, e, cost, usage);
        if (d !== null) return this.countDegraded(d);
      } else if (this.sharing !== null && lim.sharing) {
        const d = this.sharing.deny(ruleId, lim, key, e, cost, usage, now);
        if (d !== null) return this.shareWait(d);
      }
      if (e < 0) {
        if (store.size >= maxKeys) return this.keyCapDenied(ruleId, lim);
        e = this.createEntry(lim, key, slot, now);
      }
      store.addOwn(e, slot, cost);
      this.ownChanged.fire();
      if (usage + cost >= cap * URGENT_SHARE) this.noteUrgent(store, key);
      return {
        allowed: true,
        limit: cap,
        remaining: Math.floor(cap - usage - cost),
        resetMs: Math.ceil(math.resetMs(store, e, now)),
        retryAfterMs: 0,
        ruleId,
        policy: lim.name,
      level: lim.level,
      };
    }
    return this.denied(ruleId, lim, e, usage, cost, now);
  }

  private denied(ruleId: string, lim: CompiledLimit, e: number, usage: number, cost: number, now: number): Decision {
    const { store, math } = lim;
    const cap = math.capacity;
    let retry: number;
    let reset: number;
    if (e < 0) {
      // Nothing counted: only a cost above capacity is denied.
      retry = -1;
      reset = 0;
    } else {
      retry = math.retryAfterMs(store, e, now, cost);
      reset = Math.ceil(math.resetMs(store, e, now));
    }
    return {
      allowed: false,
      limit: cap,
      remaining: Math.max(0, Math.floor(cap - usage)),
      resetMs: reset,
      // A cost above capacity can never be admitted; tell the client to wait a whole window.
      retryAfterMs: retry < 0 ? lim.spec.windowMs : Math.max(1, retry),
      ruleId,
      policy: lim.name,
      level: lim.level,
    };
  }

  /**
   * Several dimensions of one request (e.g. per IP, per user, per resource), all of which must
   * pass: each is decided first without counting (a rule and key named twice is decided for the
   * sum of their costs), then, only if every one passes, each is counted. Synchronous, so no
   * other check runs in between: a denied dimension consumes nothing in the others.
   */
  decideAll(reqs: readonly CheckRequest[], now: number): MultiDecision {
    const n = reqs.length;
    const decisions = new Array<Decision>(n);
    const pending = n > 1 ? new Map<string, number>() : undefined;
    let denied = -1;
    let deniedRetry = -1;
    for (let i = 0; i < n; i++) {
      const req = reqs[i];
      const rule = this.matchRule(req.key, req.metadata);
      if (rule === undefined) {
        decisions[i] = NO_RULE;
        continue;
      }
      let cost = req.cost ?? 1;
      if (pending !== undefined) {
        const k = `${rule.id}\n${req.key}`;
        cost += pending.get(k) ?? 0;
        pending.set(k, cost);
      }
      const d = (rule.priorities !== null ? this.priorityGate(rule, req, cost, now, false) : null) ?? this.peek(rule, req.key, cost, now);
      decisions[i] = d;
      if (!d.allowed && d.retryAfterMs > deniedRetry) {
        denied = i;
        deniedRetry = d.retryAfterMs;
      }
    }
    if (denied >= 0) {
      for (const d of decisions) if (d.code !== undefined) this.countDenial(d);
      return { allowed: false, decisions, binding: denied };
    }
    let binding = 0;
    for (let i = 0; i < n; i++) {
      const d = (decisions[i] = this.decide(reqs[i], now));
      const b = decisions[binding];
      if (d.ruleId !== null && (b.ruleId === null || d.remaining < b.remaining || (d.remaining === b.remaining && d.remaining / d.limit < b.remaining / b.limit))) binding = i;
    }
    return { allowed: true, decisions, binding };
  }

  /**
   * Reads `key` under every limit of `rule` into `entries` and `usages`, and returns the denial
   * that applies, if any: a limit it would pass, then the degradation mode or near-limit sharing,
   * then the rule's key cap. `count`: the denial is counted (a decision), or not (a peek).
   */
  private gateMany(rule: CompiledRule, key: string, cost: number, now: number, entries: number[], usages: number[], count: boolean): Decision | null {
    const limits = rule.limits;
    const n = limits.length;
    let denyIdx = -1;
    let denyRetry = -Infinity;
    for (let i = 0; i < n; i++) {
      const { store, math } = limits[i];
      const e = store.find(key);
      let usage = 0;
      if (e >= 0) {
        store.advance(e, Math.floor(now / math.slotMs));
        usage = math.usage(store, e, now);
      }
      entries[i] = e;
      usages[i] = usage;
      if (usage + cost > math.capacity) {
        const r = e < 0 ? limits[i].spec.windowMs : math.retryAfterMs(store, e, now, cost);
        const rr = r < 0 ? limits[i].spec.windowMs : r;
        if (rr > denyRetry) {
          denyRetry = rr;
          denyIdx = i;
        }
      }
    }
    if (denyIdx >= 0) return this.denied(rule.id, limits[denyIdx], entries[denyIdx], usages[denyIdx], cost, now);
    if (this.degradation !== null) {
      for (let i = 0; i < n; i++) {
        const d = degradedDenial(this.degradation, rule.id, limits[i], entries[i], cost, usages[i]);
        if (d !== null) return count ? this.countDegraded(d) : d;
      }
    } else if (this.sharing !== null) {
      for (let i = 0; i < n; i++) {
        if (!limits[i].sharing) continue;
        const d = this.sharing.deny(rule.id, limits[i], key, entries[i], cost, usages[i], now);
        if (d !== null) return this.shareWait(d);
      }
    }
    for (let i = 0; i < n; i++) {
      if (entries[i] < 0 && limits[i].store.size >= rule.maxKeys) return count ? this.keyCapDenied(rule.id, limits[i]) : this.keyCapDecision(rule.id, limits[i]);
    }
    return null;
  }

  /** The decision `cost` more on `key` would get under `rule`, counting nothing. */
  private peek(rule: CompiledRule, key: string, cost: number, now: number): Decision {
    const limits = rule.limits;
    const n = limits.length;
    const entries = new Array<number>(n);
    const usages = new Array<number>(n);
    const denial = this.gateMany(rule, key, cost, now, entries, usages, false);
    if (denial !== null) return denial;
    let bind = 0;
    let bindRemaining = Infinity;
    for (let i = 0; i < n; i++) {
      const rem = limits[i].math.capacity - usages[i] - cost;
      if (rem < bindRemaining) {
        bindRemaining = rem;
        bind = i;
      }
    }
    const lim = limits[bind];
    return {
      allowed: true,
      limit: lim.math.capacity,
      remaining: Math.floor(bindRemaining),
      resetMs: entries[bind] < 0 ? lim.spec.windowMs : Math.ceil(lim.math.resetMs(lim.store, entries[bind], now)),
      retryAfterMs: 0,
      ruleId: rule.id,
      policy: lim.name,
      level: lim.level,
    };
  }

  private decideMany(rule: CompiledRule, key: string, cost: number, now: number): Decision {
    const limits = rule.limits;
    const n = limits.length;
    const entries = new Array<number>(n);
    const usages = new Array<number>(n);
    const denial = this.gateMany(rule, key, cost, now, entries, usages, true);
    if (denial !== null) return denial;
    let bind = 0;
    let bindRemaining = Infinity;
    for (let i = 0; i < n; i++) {
      const lim = limits[i];
      const slot = Math.floor(now / lim.math.slotMs);
      let e = entries[i];
      // Creating an entry may evict one; never one of this key's own (already read) entries.
      if (e < 0) e = entries[i] = this.createEntry(lim, key, slot, now, key);
      lim.store.addOwn(e, slot, cost);
      const rem = lim.math.capacity - usages[i] - cost;
      if (usages[i] + cost >= lim.math.capacity * URGENT_SHARE) this.noteUrgent(lim.store, key);
      if (rem < bindRemaining) {
        bindRemaining = rem;
        bind = i;
      }
    }
    this.ownChanged.fire();
    const lim = limits[bind];
    return {
      allowed: true,
      limit: lim.math.capacity,
      remaining: Math.floor(bindRemaining),
      resetMs: Math.ceil(lim.math.resetMs(lim.store, entries[bind], now)),
      retryAfterMs: 0,
      ruleId: rule.id,
      policy: lim.name,
      level: lim.level,
    };
  }

  /**
   * Refund cost the matched rule counted, by key (a primitive for tools and tests: clients
   * refund one admission by its id, through `refundAdmission`). Never refunds more than this
   * node counted.
   */
  refund(req: RefundRequest, now: number): RefundResult {
    const rule = this.matchRule(req.key, req.metadata);
    if (rule === undefined) return { ruleId: null, refunded: 0 };
    let refunded = 0;
    for (const lim of rule.limits) {
      const e = lim.store.find(req.key);
      if (e < 0) continue;
      const slot = Math.floor(now / lim.math.slotMs);
      lim.store.advance(e, slot);
      refunded = Math.max(refunded, lim.store.refundOwn(e, slot, req.cost));
    }
    if (refunded > 0) this.ownChanged.fire();
    return { ruleId: rule.id, refunded };
  }

  /**
   * Give back exactly one admission: its cost, in each limit of its rule, from the slot it was
   * counted in (or older ones of this node's own count), never more than this node counted and
   * has not refunded. Nothing when the rule or the key is gone.
   */
  refundAdmission(a: AdmissionRecord, now: number): RefundResult {
    const rule = this.rules.byId.get(a.ruleId);
    if (rule === undefined) return { ruleId: a.ruleId, refunded: 0 };
    let refunded = 0;
    for (const lim of rule.limits) {
      const e = lim.store.find(a.key);
      if (e < 0) continue;
      const current = Math.floor(now / lim.math.slotMs);
      const slot = Math.floor(a.at / lim.math.slotMs);
      if (slot <= current - lim.store.ringSlots) continue;
      lim.store.advance(e, current);
      refunded = Math.max(refunded, lim.store.refundOwn(e, slot, a.cost));
    }
    if (refunded > 0) this.ownChanged.fire();
    return { ruleId: rule.id, refunded };
  }

  /**
   * Admin reset: give back this node's own count of a key in every limit of its rule (what
   * other nodes admitted is theirs to give back). Returns how much was given back per limit.
   */
  resetOwn(req: { key: string; metadata?: Readonly<Record<string, string>> }, now: number): ResetResult {
    const rule = this.matchRule(req.key, req.metadata);
    if (rule === undefined) return { ruleId: null, reset: 0, limits: [] };
    const limits = rule.limits.map((lim) => {
      const e = lim.store.find(req.key);
      if (e < 0) return { policy: lim.name, reset: 0 };
      const slot = Math.floor(now / lim.math.slotMs);
      lim.store.advance(e, slot);
      return { policy: lim.name, reset: lim.store.refundOwn(e, slot, Number.MAX_SAFE_INTEGER) };
    });
    const reset = Math.max(0, ...limits.map((l) => l.reset));
    if (reset > 0) this.ownChanged.fire();
    return { ruleId: rule.id, reset, limits };
  }

  admissionTtlMs(ruleId: string): number {
    return this.rules.byId.get(ruleId)?.longestWindowMs ?? 0;
  }

  /**
   * Take back an admission that cannot be answered as admitted (its `sync` commit failed): its
   * cost is refunded on every limit of its rule, from the slot it was counted in. A refund, not
   * a decrement, so a peer that already received the admission sees it taken back too.
   */
  undoAdmission(req: CheckRequest, decidedAt: number): void {
    this.refund({ key: req.key, metadata: req.metadata, cost: req.cost ?? 1 }, decidedAt);
  }

  policies(ruleId: string | null): readonly PolicyInfo[] {
    if (ruleId === null) return [];
    return this.rules.byId.get(ruleId)?.policies ?? [];
  }

  /** Current usage of a key under every limit of the rule it matches (for status and tests). */
  inspect(key: string, metadata: Readonly<Record<string, string>> | undefined, now: number): { ruleId: string | null; limits: { policy: string; scope: string; usage: number; capacity: number }[] } {
    const rule = this.matchRule(key, metadata);
    if (!rule) return { ruleId: null, limits: [] };
    return {
      ruleId: rule.id,
      limits: rule.limits.map((lim) => {
        const e = lim.store.find(key);
        let usage = 0;
        if (e >= 0) {
          lim.store.advance(e, Math.floor(now / lim.math.slotMs));
          usage = lim.math.usage(lim.store, e, now);
        }
        return { policy: lim.name, scope: lim.scope, usage, capacity: lim.math.capacity };
      }),
    };
  }

}

export function createEngine(opts: EngineOptions): Engine {
  return new Engine(opts);
}
