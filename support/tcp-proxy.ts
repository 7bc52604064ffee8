/**
 * A small TCP proxy for fault injection between processes (toxiproxy does not exist on these
 * machines and `tc netem` is unavailable). Modes, switchable at any time:
 *
 * - `pass`: forward both directions.
 * - `delay`: forward both directions, each chunk held `ms` milliseconds, or with `jitterMs` a
 *   time drawn uniformly from `ms ± jitterMs` (a seeded PRNG, `seed`). A TCP stream is never
 *   reordered: a chunk is released no earlier than the one before it in the same direction, so
 *   a short draw behind a long one waits for it (head-of-line blocking, as on a real link).
 * - `blackhole`: accept connections and read from them, forward nothing (a silent partition:
 *   peers only notice through their own timeouts). Leaving blackhole destroys the connections
 *   that lost bytes, as their byte streams are corrupt; new connections then pass.
 * - `reset`: destroy every connection with a TCP RST, and reset new ones as they arrive.
 *
 * A mode can also be set per connection label (see `label`), e.g. to cut one client only.
 */
import net from 'node:net';
import { mulberry32 } from './random.ts';

export type ProxyMode = { kind: 'pass' } | { kind: 'delay'; ms: number; jitterMs?: number } | { kind: 'blackhole' } | { kind: 'reset' };

export interface TcpProxyOptions {
  /** Where connections are forwarded. */
  target: { host?: string; port: number };
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  mode?: ProxyMode;
  /**
   * Names a connection from the first bytes its client sends (called with everything received
   * so far until it returns a string, or null for "no label"). Labelled connections follow the
   * mode set for their label, e.g. the dialling region of a NATS gateway connection, read from
   * its CONNECT line, so one proxy can cut one peer only.
   */
  label?: (head: Buffer) => string | null | undefined;
  /** Seed of the PRNG that draws jittered delays (default 1): a run's draws are repeatable. */
  seed?: number;
}

export interface TcpProxy {
  readonly host: string;
  readonly port: number;
  /** `host:port` of the proxy. */
  readonly address: string;
  readonly mode: ProxyMode;
  /** Open client connections. */
  readonly connections: number;
  /** Sets the default mode, or with `label` the mode of connections with that label. */
  setMode(mode: ProxyMode, label?: string): void;
  /** Labelled connections follow the default mode again. */
  clearLabel(label: string): void;
  pass(): void;
  /** Every chunk held `ms` (± `jitterMs`, uniform) milliseconds. */
  delay(ms: number, jitterMs?: number): void;
  blackhole(): void;
  reset(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/** One direction of a connection: an ordered queue released no earlier than each chunk's time. */
class Pipe {
  private queue: Array<{ at: number; chunk: Buffer }> = [];
  private timer: NodeJS.Timeout | null = null;
  private lastAt = 0;
  constructor(
    /** The socket the bytes come from (paused while the destination is full). */
    private readonly from: () => net.Socket | null,
    private readonly to: () => net.Socket | null,
  ) {}

  push(chunk: Buffer, delayMs: number): void {
    // One FIFO queue per direction with monotonic release times: bytes leave in the order they came.
    const at = Math.max(Date.now() + delayMs, this.lastAt);
    this.lastAt = at;
    this.queue.push({ at, chunk });
    this.flush();
  }

  private flush(): void {
    if (this.timer) return;
    while (this.queue.length) {
      const head = this.queue[0]!;
      const wait = head.at - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.flush();
        }, wait);
        return;
      }
      this.queue.shift();
      const to = this.to();
      if (!to || to.destroyed) continue;
      if (!to.write(head.chunk)) {
        const from = this.from();
        from?.pause();
        to.once('drain', () => from?.resume());
      }
    }
  }

  /** Drops queued bytes (blackhole, reset). Returns whether any were dropped. */
  drop(): boolean {
    const had = this.queue.length > 0;
    this.queue = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    return had;
  }
}

interface Conn {
  client: net.Socket;
  upstream: net.Socket | null;
  /** Bytes were discarded: the streams are corrupt and the connection must not be healed. */
  lost: boolean;
  /** What the label function said about this connection (undefined: not decided yet). */
  label: string | null | undefined;
  /** Client bytes seen while the label is undecided. */
  head: Buffer;
  up: Pipe;
  down: Pipe;
}

