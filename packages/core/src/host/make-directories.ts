import path from 'node:path';

// As workspace-manager.ts: node:fs/promises on first use, not at import.
const fs = process.getBuiltinModule('node:fs');

/**
 * `mkdir -p`, one level at a time. Not `fs.mkdir({ recursive: true })`: under a pseudo file system
 * that refuses new entries with ENOENT (a root under /proc), Node's retries it for ever. `dir` gets
 * `mode`; a missing folder above it gets `ancestorsMode` (as `mkdir -p` would, within the umask):
 * folders above a private root closed to every other user would lock out whoever may pass through
 * to it (the subprocess sandbox's own user).
 */
export async function makeDirectories(dir: string, mode: number, ancestorsMode = 0o755): Promise<void> {
  try {
    await fs.promises.mkdir(dir, { mode });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    const parent = path.dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw error;
    await makeDirectories(parent, ancestorsMode, ancestorsMode);
    // The parent exists now: a second ENOENT is the file system's refusal, and is said.
    await fs.promises.mkdir(dir, { mode }).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST') throw again;
    });
  }
}
