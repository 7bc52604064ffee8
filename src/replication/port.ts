/**
 * The transport port: what the replicator needs from a message bus. It belongs to the
 * replicator; the JetStream transport (./jetstream/) and the in-memory bus (./memory-bus.ts)
 * implement it, and test/replication/transport-contract.ts holds the suite both pass.
 *
 * The contract, in short:
 * - `publish` stores one batch durably on this node's own channel (or throws a
 *   ReplicationError); a retried publish with the same `msgId` may be stored once or twice.
 * - `consume` hands every stored batch of every node (this node's own included) to the
 *   handler, per stream in stream order, each stream's sequence strictly increasing, and
 *   resumes after `startAfterSeq` of each stream. Delivery is at least once: a batch may
 *   come again after a reconnect; the handler must be idempotent (max-merge is).
 * - A handler that throws a CodecError refuses the batch for good (never redelivered); any
 *   other error is retried.
 * - `connected` (and `status().connected`) is false while the bus cannot be reached; the `reconnect` event
 *   fires when it can again.
 */
import type { EventEmitter } from 'node:events';

/** One stored batch handed to the consumer. */
export interface ReplicatedMessage {
  data: Uint8Array;
  /** The node whose channel carried it (the only node allowed to publish there), if known. */
  origin: string | undefined;
  /** The stream it was read from (positions are kept per stream). */
  stream: string;
  /** Sequence in `stream`: strictly increasing per stream. Persist it to resume with `startAfterSeq`. */
  streamSeq: number;
  /** Batches still waiting for this consumer in `stream` after this one (0 = caught up). */
  pending: number;
}

export type MessageHandler = (msg: ReplicatedMessage) => void;

export interface ConsumeOptions {
  /** Per stream, the last sequence already applied: delivery resumes right after it (0 or absent = from the start). */
  startAfterSeq?: Record<string, number>;
}

export interface StreamProgress {
  /** Highest sequence handed to the handler (or refused); 0 = none yet. */
  lastSeq: number;
  /** When `lastSeq` advanced (ms since epoch, wall clock). */
  lastAt: number | null;
  /** Batches still waiting as of the last one. */
  pending: number | null;
}

export interface TransportStatus {
  connected: boolean;
  /** Server connected to (null when not connected, or for the in-memory bus). */
  server: string | null;
  /** Streams and consumers exist. */
  streamsReady: boolean;
  consuming: boolean;
  reconnects: number;
  /** Consumers restarted because they received nothing while their stream had more. */
  stalls: number;
  lastError: { message: string; code?: string; at: number } | null;
  streams: Record<string, StreamProgress>;
}

export interface TransportEvents {
  disconnect: [server: string];
  reconnect: [server: string];
  /** A failure the transport handled itself (retrying). */
  failure: [err: Error];
  /** A batch the handler refused was dropped for good. */
  poison: [event: { stream: string; streamSeq: number; origin: string | undefined; error: unknown }];
}

export interface Transport extends EventEmitter<TransportEvents> {
  /** This node. */
  readonly nodeId: string;
  /** Whether the bus can be reached now (cheap: read on every shipping round). */
  readonly connected: boolean;
  /** The streams this node reads (positions are kept per stream). */
  streams(): string[];
  /** Connect and create what is missing (streams, consumers). Idempotent; retry it on failure. */
  start(): Promise<void>;
  /** Store one batch on this node's channel; resolves once it is durable in the bus. */
  publish(bytes: Uint8Array, msgId: string): Promise<void>;
  /** Start handing stored batches to `handler` (see the contract above). Call once, after start. */
  consume(handler: MessageHandler, opts?: ConsumeOptions): Promise<void>;
  /** Per stream this node reads, its last sequence now. */
  lastSequences(): Promise<Record<string, number>>;
  status(): TransportStatus;
  close(): Promise<void>;
}
