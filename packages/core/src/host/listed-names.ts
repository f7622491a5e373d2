/** How many registered names a message lists at most. */
export const MAX_LISTED_NAMES = 20;

/**
 * Names for a message (`a, b, c`), the first MAX_LISTED_NAMES of them and how many more there
 * are (`where` says where every one is): a host with thousands of plugins made each
 * HANDLER_NOT_FOUND for an unknown id a message of ~100 KB naming all of them (and ~250 µs of
 * its CPU), which every log line of such a refusal carried.
 */
export function listedNames(names: readonly string[], where: string): string {
  if (names.length <= MAX_LISTED_NAMES) return names.join(', ');
  return `${names.slice(0, MAX_LISTED_NAMES).join(', ')}; and ${names.length - MAX_LISTED_NAMES} more (${where})`;
}
