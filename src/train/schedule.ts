/** Learning-rate schedule: linear warm-up from 0, then linear decay to 0 (the lr of step 0 is 0). */
export function linearSchedule(step: number, base: number, warmup: number, total: number): number {
  if (step < warmup) return (base * step) / Math.max(1, warmup);
  return base * Math.max(0, (total - step) / Math.max(1, total - warmup));
}
