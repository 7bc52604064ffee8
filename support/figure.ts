/**
 * Figures printed by tests next to their assertions (`[figure] name: value` lines), so a test
 * run shows what was measured, not only that it passed.
 */
export function figure(name: string, value: string): void {
  console.log(`[figure] ${name}: ${value}`);
}
