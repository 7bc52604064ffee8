/** Parse durations such as "500ms", "1s", "1.5s", "10m", "1h", "1d" (or a number of ms). */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Milliseconds, or undefined when `v` is not a valid positive duration of whole milliseconds. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v > 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = RE.exec(v.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * UNITS[m[2]];
  return Number.isInteger(ms) && ms > 0 ? ms : undefined;
}

/** Short human form of a duration in ms ("1m", "1500ms"). */
export function formatDuration(ms: number): string {
  for (const [u, f] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % f === 0) return `${ms / f}${u}`;
  }
  return `${ms}ms`;
}
