// express: limit every route by client IP (X-Forwarded-For believed from your proxies only).
import express from 'express';
import { LimiterClient } from 'regionlimit/client';
import { regionlimitExpress } from 'regionlimit/middleware';

const limiter = new LimiterClient({ url: process.env.LIMITER_URL ?? 'http://127.0.0.1:8080', onUnavailable: 'failOpen' });
const app = express();
app.use(regionlimitExpress({ limiter, keyBy: 'ip', trustedProxies: ['10.0.0.0/8'] }));
app.get('/', (_req, res) => void res.send('hello\n'));
const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => console.log(`listening on ${JSON.stringify(server.address())}`));