export async function startTcpProxy(opts: TcpProxyOptions): Promise<TcpProxy> {
  const targetHost = opts.target.host ?? '127.0.0.1';
  const listenHost = opts.host ?? '127.0.0.1';
  let mode: ProxyMode = opts.mode ?? { kind: 'pass' };
  const random = mulberry32(opts.seed ?? 1);
  const delayOf = (m: { ms: number; jitterMs?: number }) => (m.jitterMs ? Math.max(0, m.ms + (2 * random() - 1) * m.jitterMs) : m.ms);
  const labelModes = new Map<string, ProxyMode>();
  const conns = new Set<Conn>();
  const modeOf = (c: Conn): ProxyMode => (c.label ? labelModes.get(c.label) : undefined) ?? mode;

  const kill = (c: Conn) => {
    c.up.drop();
    c.down.drop();
    for (const s of [c.client, c.upstream]) {
      if (s && !s.destroyed) s.resetAndDestroy();
    }
    conns.delete(c);
  };

  const connectUpstream = (c: Conn) => {
    const up = net.connect({ host: targetHost, port: opts.target.port });
    c.upstream = up;
    up.setNoDelay(true);
    up.on('data', (chunk: Buffer) => forward(c, c.down, chunk));
    up.on('error', () => kill(c));
    up.on('close', () => kill(c));
  };

  const forward = (c: Conn, pipe: Pipe, chunk: Buffer) => {
    const m = modeOf(c);
    switch (m.kind) {
      case 'pass':
        return pipe.push(chunk, 0);
      case 'delay':
        return pipe.push(chunk, delayOf(m));
      case 'blackhole':
        c.lost = true;
        return;
      case 'reset':
        return kill(c);
    }
  };

  const fromClient = (c: Conn, chunk: Buffer) => {
    if (c.label === undefined && opts.label) {
      c.head = Buffer.concat([c.head, chunk]);
      const l = opts.label(c.head);
      if (l !== undefined || c.head.length > 64 * 1024) c.label = l ?? null;
      if (c.label) applyTransition(c, mode, modeOf(c));
    }
    if (conns.has(c)) forward(c, c.up, chunk);
  };

  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const c = { client, upstream: null, lost: false, label: opts.label ? undefined : null, head: Buffer.alloc(0) } as Omit<Conn, 'up' | 'down'> as Conn;
    c.up = new Pipe(() => c.client, () => c.upstream);
    c.down = new Pipe(() => c.upstream, () => c.client);
    conns.add(c);
    client.on('error', () => kill(c));
    client.on('close', () => kill(c));
    if (mode.kind === 'reset') return kill(c);
    if (mode.kind === 'blackhole') {
      // Accept and read, forward nothing; the upstream is never dialled.
      c.lost = true;
      client.on('data', () => {});
      return;
    }
    connectUpstream(c);
    client.on('data', (chunk: Buffer) => fromClient(c, chunk));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, listenHost, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  /** Moves one connection from mode `prev` to mode `next`. */
  const applyTransition = (c: Conn, prev: ProxyMode, next: ProxyMode) => {
    if (next.kind === 'reset') kill(c);
    else if (next.kind === 'blackhole') {
      const droppedUp = c.up.drop();
      const droppedDown = c.down.drop();
      if (droppedUp || droppedDown) c.lost = true;
    } else if (prev.kind === 'blackhole' && c.lost) {
      // A connection that lost bytes cannot carry a valid byte stream any more.
      kill(c);
    }
  };

  const setMode = (next: ProxyMode, label?: string) => {
    const before = new Map([...conns].map((c) => [c, modeOf(c)]));
    if (label === undefined) mode = next;
    else labelModes.set(label, next);
    for (const [c, prev] of before) if (conns.has(c)) applyTransition(c, prev, modeOf(c));
  };

  return {
    host: listenHost,
    port,
    address: `${listenHost}:${port}`,
    get mode() {
      return mode;
    },
    get connections() {
      return conns.size;
    },
    setMode,
    clearLabel: (label: string) => {
      const before = new Map([...conns].map((c) => [c, modeOf(c)]));
      labelModes.delete(label);
      for (const [c, prev] of before) if (conns.has(c)) applyTransition(c, prev, modeOf(c));
    },
    pass: () => setMode({ kind: 'pass' }),
    delay: (ms: number, jitterMs?: number) => setMode(jitterMs ? { kind: 'delay', ms, jitterMs } : { kind: 'delay', ms }),
    blackhole: () => setMode({ kind: 'blackhole' }),
    reset: () => setMode({ kind: 'reset' }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of [...conns]) kill(c);
        server.close(() => resolve());
      }),
  };
}
