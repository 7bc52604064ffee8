/**
 * TCP ports for the servers that the tests, the bench and scripts/regions.ts start.
 *
 * `freePorts(n)` draws ports at random from TEST_PORT_MIN..TEST_PORT_MAX, below the kernel's
 * ephemeral range (32768–60999 here), each checked by binding it, and never hands one out twice
 * in a process: a port from the ephemeral range (what binding port 0 gives) can be taken by any
 * outgoing connection between the check and the server's own bind. Ports picked some other way
 * for child processes (e.g. a port offset) stay below TEST_PORT_MIN so the two never collide.
 */
import net from 'node:net';

export const TEST_PORT_MIN = 20_000;
export const TEST_PORT_MAX = 32_000;

/** Whether `port` can be bound on `host` right now. */
export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((done) => {
    const s = net.createServer();
    s.once('error', () => done(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => done(true)));
  });
}

const handedOut = new Set<number>();

/** `n` distinct free ports on 127.0.0.1, none handed out before by this process. */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let attempts = 0; out.length < n; attempts++) {
    if (attempts > 10_000) throw new Error(`no ${n} free ports between ${TEST_PORT_MIN} and ${TEST_PORT_MAX}`);
    const port = TEST_PORT_MIN + Math.floor(Math.random() * (TEST_PORT_MAX - TEST_PORT_MIN));
    if (handedOut.has(port)) continue;
    if (!(await portFree(port))) continue;
    handedOut.add(port);
    out.push(port);
  }
  return out;
}
