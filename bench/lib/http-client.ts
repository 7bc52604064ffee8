/**
 * A small keep-alive HTTP/1.1 client for the benchmarks' probes and paced load (node:http: much
 * less CPU per request than fetch, which matters when the load generator shares 2 cores with
 * the servers it measures).
 */
import http from 'node:http';

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export interface JsonResponse<T = unknown> {
  status: number;
  body: T;
}

export function request<T = unknown>(method: 'GET' | 'POST', url: string, body?: unknown, timeoutMs = 10_000): Promise<JsonResponse<T>> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: (text ? JSON.parse(text) : undefined) as T });
          } catch (err) {
            reject(new Error(`${method} ${url}: answer is not JSON (${res.statusCode}): ${text.slice(0, 200)}`, { cause: err }));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Close idle keep-alive sockets (so the servers can stop at once). */
export function closeIdle(): void {
  agent.destroy();
}
