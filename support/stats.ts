/**
 * Order statistics for the tests' figures and the bench tables: nearest-rank percentiles,
 * median, min and max. An empty input gives NaN (min/max: ±Infinity).
 */

/** Nearest-rank percentile of an ascending-sorted array (`p` in 0..100). */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sorted[rank - 1];
}

/** Nearest-rank percentile of unsorted numbers (`p` in 0..100); `xs` is not modified. */
export function percentile(xs: readonly number[], p: number): number {
  return percentileSorted([...xs].sort((a, b) => a - b), p);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function min(xs: readonly number[]): number {
  return xs.reduce((a, b) => (b < a ? b : a), Infinity);
}

export function max(xs: readonly number[]): number {
  return xs.reduce((a, b) => (b > a ? b : a), -Infinity);
}
