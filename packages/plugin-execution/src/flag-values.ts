import { parseArgs } from 'node:util';
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

/**
 * The command line with a negative number given to a flag that takes a value (`--timeout -5`)
 * written as `--timeout=-5`: parseArgs takes `-5` for a short option and says the argument is
 * "ambiguous"; so written, the flag's own check says what it takes.
 */
export function joinNegativeValues(argv: readonly string[], options: Readonly<Record<string, { type: 'string' | 'boolean' }>>): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    // After `--` every word is a positional, as typed.
    if (arg === '--') return [...joined, ...argv.slice(i)];
    const next = argv[i + 1];
    const name = arg.startsWith('--') && !arg.includes('=') ? arg.slice(2) : undefined;
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else joined.push(arg);
  }
  return joined;
}

/**
 * The first flag that takes one value given more than once (`--input a --input b`): parseArgs
 * keeps the last without a word, where the first may be the one meant. Or two flags reading
 * standard input (`--input @- --grant @-`): it is read once.
 */
export function repeatedFlagMessage(argv: readonly string[], options: Readonly<Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>): string | undefined {
  const seen = new Set<string>();
  const fromStdin: string[] = [];
  for (const token of parseArgs({ args: [...argv], allowPositionals: true, strict: false, tokens: true, options }).tokens) {
    if (token.kind !== 'option' || options[token.name]?.type !== 'string') continue;
    const { name, value } = token;
    if (seen.has(name) && !options[name]!.multiple) return `--${name} is given more than once: give it once`;
    seen.add(name);
    if (value === '@-') fromStdin.push(`--${name}`);
  }
  return fromStdin.length > 1 ? `${fromStdin.join(' and ')} both read standard input (@-), which is read once: give one of them a file (@<file>) or the text itself` : undefined;
}

/**
 * A `--workspace-root` that starts with a `~` the shell left as typed (quoted, or after `=` in
 * sh): taken as it is, it would make a folder named "~" in the working directory (which a later
 * `rm -rf ~` meant for it would take for the home folder). Refused, saying what to give.
 */
export function unexpandedHomeMessage(values: Record<string, unknown>): string | undefined {
  const root = values['workspace-root'];
  if (typeof root !== 'string' || !root.startsWith('~')) return undefined;
  return `--workspace-root ${JSON.stringify(root)} starts with a ~ the shell did not expand (it was quoted, or came after "="): give the path itself${/^~(\/|$)/.test(root) ? ` (${root.replace('~', '$HOME')})` : ''}, or ./${root} for a folder named so`;
}
