// The limiter inside your process: same rules, SQLite state and (with `nats`) replication as a node.
import { createLimiter } from 'regionlimit';

const limiter = await createLimiter({
  rules: { rules: [{ id: 'api', key: 'user:*', limits: [{ limit: 100, window: '1m' }] }] },
  data: process.env.LIMITER_DATA ?? './limiter-data',
  // nats: 'nats://127.0.0.1:4222', nodeId: 'app-1',   // replicate with the nodes
});

const d = await limiter.check({ key: 'user:42' });
console.log(d.allowed ? `allowed, ${d.remaining} left` : `denied, retry in ${d.retryAfterMs} ms`);
if (d.admissionId) await limiter.refund(d.admissionId); // the request did not happen after all
await limiter.close();
