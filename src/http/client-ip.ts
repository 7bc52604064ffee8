/**
 * The client's IP address. Without trusted proxies it is the socket peer and every forwarding
 * header is ignored. With `--trusted-proxies` (addresses or CIDRs), fastify's `trustProxy`
 * (proxy-addr) walks the X-Forwarded-For chain from the right, past the trusted proxies, and
 * takes the first address that is not one of them: the right-most untrusted address, never the
 * left-most (which the client wrote itself).
 *
 * With `--forwarded-header forwarded` the proxies write RFC 7239 `Forwarded` instead: its `for=`
 * values replace any X-Forwarded-For (which the client could have sent through such proxies
 * untouched) before the same walk runs.
 */
import type { FastifyInstance } from 'fastify';

export type ForwardedHeader = 'x-forwarded-for' | 'forwarded';

/** fastify's `trustProxy` option for a list of trusted proxies. */
export function trustProxyOption(trusted: readonly string[] | undefined): string[] | false {
  return trusted !== undefined && trusted.length > 0 ? [...trusted] : false;
}

/** The node addresses of an RFC 7239 Forwarded header's `for=` parameters, in order. */
export function forwardedFor(header: string): string[] {
  const out: string[] = [];
  for (const element of header.split(',')) {
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=');
      if (eq === -1 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
      let v = pair.slice(eq + 1).trim();
      if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
      if (v.startsWith('[')) {
        const end = v.indexOf(']');
        v = end === -1 ? v : v.slice(1, end); // "[2001:db8::1]:4711"
      } else if (/^[0-9.]+:\d+$/.test(v)) v = v.slice(0, v.lastIndexOf(':')); // "192.0.2.1:8080"
      out.push(v);
    }
  }
  return out;
}

/** With `forwarded`, rewrite the request's X-Forwarded-For from its Forwarded header first. */
export function installForwardedHeader(app: FastifyInstance, mode: ForwardedHeader, trusted: readonly string[] | undefined): void {
  if (mode !== 'forwarded' || trustProxyOption(trusted) === false) return;
  app.addHook('onRequest', (req, _reply, done) => {
    const h = req.raw.headers;
    const fwd = h.forwarded;
    delete h['x-forwarded-for'];
    if (typeof fwd === 'string') {
      const chain = forwardedFor(fwd);
      if (chain.length > 0) h['x-forwarded-for'] = chain.join(', ');
    }
    done();
  });
}

/**
 * The key of a client address: `ip:<address>`, with an IPv4-mapped IPv6 address written as IPv4
 * so a client counts as one key whether the node listens on IPv4 or on "::".
 */
export function ipKey(address: string | undefined): string {
  const a = address ?? 'unknown';
  return `ip:${/^::ffff:\d{1,3}(\.\d{1,3}){3}$/i.test(a) ? a.slice(7) : a}`;
}
