/**
 * Shapes shared by every benchmark section. A section measures figures (ours and the peers',
 * in the same run) and turns them into checks against the targets of the issue that asked for
 * them. `bench/run.ts` prints them as tables or as one JSON document.
 */

export interface BenchContext {
  /** Short smoke run: fewer rounds, shorter loads, smaller key counts. Figures are not representative. */
  readonly quick: boolean;
  /** Repository root (children run with it as working directory). */
  readonly root: string;
  /** Where CPU profiles of child processes go (`--profile DIR`), or undefined. */
  readonly profileDir: string | undefined;
  /** Progress line on stderr (never on stdout, which carries the tables or the JSON document). */
  log(message: string): void;
}

/** One measured figure (ours or a peer's). */
export interface Figure {
  /** Stable machine id, e.g. `decide.ours.1key.admitted`. */
  id: string;
  /** Human label for the tables. */
  label: string;
  value: number;
  /** `ops/s`, `req/s`, `checks/s`, `ms`, `B/key`, … */
  unit: string;
  /** Secondary numbers (p50/p99, min/max of rounds, counts…), keyed by name with a unit suffix. */
  detail?: Record<string, number>;
  /** The value of every round, in run order (JSON output only). */
  rounds?: number[];
}

/**
 * A comparison against a target: `measured op target`, e.g. ratio ≥ 1.5 or p99 excess ≤ 1 ms.
 * A check without a target is informational (printed as `info`).
 */
export interface Check {
  id: string;
  label: string;
  /** Our figure, formatted (shown side by side with the peer's). */
  ours: string;
  /** The peer's figure (or the reference), formatted; '' when there is none. */
  peer: string;
  measured: number;
  /** `×` for ratios, else the unit of `measured`. */
  unit: string;
  target?: { op: '>=' | '<='; value: number };
  /** undefined for informational checks. */
  pass?: boolean;
}

export interface SectionResult {
  figures: Figure[];
  checks: Check[];
  /** How the figures were measured, caveats, rows skipped and why. */
  notes: string[];
}

export interface Section {
  /** Used by `--only` and as the JSON key. */
  readonly id: string;
  readonly title: string;
  /** Rough wall time in seconds (full and quick), printed before the run. */
  readonly estimateS: { full: number; quick: number };
  run(ctx: BenchContext): Promise<SectionResult>;
}

/** Builds a check and evaluates it. */
export function check(
  id: string,
  label: string,
  ours: string,
  peer: string,
  measured: number,
  unit: string,
  target?: { op: '>=' | '<='; value: number },
): Check {
  const pass = target === undefined ? undefined : Number.isFinite(measured) && (target.op === '>=' ? measured >= target.value : measured <= target.value);
  return { id, label, ours, peer, measured, unit, ...(target ? { target } : {}), ...(pass === undefined ? {} : { pass }) };
}
