/** Whether this Node's structured clone refuses a URL (Node 22 and later mark it as not cloneable; Node 20 makes it {}). */
export function cloneRefusesUrl(): boolean {
  try {
    structuredClone(new URL('https://example.org/'));
    return false;
  } catch {
    return true;
  }
}
