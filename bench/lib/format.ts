/** Number formatting for the benchmark tables (the statistics themselves: support/stats.ts). */

/** 1234567 → "1.23 M", 45678 → "45.7 k". */
export function si(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)} k`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(2)} k`;
  return n.toFixed(n >= 100 ? 0 : 1);
}

export function ms(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  return n >= 100 ? `${n.toFixed(0)} ms` : n >= 10 ? `${n.toFixed(1)} ms` : `${n.toFixed(2)} ms`;
}

export function ratio(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(2)}×` : String(n);
}

export function round(n: number, digits = 3): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** 1000000 → "1 M", 100000 → "100 k", 1 → "1". */
export function count(n: number): string {
  if (n >= 1e6 && n % 1e6 === 0) return `${n / 1e6} M`;
  if (n >= 1e3 && n % 1e3 === 0) return `${n / 1e3} k`;
  return String(n);
}
