/**
 * fast-check settings shared by every property test.
 *
 * - `FC_RUNS` sets the number of runs (default 1000, the floor the issue asks for).
 * - `FC_SEED` (and optionally `FC_PATH`) replays a failure: fast-check prints both when a
 *   property fails, e.g. `FC_SEED=-1234 FC_PATH="12:3:0" npx vitest run test/crdt`.
 *
 * On failure the error message always carries the seed, so a CI log is enough to replay it.
 */
import fc from 'fast-check';

export const DEFAULT_RUNS = 1000;

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return v;
}

/** Runs per property: FC_RUNS, or 1000. */
export function fcRuns(): number {
  const runs = envInt('FC_RUNS');
  if (runs !== undefined && runs < 1) throw new Error(`FC_RUNS must be ≥ 1, got ${runs}`);
  return runs ?? DEFAULT_RUNS;
}

/** Parameters for `fc.assert`: numRuns from FC_RUNS, seed/path from FC_SEED/FC_PATH when set. */
export function fcParams<T>(overrides: fc.Parameters<T> = {}): fc.Parameters<T> {
  const params: fc.Parameters<T> = { numRuns: fcRuns(), ...overrides };
  const seed = envInt('FC_SEED');
  if (seed !== undefined) {
    params.seed = seed;
    const path = process.env.FC_PATH;
    if (path) params.path = path;
  }
  return params;
}

/**
 * `fc.assert` with the shared parameters. fast-check's report already names the seed and path;
 * the message is prefixed with the env line that replays it.
 */
export function check<Ts extends [unknown, ...unknown[]]>(
  property: fc.IProperty<Ts>,
  overrides: fc.Parameters<Ts> = {},
): void {
  const params = fcParams<Ts>(overrides);
  const details = fc.check(property, params);
  if (details.failed) {
    const replay = `FC_SEED=${details.seed}` + (details.counterexamplePath ? ` FC_PATH="${details.counterexamplePath}"` : '');
    throw new Error(`Property failed; replay with: ${replay}\n${fc.defaultReportMessage(details)}`, {
      cause: details.errorInstance,
    });
  }
}

/** A small deterministic PRNG for tests that need a repeatable `random` (shared with the bench). */
export { mulberry32 } from '../../support/random.ts';

/** `check` for async properties (fc.asyncProperty): same parameters and replay line. */
export async function checkAsync<Ts extends [unknown, ...unknown[]]>(
  property: fc.IAsyncProperty<Ts>,
  overrides: fc.Parameters<Ts> = {},
): Promise<void> {
  const params = fcParams<Ts>(overrides);
  const details = await fc.check(property, params);
  if (details.failed) {
    const replay = `FC_SEED=${details.seed}` + (details.counterexamplePath ? ` FC_PATH="${details.counterexamplePath}"` : '');
    throw new Error(`Property failed; replay with: ${replay}\n${fc.defaultReportMessage(details)}`, {
      cause: details.errorInstance,
    });
  }
}
