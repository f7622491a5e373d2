// Shared reporting for every package's bench/*.bench.mjs: a readable line per figure, and with
// --json one JSON object per line ({ name, value, unit }) so figures can be tracked over time.
import { performance } from 'node:perf_hooks';

export const jsonMode = process.argv.includes('--json') || process.env.BENCH_JSON === '1';

/**
 * Report one figure. `target` is optional: `{ op: '<=' | '>=', value }` prints PASS/MISS beside it.
 */
export function report(name, value, unit, target) {
  const rounded = Math.round(value * 1000) / 1000;
  if (jsonMode) {
    process.stdout.write(`${JSON.stringify({ name, value: rounded, unit })}\n`);
    return;
  }
  let verdict = '';
  if (target) {
    const pass = target.op === '<=' ? value <= target.value : value >= target.value;
    verdict = `   target ${target.op} ${target.value}  ${pass ? 'PASS' : 'MISS'}`;
  }
  process.stdout.write(`  ${name.padEnd(58)} ${String(rounded).padStart(12)} ${unit}${verdict}\n`);
}

export function heading(text) {
  if (!jsonMode) process.stdout.write(`\n${text}\n`);
}

/** Percentile of an array of numbers (sorted copy). */
export function percentile(samples, q) {
  const sorted = Float64Array.from(samples).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Time `fn` `n` times sequentially (after `warmup` runs); returns per-call milliseconds. */
export async function timeEach(fn, n, warmup = Math.min(200, n)) {
  for (let i = 0; i < warmup; i++) await fn(i);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out[i] = performance.now() - t;
  }
  return out;
}
