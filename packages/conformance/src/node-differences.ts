/** Whether this Node's structured clone refuses a URL (Node 22 and later mark it as not cloneable; Node 20 makes it {}). */
export function cloneRefusesUrl(): boolean {
  try {
    structuredClone(new URL('https://example.org/'));
    return false;
  } catch {
    return true;
  }
}

/**
 * Whether a CommonJS entry is imported through an ES module that re-exports its namespace
 * (core's entry-module.ts): not on Node 20, whose loader would leave a CommonJS module's load
 * error unhandled that way, so there a module.exports with a `then` is still taken for a promise.
 */
export function commonJsEntryMayExportThen(): boolean {
  return Number(process.versions.node.split('.')[0]) >= 22;
}
