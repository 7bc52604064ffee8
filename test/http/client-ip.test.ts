/**
 * GET /v1/check without a key counts the client's IP address (`ip:<address>`), on a real socket:
 * the socket peer, or, only through --trusted-proxies, the right-most address of the forwarding
 * chain that is not a trusted proxy. Spoofed headers from an untrusted peer are ignored.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { BuildAppOptions } from '../../src/http/app.ts';
import { forwardedFor, ipKey } from '../../src/http/client-ip.ts';
import { request, serve, type Served } from './helpers.ts';

let s: Served | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

async function start(extra: Partial<BuildAppOptions>): Promise<Served> {
  const served = await serve({ ...extra, inspect: (k, m, at) => served.limiter.inspect(k, m, at) });
  s = served;
  return served;
}

/** Usage of `ip:<address>` (the by-ip rule). */
async function ipUsage(url: string, address: string): Promise<number> {
  const r = await request(url, `/v1/usage?key=${encodeURIComponent(`ip:${address}`)}`);
  return r.json<{ limits: { usage: number }[] }>().limits[0].usage;
}

const SPOOF = { 'x-forwarded-for': '203.0.113.66', forwarded: 'for=203.0.113.66', 'x-real-ip': '203.0.113.66' };

describe('client IP', () => {
  it('without trusted proxies: the socket peer, whatever headers the client sends', async () => {
    const srv = await start({});
    const r = await request(srv.url, '/v1/check', { headers: SPOOF });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ ruleId: 'by-ip' });
    expect(await ipUsage(srv.url, '127.0.0.1')).toBe(1);
    expect(await ipUsage(srv.url, '203.0.113.66')).toBe(0);
  });

  it('through trusted proxies: the right-most untrusted address of X-Forwarded-For, never the left-most', async () => {
    const srv = await start({ trustedProxies: ['127.0.0.1/32', '10.0.0.0/8'] });
    // The client wrote 198.51.100.1 itself; 203.0.113.7 is what the first trusted proxy (10.1.2.3) saw.
    await request(srv.url, '/v1/check', { headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.7, 10.1.2.3' } });
    expect(await ipUsage(srv.url, '203.0.113.7')).toBe(1);
    expect(await ipUsage(srv.url, '198.51.100.1')).toBe(0);
    expect(await ipUsage(srv.url, '10.1.2.3')).toBe(0);
    expect(await ipUsage(srv.url, '127.0.0.1')).toBe(0);
  });

  it('a spoofed header from a peer that is not a trusted proxy is ignored', async () => {
    const srv = await start({ trustedProxies: ['127.0.0.1/32'] });
    // 127.0.0.2 is another loopback peer, not in the list.
    await request(srv.url, '/v1/check', { headers: SPOOF, localAddress: '127.0.0.2' });
    expect(await ipUsage(srv.url, '127.0.0.2')).toBe(1);
    expect(await ipUsage(srv.url, '203.0.113.66')).toBe(0);
  });

  it('with --forwarded-header forwarded: RFC 7239 for= values, and X-Forwarded-For is ignored', async () => {
    const srv = await start({ trustedProxies: ['127.0.0.1'], forwardedHeader: 'forwarded' });
    await request(srv.url, '/v1/check', {
      headers: { forwarded: 'for=198.51.100.1;proto=http, for="[2001:db8:cafe::17]:4711";by=10.0.0.1', 'x-forwarded-for': '192.0.2.99' },
    });
    expect(await ipUsage(srv.url, '2001:db8:cafe::17')).toBe(1);
    expect(await ipUsage(srv.url, '192.0.2.99')).toBe(0);
    expect(await ipUsage(srv.url, '198.51.100.1')).toBe(0);
  });

  it('a key given in the query is used as it is', async () => {
    const srv = await start({ trustedProxies: ['127.0.0.1'] });
    const r = await request(srv.url, '/v1/check?key=k:given', { headers: SPOOF });
    expect(r.json()).toMatchObject({ ruleId: 'per-key', remaining: 4 });
    expect(await ipUsage(srv.url, '127.0.0.1')).toBe(0);
  });
});

describe('forwardedFor (RFC 7239)', () => {
  it('takes every for= value in order, without quotes, brackets or ports', () => {
    expect(forwardedFor('for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http')).toEqual(['192.0.2.43', '198.51.100.17']);
    expect(forwardedFor('For="[2001:db8:cafe::17]:4711"')).toEqual(['2001:db8:cafe::17']);
    expect(forwardedFor('for="192.0.2.1:8080", for=unknown, proto=https')).toEqual(['192.0.2.1', 'unknown']);
    expect(forwardedFor('proto=https')).toEqual([]);
  });
});

describe('ipKey', () => {
  it('writes an IPv4-mapped IPv6 address as IPv4, so one client is one key on any listener', () => {
    expect(ipKey('::ffff:203.0.113.7')).toBe('ip:203.0.113.7');
    expect(ipKey('203.0.113.7')).toBe('ip:203.0.113.7');
    expect(ipKey('2001:db8::1')).toBe('ip:2001:db8::1');
    expect(ipKey(undefined)).toBe('ip:unknown');
  });
});
