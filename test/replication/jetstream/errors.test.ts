/**
 * Pure parts of the JetStream transport: classification of nats.js errors (by NatsError code
 * and JetStream err_code only, never by message text), and the wire formats it reads.
 */
import { ErrorCode, NatsError } from 'nats';
import { describe, expect, it } from 'vitest';
import { ReplicationError as SharedReplicationError } from '../../../src/replication/errors.ts';
import { JS_ERR, ReplicationError, deliverSubject, isTransient, parseAckReply, wrapError } from '../../../src/replication/jetstream/index.ts';

const natsError = (code: string, message = 'x') => new NatsError(message, code);
const apiError = (errCode: number, status = 503) =>
  Object.assign(new NatsError('api', String(status)), { api_error: { code: status, err_code: errCode, description: 'api' } });

describe('JetStream error classification', () => {
  it('treats time-outs, no responders, disconnects and missing quorum as transient', () => {
    for (const code of [ErrorCode.Timeout, ErrorCode.NoResponders, ErrorCode.JetStream408RequestTimeout, ErrorCode.Disconnect, ErrorCode.ConnectionRefused]) {
      expect(isTransient(natsError(code)), code).toBe(true);
    }
    for (const errCode of [JS_ERR.CLUSTER_NOT_AVAILABLE, JS_ERR.CLUSTER_NOT_LEADER, JS_ERR.CLUSTER_NO_PEERS, JS_ERR.INSUFFICIENT_RESOURCES]) {
      expect(isTransient(apiError(errCode)), String(errCode)).toBe(true);
    }
  });

  it('never classifies by message text', () => {
    expect(isTransient(new Error('timeout'))).toBe(false);
    expect(isTransient(new Error('JetStream system temporarily unavailable'))).toBe(false);
    expect(isTransient(natsError(ErrorCode.BadJson, 'no responders, timeout'))).toBe(false);
    // An API error is judged by its err_code, even with a 503 status.
    expect(isTransient(apiError(JS_ERR.STREAM_NOT_FOUND, 404))).toBe(false);
    expect(isTransient(apiError(10039, 503))).toBe(false); // JetStream not enabled for the account
  });

  it('wraps NATS failures in the shared ReplicationError with a code', () => {
    const unavailable = wrapError('publish', natsError(ErrorCode.Timeout));
    expect(unavailable).toBeInstanceOf(SharedReplicationError);
    expect(unavailable).toMatchObject({ code: 'REPLICATION_UNAVAILABLE', message: 'publish: x' });
    expect(wrapError('add stream', apiError(10065, 400)).code).toBe('REPLICATION_CONFLICT');
    const own = new ReplicationError('REPLICATION_USAGE', 'closed');
    expect(wrapError('anything', own)).toBe(own);
  });
});

describe('JetStream wire formats', () => {
  it('reads stream, sequence and pending from a delivery reply subject (2.9 and 2.10+ forms)', () => {
    expect(parseAckReply('$JS.ACK.LIMITER_EU_WEST.node-a.1.42.40.1700000000000000000.7')).toEqual({ stream: 'LIMITER_EU_WEST', seq: 42, pending: 7 });
    expect(parseAckReply('$JS.ACK.dom.ACCHASH.LIMITER_EU_WEST.node-a.1.42.40.1700000000000000000.0.rand')).toEqual({ stream: 'LIMITER_EU_WEST', seq: 42, pending: 0 });
    expect(parseAckReply(undefined)).toBeNull();
    expect(parseAckReply('_INBOX.abc')).toBeNull();
    expect(parseAckReply('$JS.ACK.S.c.1.x.1.1.0')).toBeNull();
  });

  it('delivers each node and stream to a fixed subject outside the replication subjects', () => {
    expect(deliverSubject('eu-west', 'eu-west-1', 'LIMITER_EU_WEST_AGG')).toBe('_limiter.deliver.eu-west.eu-west-1.LIMITER_EU_WEST_AGG');
    expect(() => deliverSubject('eu-west', 'a.b', 'S')).toThrow(/invalid node id/);
  });
});
