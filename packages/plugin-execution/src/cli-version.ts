import { createRequire } from 'node:module';

/** `--version`, of `kb-plugin-exec` and of its `worker` command alike: printed on stdout, exit 0. */
export function printVersion(): number {
  const { version } = createRequire(import.meta.url)('../package.json') as { version: string };
  process.stdout.write(`kb-plugin-exec ${version}\n`);
  return 0;
}
