/**
 * Stream administration as the NATS admin user: connect, create or adopt every stream of a
 * deployment (./provisioning.ts `provisionStreams`), retrying while JetStream has no quorum
 * yet (right after the servers start). Used by `npm run provision`, the local launcher and
 * tests.
 */
import { NatsLink } from './connection.ts';
import { isTransient } from './errors.ts';
import { DEFAULT_DUPLICATE_WINDOW_MS, provisionStreams } from './provisioning.ts';

export interface ProvisionOptions {
  servers: string | string[];
  /** Every region of the deployment. */
  regions: readonly string[];
  /** The admin user's nkey seed (anonymous without it: a server without authorization). */
  nkeySeed?: string;
  maxAgeMs: number;
  /** How long to retry while JetStream is not ready (default 60 s). */
  timeoutMs?: number;
}

export type ProvisionResult = Awaited<ReturnType<typeof provisionStreams>>;

export async function provisionDeployment(o: ProvisionOptions): Promise<ProvisionResult> {
  const link = await NatsLink.open(
    { servers: o.servers, name: 'limiter-provision', requestTimeoutMs: 5000, nkeySeed: o.nkeySeed },
    { disconnect() {}, reconnect() {}, failure() {} },
  );
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        return await provisionStreams(link.jsm, o.regions, { maxAgeMs: o.maxAgeMs, duplicateWindowMs: Math.min(DEFAULT_DUPLICATE_WINDOW_MS, o.maxAgeMs) });
      } catch (err) {
        if (!isTransient(err) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** attempt)));
      }
    }
  } finally {
    await link.close();
  }
}
