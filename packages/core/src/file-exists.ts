// node:fs's callback form, by getBuiltinModule: node:fs is loaded with Node itself, node:fs/promises
// is not (~5 ms of a runner's start), and an ES import would build its ES facade.
const { access } = process.getBuiltinModule('node:fs');

/** Whether `file` (a file or a folder) is there for this process to reach. Never rejects. */
export function fileExists(file: string): Promise<boolean> {
  return new Promise((resolve) => access(file, (error) => resolve(!error)));
}
