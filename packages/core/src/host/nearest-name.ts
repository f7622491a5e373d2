/**
 * The known name closest to `name` (case-insensitive edit distance), when it is close enough to be
 * a typo of it; else the shortest known name that holds it whole (`concurrency` →
 * `maxConcurrency`, `timeout` → `defaultTimeoutMs`), for a name of 5 characters or more.
 */
export function nearest(name: string, known: readonly string[]): string | undefined {
  // What a host means by it, whatever name spells closer (`idleTimeoutMs` holds "timeout" too).
  const meant = meantBy(name, known);
  if (meant !== undefined) return meant;
  let best: string | undefined;
  let bestDistance = Infinity;
  const lower = name.toLowerCase();
  for (const candidate of known) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  if (bestDistance <= typoEdits(lower.length)) return best;
  if (lower.length < 5) return undefined;
  const holding = known.filter((candidate) => candidate.toLowerCase().includes(lower));
  return holding.sort((a, b) => a.length - b.length)[0] ?? nearestByTail(lower, known);
}

/**
 * The shortest known name whose last words (`concurrency` of `maxConcurrency`) are a typo of
 * `lower` (`concurency`): one or two edits, by their length.
 */
function nearestByTail(lower: string, known: readonly string[]): string | undefined {
  const near = known.filter((candidate) =>
    tailsOf(candidate).some((tail) => tail.length >= 6 && editDistance(lower, tail) <= Math.max(1, Math.floor(tail.length / 6))),
  );
  return near.sort((a, b) => a.length - b.length)[0];
}

/** `maxConcurrency` → `concurrency`; `perPluginConcurrency` → `pluginconcurrency`, `concurrency`. */
function tailsOf(name: string): string[] {
  const tails: string[] = [];
  for (let i = 1; i < name.length; i++) {
    if (name[i]! >= 'A' && name[i]! <= 'Z') tails.push(name.slice(i).toLowerCase());
  }
  return tails;
}

/** The known option a host means by `name` when it is another's (MEANT), whatever is spelt nearer. */
export function meantBy(name: string, known: readonly string[]): string | undefined {
  const meant = MEANT[name.toLowerCase()];
  return meant !== undefined && known.includes(meant) ? meant : undefined;
}

/** `; did you mean "<the nearest known name>"?`, or '' when none is near `name`. */
export function didYouMean(name: string, known: readonly string[]): string {
  const near = nearest(name, known);
  return near ? `; did you mean "${near}"?` : '';
}

/** The first own key of `given` that `known` does not hold. */
export function firstUnknownKey(given: object, known: readonly string[]): string | undefined {
  return Object.keys(given).find((key) => !known.includes(key));
}

/**
 * Names a host writes for an option that is spelt otherwise, and another option's name is nearer,
 * or that it brings from another pool (piscina, workerpool, execa): the option here that does that.
 */
const MEANT: Record<string, string> = {
  timeout: 'defaultTimeoutMs',
  timeoutms: 'defaultTimeoutMs',
  maxworkers: 'maxThreads',
  minworkers: 'minThreads',
  abortsignal: 'signal',
  onprogress: 'onEvent',
  env: 'baseEnv',
};

/**
 * The edits a typo of a name this long may have: two (a quarter of a long one), but one for a name
 * of up to 4 letters, of which two edits leave too little (`foo` is no typo of `pool`, nor `port`).
 */
function typoEdits(length: number): number {
  return length <= 4 ? 1 : Math.max(2, Math.floor(length / 4));
}

/** Edits from `a` to `b`, two letters swapped counting as one (`rnu` is one edit from `run`). */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, before[j - 2]! + 1);
    }
    [before, previous] = [previous, row];
  }
  return previous[b.length]!;
}

/**
 * The message for a key an options object does not take: where it goes instead (`elsewhere`, a
 * whole phrase), else "unknown option", with the near known name when there is one.
 */
export function unknownKeyMessage(elsewhere: string | undefined, near: string | undefined): string {
  return `${elsewhere ?? 'unknown option'}${near ? `; ${elsewhere ? 'or ' : ''}did you mean "${near}"?` : ''}`;
}
