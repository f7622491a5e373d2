import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const coreDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The source text of the smallest backend on core's backend kit (in-process, one at a time), for
 * the child programs tests write and run as hosts of their own; it needs `kit` in scope (the
 * backend kit, imported or required under that name).
 */
export const TINY_BACKEND_SOURCE = `class TinyBackend extends kit.BaseBackend {
  constructor(options) { super('tiny', options, { concurrency: 1 }); }
  dispatch(task, control) {
    return kit.runHandler(task, { signal: new AbortController().signal, platform: {}, log: (level, message, fields) => control.log(level, message, fields), emit: () => {} });
  }
  async closeRunners() {}
  isolation() { return { requested: 'none', active: 'none', layers: [], reason: 'test' }; }
}`;

/**
 * Runs the ES module `source` as a host process of its own (PATH alone in its environment, killed
 * after 20 s) and gives the JSON of the last line it printed. The file is written in core's folder,
 * so that it resolves core by its own name and the dependencies core's tests use, then removed;
 * `name` keeps each run's file apart.
 */
export async function runHostProgram(name: string, source: string): Promise<unknown> {
  const file = path.join(coreDir, `.${name}-${process.pid}.mjs`);
  await writeFile(file, source);
  try {
    const { stdout } = await run(process.execPath, [file], { cwd: coreDir, env: { PATH: process.env.PATH ?? '' }, timeout: 20_000 });
    return JSON.parse(stdout.trim().split('\n').at(-1)!);
  } finally {
    await rm(file, { force: true });
  }
}
