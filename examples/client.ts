// The HTTP client: keep-alive, automatic batching, denial cache, retries that never count twice.
import { LimiterClient } from 'regionlimit/client';

const client = new LimiterClient({
  url: process.env.LIMITER_URL ?? 'http://127.0.0.1:8080',
  timeoutMs: 200,
  onUnavailable: { limit: 10, window: '1s' }, // or 'failOpen', 'failClosed', 'error' (default)
});

// Concurrent checks from this process go out as one POST /v1/check/batch.
const [d] = await Promise.all([client.check({ key: 'user:42' }), client.check({ key: 'user:43' })]);
console.log(d.allowed ? `allowed, ${d.remaining} left` : `denied, retry in ${d.retryAfterMs} ms`);
await client.close();
