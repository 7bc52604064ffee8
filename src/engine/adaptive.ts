/**
 * Adaptive limits: a rule with `adaptive: {signal, floor, ceiling}` scales each of its limits
 * by a factor between `floor` and `ceiling` that follows a load signal's health (1 healthy →
 * ceiling, 0 overloaded → floor).
 *
 * A signal is a health value in [0, 1]: posted by an admin (a backend's health,
 * PUT /v1/signals/:name) or measured by the node (`event-loop-delay`, from the event loop's
 * delay: 1 at or below 20 ms, 0 at or above 200 ms). So that a limit does not flap:
 * - the health is smoothed (an exponentially weighted moving average with a 10 s time
 *   constant: a sample moves it by 1 − e^(−Δt/10 s) of the way);
 * - the factor in force changes only when the smoothed target moves at least 0.05 away from it
 *   (hysteresis), or comes within 0.025 of the floor or the ceiling (then it is put there).
 * Time is a parameter; nothing here reads a clock.
 */
/** The node's own signal: its event loop's delay. */
export const EVENT_LOOP_SIGNAL = 'event-loop-delay';
/** Event-loop delay (ms) at or below which the node is healthy (1), at or above which it is overloaded (0). */
export const EVENT_LOOP_HEALTHY_MS = 20;
export const EVENT_LOOP_OVERLOADED_MS = 200;
/** Time constant of the smoothing (ms). */
export const SMOOTHING_MS = 10_000;
/** The factor in force moves only when the target is this far from it (or at floor/ceiling). */
export const HYSTERESIS = 0.05;
/** Δt assumed for a signal's first sample. */
const FIRST_SAMPLE_MS = 1000;

import type { AdaptiveSpec } from './types.ts';

/** Health of the node from its event loop's delay (ms). */
export function eventLoopHealth(delayMs: number): number {
  return clamp01(1 - (delayMs - EVENT_LOOP_HEALTHY_MS) / (EVENT_LOOP_OVERLOADED_MS - EVENT_LOOP_HEALTHY_MS));
}

export interface SignalState {
  /** Last value received. */
  health: number;
  /** Smoothed health (what limits follow). */
  smoothed: number;
  /** When the last value was received (ms). */
  at: number;
}

/** Smoothed signals by name. */
export class Signals {
  private readonly byName = new Map<string, SignalState>();

  /** Take a sample; returns the new state. `health` is clamped to [0, 1]. */
  update(name: string, health: number, now: number): SignalState {
    const h = clamp01(health);
    const prev = this.byName.get(name);
    const smoothedBefore = prev?.smoothed ?? 1;
    const dt = prev === undefined ? FIRST_SAMPLE_MS : Math.max(0, now - prev.at);
    const alpha = 1 - Math.exp(-dt / SMOOTHING_MS);
    const state: SignalState = { health: h, smoothed: smoothedBefore + alpha * (h - smoothedBefore), at: prev === undefined ? now : Math.max(prev.at, now) };
    this.byName.set(name, state);
    return state;
  }

  /** Smoothed health of a signal (1 when never received: limits stay at their ceiling). */
  smoothed(name: string): number {
    return this.byName.get(name)?.smoothed ?? 1;
  }

  all(): Record<string, SignalState> {
    return Object.fromEntries(this.byName);
  }
}

/** The factor a smoothed health asks for. */
export function targetFactor(spec: AdaptiveSpec, health: number): number {
  return spec.floor + (spec.ceiling - spec.floor) * clamp01(health);
}

/** The factor to put in force: the target when far enough from the current one (hysteresis), else the current. */
export function nextFactor(spec: AdaptiveSpec, current: number, health: number): number {
  let target = targetFactor(spec, health);
  // The smoothed health only approaches 0 and 1: within half the band of floor or ceiling, it is there.
  if (target - spec.floor < HYSTERESIS / 2) target = spec.floor;
  else if (spec.ceiling - target < HYSTERESIS / 2) target = spec.ceiling;
  if (Math.abs(target - current) >= HYSTERESIS) return target;
  if ((target === spec.floor || target === spec.ceiling) && target !== current) return target;
  return current;
}

/** A limit scaled by a factor: at least 1. */
export function scaled(limit: number, factor: number): number {
  return Math.max(1, Math.floor(limit * factor));
}

function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}
