/**
 *   PUT /v1/signals/:name   {health}   (admin token)  -> 200 {name, health, smoothed, at}
 *
 * A load signal for adaptive rules (src/engine/adaptive.ts): a backend's health in [0, 1]
 * (1 healthy, 0 overloaded). Rules with `adaptive: {signal: <name>}` scale their limits from
 * its smoothed value. Signals are this node's: post them to every node that should follow.
 * `event-loop-delay` is the node's own and cannot be posted.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { EVENT_LOOP_SIGNAL, type SignalState } from '../engine/adaptive.ts';
import { inputError } from './errors.ts';

export interface SignalRouteOptions {
  setSignal: (name: string, health: number, at: number) => SignalState;
  now: () => number;
  adminGuard: { onRequest: onRequestHookHandler };
  errorResponses: Record<number, unknown>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export const signalBodySchema = Type.Object({ health: Type.Number({ minimum: 0, maximum: 1 }) }, { additionalProperties: false });

export function registerSignalRoute(app: FastifyInstance, o: SignalRouteOptions): void {
  app.put('/v1/signals/:name', { ...o.adminGuard, schema: { body: signalBodySchema, response: { ...o.errorResponses } } }, (req) => {
    const name = (req.params as { name: string }).name;
    if (!NAME.test(name)) throw inputError('INVALID_BODY', 'a signal name is 1 to 128 letters, digits, ".", "_", ":" or "-"', '/name');
    if (name === EVENT_LOOP_SIGNAL) throw inputError('INVALID_BODY', `"${EVENT_LOOP_SIGNAL}" is measured by the node itself`, '/name');
    const at = o.now();
    const s = o.setSignal(name, (req.body as { health: number }).health, at);
    return { name, health: s.health, smoothed: Math.round(s.smoothed * 1000) / 1000, at: s.at };
  });
}
