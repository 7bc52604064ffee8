/**
 * The durability barrier of an answer: `afterCommit(reply, counted, send)` runs `send` now, or,
 * when something was counted and a commit is configured (`sync` durability), after the commit.
 * Shared by the main app and the admin listener.
 */
import type { FastifyReply } from 'fastify';
import { StorageError } from '../engine/errors.ts';

export type AfterCommit = (reply: FastifyReply, counted: boolean, send: () => FastifyReply) => FastifyReply | Promise<FastifyReply>;

export function afterCommitWith(commit: (() => Promise<unknown> | undefined | void) | undefined): AfterCommit {
  return (reply, counted, send) => {
    if (!counted || commit === undefined) return send();
    // `sync` durability promises that nothing answered as admitted is lost. When the commit
    // fails that promise cannot be kept, so the answer is 503 STORAGE_FAILURE instead of the
    // decision; the count stays in memory (conservative) and is retried by the next flush.
    const failed = (err: unknown): never => {
      reply.log.error({ err }, 'commit failed; answering 503');
      throw new StorageError(`counted, but not made durable: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    };
    let barrier: Promise<unknown> | undefined | void;
    try {
      barrier = commit();
    } catch (err) {
      return failed(err);
    }
    if (barrier === undefined) return send();
    return barrier.then(send, failed);
  };
}
