/**
 * The durability barrier of an answer: `afterCommit(reply, counted, payload)` sends `payload`
 * now, or, when something was counted and a commit is configured (`sync` durability), after
 * the commit. Shared by the main app and the admin listener. No closure is made per answer (it
 * is on every check's path).
 */
import type { FastifyReply } from 'fastify';
import { StorageError } from '../engine/errors.ts';

export type AfterCommit = (reply: FastifyReply, counted: boolean, payload: unknown) => FastifyReply | Promise<FastifyReply>;

/**
 * `sync` durability promises that nothing answered as admitted is lost. When the commit fails
 * that promise cannot be kept, so the answer is 503 STORAGE_FAILURE instead of the decision;
 * the count stays in memory (conservative) and is retried by the next flush.
 */
function commitFailed(reply: FastifyReply, err: unknown): never {
  reply.log.error({ err }, 'commit failed; answering 503');
  throw new StorageError(`counted, but not made durable: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

export function afterCommitWith(commit: (() => Promise<unknown> | undefined | void) | undefined): AfterCommit {
  if (commit === undefined) return (reply, _counted, payload) => reply.send(payload);
  return (reply, counted, payload) => {
    if (!counted) return reply.send(payload);
    let barrier: Promise<unknown> | undefined | void;
    try {
      barrier = commit();
    } catch (err) {
      return commitFailed(reply, err);
    }
    if (barrier === undefined) return reply.send(payload);
    return barrier.then(
      () => reply.send(payload),
      (err: unknown) => commitFailed(reply, err),
    );
  };
}
