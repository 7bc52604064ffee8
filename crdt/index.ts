/** Public surface of the pure core. */
export type { NodeId, ScopeId, SlotEntry, ScopeGeometry, Delta, DeltaEnvelope } from './types.ts';
export { CrdtError, CodecError, type CodecErrorCode } from './errors.ts';
export { NodeTable } from './nodes.ts';
export { SlotWindowStore, type DrainResult } from './window.ts';
export { LimitMath, geometryOf, ALGORITHMS, type Algorithm, type LimitParams, type Geometry } from './algorithms.ts';
export { encodeDelta, decodeDelta, decodeMessage, encodeRules, utf8Length, WIRE_VERSION, RULES_KIND, CODEC_LIMITS, type RulesMessage, type ReplicatedPayload } from './codec.ts';
export {
  compareVersions,
  compareStates,
  mergeRegister,
  nextVersion,
  isLocalVersion,
  formatVersion,
  parseVersion,
  type RegisterVersion,
  type RegisterState,
} from './register.ts';
export {
  mergeCounters,
  counterValue,
  increment,
  decrement,
  counterLeq,
  countersEqual,
  EMPTY_COUNTER,
  type PN,
  type PNCounter,
} from './counter.ts';
