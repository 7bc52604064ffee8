/**
 * Types of the replicated state. Everything in crdt/ is pure: no I/O, no clock reads;
 * time is always a parameter (`now`, milliseconds since the Unix epoch).
 */

/** A node id: stable name of one limiter node (e.g. "us-east-1"), optionally with an incarnation suffix. */
export type NodeId = string;

/**
 * A counter scope: one rule limit. Derived from the rule id, algorithm and slot geometry so that
 * nodes with the same configuration agree on it and incompatible configurations never mix.
 */
export type ScopeId = string;

/**
 * One PN-counter cell: the contribution of one node to one (scope, key, slot).
 * `p` is admitted cost, `n` is refunded cost. Both only ever grow; merge takes the maximum of each.
 */
export interface SlotEntry {
  scope: ScopeId;
  key: string;
  /** Slot id: floor(time / slotMs), aligned to the Unix epoch so every node agrees. */
  slot: number;
  node: NodeId;
  p: number;
  n: number;
}

/** Geometry of a scope: how wide a slot is and how many slots are retained. */
export interface ScopeGeometry {
  /** Width of one slot in milliseconds. */
  slotMs: number;
  /** Number of slots retained (ring length). Slots older than `head - ringSlots + 1` are dropped. */
  ringSlots: number;
}

/** A state-based delta: absolute per-node values, so applying it twice, late or out of order changes nothing. */
export interface Delta {
  entries: SlotEntry[];
}

/** The versioned wire envelope of a delta batch. */
export interface DeltaEnvelope {
  /** Wire format version. */
  v: number;
  /** Node that produced the batch. */
  origin: NodeId;
  /** Producer-local batch sequence number (monotonic per origin incarnation). */
  seq: number;
  /** Producer's clock when the batch was cut (ms since epoch); used only to measure lag. */
  sentAt: number;
  entries: SlotEntry[];
}
