// Node's built-ins by getBuiltinModule, taken when this module loads (see caller-paths.ts).
const fs = process.getBuiltinModule('node:fs');

/**
 * The working directory, when Node cannot name it: `process.cwd()` gives its path as text, each
 * byte that is not UTF-8 as U+FFFD ("�"), which is the path of another folder, or of none. A
 * relative path resolved from it names the wrong place: a plugin folder there "does not exist", a
 * workspace root would be made as a new tree beside the real one. undefined when the working
 * directory is named as it is (the file system asked only when its path has a U+FFFD).
 */
export function unnamedWorkingDirectory(): string | undefined {
  const cwd = process.cwd();
  return cwd.includes('\ufffd') && !fs.existsSync(cwd) ? cwd : undefined;
}

/** Why a relative path cannot be used from `cwd` (unnamedWorkingDirectory), and what to do. */
export function unnamedWorkingDirectoryProblem(cwd: string): string {
  return (
    `the working directory's path is not UTF-8 text (Node reads it as ${JSON.stringify(cwd)}, a "\ufffd" for each byte it cannot read, ` +
    'which names no folder), so no path under it can be named: rename the folder whose name is not UTF-8, or work from another directory'
  );
}
