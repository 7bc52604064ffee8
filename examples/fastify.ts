// fastify: limit by API key (x-api-key), by IP for requests without one.
import Fastify from 'fastify';
import { LimiterClient } from 'regionlimit/client';
import { regionlimitFastify } from 'regionlimit/middleware';

const app = Fastify();
await app.register(regionlimitFastify, {
  limiter: new LimiterClient({ url: process.env.LIMITER_URL ?? 'http://127.0.0.1:8080', onUnavailable: 'failClosed' }),
  keyBy: 'apiKey',
});
app.get('/', async () => 'hello\n');
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 3000) });
console.log(`listening on ${JSON.stringify(app.server.address())}`);
