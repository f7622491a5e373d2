/**
 * The first flag given an empty value (`--pool ""`, `--nats "$UNSET_VARIABLE"`), as it was
 * written: an empty string is no value, and would otherwise silently mean the flag's default.
 */
export function emptyFlag(values: Record<string, unknown>): string | undefined {
  for (const [name, value] of Object.entries(values)) {
    if (value === '' || (Array.isArray(value) && value.includes(''))) return `--${name}`;
  }
  return undefined;
}

/** A usage error's words for an empty flag value. */
export function emptyFlagMessage(flag: string): string {
  return `${flag} needs a value, got an empty string`;
}
