/**
 * A handler's entry written without its file's extension (`./dist/run` for `./dist/run.js`, as a
 * TypeScript author writes an import): Node adds none to a path it imports, so the entry "does not
 * exist" though the build is there. Said with the file to name, instead of "is it built?".
 */
import { fileExists } from './file-exists.js';

/** What Node takes as a module file, in the order a plugin's build most often writes them. */
const MODULE_EXTENSIONS = ['.js', '.mjs', '.cjs'] as const;

/**
 * The extension that, added to the missing file `entryPath`, names one that exists, or undefined
 * (one that has an extension of its own, or none that exists with one).
 */
export async function extensionLeftOut(entryPath: string): Promise<string | undefined> {
  const base = entryPath.slice(Math.max(entryPath.lastIndexOf('/'), entryPath.lastIndexOf('\\')) + 1);
  if (base.includes('.')) return undefined;
  for (const extension of MODULE_EXTENSIONS) {
    if (await fileExists(entryPath + extension)) return extension;
  }
  return undefined;
}
