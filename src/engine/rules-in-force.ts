/**
 * The rules in force, compiled: the matcher, the rules by id, the compiled limit of every
 * counter scope, and the adaptive rules with the load signals they follow. A new rules document
 * is compiled beside the one in force (all at once, or in slices with yields to the event loop)
 * and swapped in with one assignment per structure, so no check sees half of a change. Scopes
 * that are unchanged keep their counter store; the keys of scopes that disappear are reported
 * to the owner (it counts live keys).
 *
 * No I/O, no clock: time is a parameter.
 */
import type { NodeTable, ScopeId } from '../../crdt/index.ts';
import { Signals, nextFactor, targetFactor, type SignalState } from './adaptive.ts';
import { compileRule, rescale, type CompiledLimit, type CompiledRule } from './compile.ts';
import { RuleMatcher } from './matcher.ts';
import type { RulesConfig } from './types.ts';

/** Rules compiled and indexed per slice of an asynchronous rules change, between yields to the event loop. */
const COMPILE_SLICE = 100;

interface Compilation {
  readonly config: RulesConfig;
  readonly next: Map<ScopeId, CompiledLimit>;
  readonly matcher: RuleMatcher;
  readonly byId: Map<string, CompiledRule>;
  readonly adaptive: CompiledRule[];
  /** Compile rule `i` of the config into all of the above. */
  add(i: number): void;
}

export interface AdaptiveStatus {
  signals: Record<string, SignalState>;
  rules: { ruleId: string; signal: string; factor: number; limits: { policy: string; limit: number }[] }[];
}

export class RulesInForce {
  private matcher!: RuleMatcher;
  private byIdMap = new Map<string, CompiledRule>();
  private scopeMap = new Map<ScopeId, CompiledLimit>();
  private current!: RulesConfig;
  /** Counts rules changes asked for: an asynchronous compile overtaken by a later one is dropped. */
  private ticket = 0;
  /** Load signals adaptive rules follow (kept across rules changes). */
  private readonly signals = new Signals();
  /** Rules with adaptive limits. */
  private adaptiveRules: CompiledRule[] = [];

  /** `dropped`: called at a swap with the live keys of the scopes that disappeared. */
  constructor(
    private readonly nodes: NodeTable,
    config: RulesConfig,
    private readonly dropped: (keys: number) => void,
  ) {
    this.set(config);
  }

  /** The rules document in force. */
  get config(): RulesConfig {
    return this.current;
  }

  /** Rules by id. */
  get byId(): ReadonlyMap<string, CompiledRule> {
    return this.byIdMap;
  }

  /** Compiled limits by scope. */
  get scopes(): ReadonlyMap<ScopeId, CompiledLimit> {
    return this.scopeMap;
  }

  /**
   * Replace the rules. Limits whose scope (rule id, algorithm, window, slot width) is unchanged
   * keep their counters; a changed `limit` value applies at once to the existing counts.
   */
  set(config: RulesConfig): void {
    this.ticket++;
    const c = this.compilation(config);
    for (let i = 0; i < config.rules.length; i++) c.add(i);
    this.install(c);
  }

  /**
   * `set` that does not hold the event loop: the rules are compiled and indexed in slices with a
   * yield between them (checks go on with the rules in force meanwhile), then swapped in at
   * once. The last call made wins: a compile overtaken by a later set or setAsync is dropped
   * (it resolves without installing).
   */
  async setAsync(config: RulesConfig): Promise<void> {
    const ticket = ++this.ticket;
    const c = this.compilation(config);
    for (let i = 0; i < config.rules.length; i++) {
      c.add(i);
      if (i % COMPILE_SLICE === COMPILE_SLICE - 1) {
        await yieldToLoop();
        if (ticket !== this.ticket) return;
      }
    }
    this.install(c);
  }

  /** The rule that applies to a request, or undefined. Highest priority match wins. */
  match(key: string, metadata?: Readonly<Record<string, string>>): CompiledRule | undefined {
    return this.matcher.match(key, metadata);
  }

  /**
   * A load signal's new health in [0, 1] (1 healthy): smoothed, then the rules that follow it
   * move their factor when the smoothed target is far enough from the one in force
   * (./adaptive.ts). Counts are kept; the new limits apply at once.
   */
  setSignal(name: string, health: number, now: number): SignalState {
    const state = this.signals.update(name, health, now);
    for (const r of this.adaptiveRules) {
      const a = r.adaptive!;
      if (a.spec.signal !== name) continue;
      const f = nextFactor(a.spec, a.factor, state.smoothed);
      if (f !== a.factor) rescale(r, f, this.current.slotsPerWindow);
    }
    return state;
  }

  /** Every signal received, and each adaptive rule's factor and effective limits (for /v1/status). */
  adaptiveStatus(): AdaptiveStatus {
    return {
      signals: this.signals.all(),
      rules: this.adaptiveRules.map((r) => ({
        ruleId: r.id,
        signal: r.adaptive!.spec.signal,
        factor: Math.round(r.adaptive!.factor * 1000) / 1000,
        limits: r.limits.map((l) => ({ policy: l.policy.name, limit: l.math.capacity })),
      })),
    };
  }

  /** A rules change being compiled: its scopes, matcher, rules by id and adaptive rules, rule by rule. */
  private compilation(config: RulesConfig): Compilation {
    const next = new Map<ScopeId, CompiledLimit>();
    const existing = (scope: ScopeId) => this.scopeMap.get(scope);
    const c: Compilation = {
      config,
      next,
      matcher: new RuleMatcher(config.tiers, config.rules.length),
      byId: new Map(),
      adaptive: [],
      add: (i) => {
        const r = compileRule(config.rules[i], i, config.slotsPerWindow, this.nodes, existing, next);
        c.matcher.add(r);
        c.byId.set(r.id, r);
        if (r.adaptive !== null) c.adaptive.push(r);
      },
    };
    return c;
  }

  /** Swap compiled rules in (synchronous: no check sees half of a change). */
  private install(c: Compilation): void {
    c.matcher.seal();
    // Scopes that disappeared release their keys.
    let released = 0;
    for (const [scope, cl] of this.scopeMap) if (!c.next.has(scope)) released += cl.store.size;
    this.scopeMap = c.next;
    this.matcher = c.matcher;
    this.byIdMap = c.byId;
    this.current = c.config;
    // Adaptive rules start at the factor the signals ask for now (a rules change does not reset them).
    this.adaptiveRules = c.adaptive;
    for (const r of this.adaptiveRules) {
      const f = targetFactor(r.adaptive!.spec, this.signals.smoothed(r.adaptive!.spec.signal));
      if (f !== r.adaptive!.factor) rescale(r, f, c.config.slotsPerWindow);
    }
    if (released > 0) this.dropped(released);
  }
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
