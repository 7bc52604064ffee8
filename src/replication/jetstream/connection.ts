/**
 * The NATS connection of the JetStream transport: connecting with reconnect-forever options,
 * the JetStream clients on top of it, and watching its status (connected, server,
 * reconnects) so the transport can resynchronise its consumers after a reconnect.
 */
import {
  DebugEvents,
  ErrorCode,
  Events,
  NatsError,
  connect as natsConnect,
  nkeyAuthenticator,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
} from 'nats';
import { ReplicationError, toError } from './errors.ts';

/**
 * Client options that detect a dead server in ~6 s and reconnect forever (see FACTS.md).
 *
 * - `timeout` bounds each connection attempt: without it, an attempt on a stopped-but-alive
 *   server (SIGSTOP) hangs. With it the client is nearly always inside an attempt while such a
 *   server is frozen (the kernel accepts the TCP connection), and that attempt completes the
 *   moment the server resumes, so a SIGCONT costs no reconnect wait.
 * - `reconnectTimeWait` 250 ms + at most 50 ms jitter between attempts on the same server:
 *   after a kill -9 the client is back at most ~0.3 s after the server listens again (with the
 *   nats.js defaults, 500 + 100 ms, up to 0.6 s of a 1 s catch-up budget). A refused attempt
 *   costs the server nothing.
 * - `pingInterval` 2 s, `maxPingOut` 2: a frozen server is noticed after 4–6 s. A shorter
 *   interval would not speed up the catch-up (see above) and risks flapping on a loaded host.
 */
export const RECONNECT_OPTIONS = {
  maxReconnectAttempts: -1,
  reconnectTimeWait: 250,
  reconnectJitter: 50,
  pingInterval: 2000,
  maxPingOut: 2,
  timeout: 2000,
} as const;

/** Time-out of the JetStream requests a consumer makes to resynchronise (short: they are retried). */
export const RESYNC_REQUEST_TIMEOUT_MS = 1000;

export interface ConnectionOptions {
  servers: string | string[];
  name: string;
  /** Keep trying the first connection instead of failing (default false). */
  waitOnFirstConnect?: boolean;
  /** Time-out of JetStream API calls and publishes in ms. */
  requestTimeoutMs: number;
  /** Authenticate as this nkey user (its seed, `SU…`); without it, connect anonymously. */
  nkeySeed?: string;
  /** TLS to the server: CA to verify it, and a client certificate when the server asks for one (PEM file paths). */
  tls?: NatsTlsFiles;
  /** Prefix of request inboxes (the node's user may subscribe only below its own). */
  inboxPrefix?: string;
}

export interface NatsTlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** Whether NATS refused the credentials (a reconnect loop cannot fix that). */
export function isAuthError(err: unknown): boolean {
  return err instanceof NatsError && (err.code === ErrorCode.AuthorizationViolation || err.code === ErrorCode.AuthenticationExpired);
}

/** Whether NATS refused an operation the user's permissions do not allow. */
export function isPermissionError(err: unknown): boolean {
  return err instanceof NatsError && err.code === ErrorCode.PermissionsViolation;
}

/** `nats://user:secret@host:4222` → `nats://host:4222`: server URLs as they may be logged. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1');
}

export interface ConnectionListener {
  disconnect(server: string): void;
  reconnect(server: string): void;
  failure(err: Error): void;
}

/** A connected NATS client with its JetStream clients. */
export class NatsLink {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  /** JetStream management with the configured request time-out. */
  readonly jsm: JetStreamManager;
  /** JetStream management with a short time-out, for the consumers' resynchronisation (retried). */
  readonly fastJsm: JetStreamManager;
  connected = true;
  server: string;
  reconnects = 0;

  private constructor(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, fastJsm: JetStreamManager) {
    this.nc = nc;
    this.js = js;
    this.jsm = jsm;
    this.fastJsm = fastJsm;
    this.server = nc.getServer();
  }

  /** Connects (throws ReplicationError `REPLICATION_UNAVAILABLE`) and starts watching the status. */
  static async open(opts: ConnectionOptions, listener: ConnectionListener): Promise<NatsLink> {
    let nc: NatsConnection;
    try {
      nc = await natsConnect({
        servers: opts.servers,
        name: opts.name,
        ...RECONNECT_OPTIONS,
        waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
        ...(opts.nkeySeed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(opts.nkeySeed.trim())) } : {}),
        ...(opts.tls ? { tls: { ...opts.tls } } : {}),
        ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
      });
    } catch (err) {
      const where = [opts.servers].flat().map(redactUrl).join(',');
      if (isAuthError(err)) {
        throw new ReplicationError('REPLICATION_UNAUTHORIZED', `NATS at ${where} refused this node's credentials: ${toError(err).message}`, { cause: err });
      }
      throw new ReplicationError('REPLICATION_UNAVAILABLE', `cannot connect to NATS at ${where}: ${toError(err).message}`, { cause: err });
    }
    try {
      const js = nc.jetstream({ timeout: opts.requestTimeoutMs });
      // checkAPI false: no JetStream request at connect time (it needs JetStream to be up).
      const jsm = await nc.jetstreamManager({ timeout: opts.requestTimeoutMs, checkAPI: false });
      const fastJsm = await nc.jetstreamManager({ timeout: Math.min(opts.requestTimeoutMs, RESYNC_REQUEST_TIMEOUT_MS), checkAPI: false });
      const link = new NatsLink(nc, js, jsm, fastJsm);
      link.watch(listener);
      return link;
    } catch (err) {
      await nc.close().catch(() => {});
      throw new ReplicationError('REPLICATION_UNAVAILABLE', `JetStream client: ${toError(err).message}`, { cause: err });
    }
  }

  private watch(listener: ConnectionListener): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        switch (s.type) {
          case Events.Disconnect:
            this.connected = false;
            listener.disconnect(String(s.data));
            break;
          case Events.Reconnect:
            this.connected = true;
            this.reconnects++;
            this.server = this.nc.getServer();
            listener.reconnect(String(s.data));
            break;
          case Events.Error:
            listener.failure(toError(s.data));
            break;
          case DebugEvents.StaleConnection:
            listener.failure(new Error('stale connection: no PONG from the server'));
            break;
          default:
        }
      }
    })().catch(() => {});
  }

  /** Flushes briefly (pending publishes) and closes. */
  async close(): Promise<void> {
    this.connected = false;
    if (this.nc.isClosed()) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.nc.flush().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    await this.nc.close().catch(() => {});
  }
}
