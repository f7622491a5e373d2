import type { RegisteredPlugin } from '@kb-labs/plugin-execution-core';

/** The debounce the plugin watcher's tests watch with: short, so that a reload follows a change quickly. */
export const DEBOUNCE_MS = 30;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check()` holds; throws if it does not within five seconds (a "does not hang" bound, not a speed). */
export async function waitFor(check: () => boolean): Promise<void> {
  const until = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

/** A registered plugin at `root`, as the watcher is given one (`manifest` adds to a minimal manifest). */
export function registeredAt(root: string, id = '@t/w', manifest: object = {}): RegisteredPlugin {
  return { id, root, generation: 0, moduleKey: 0, manifest: { id, version: '1', handlers: {}, ...manifest } as never };
}
