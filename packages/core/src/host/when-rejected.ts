/**
 * Hands the rejection of what a host's callback returned to `failed`, when it is a thenable: any,
 * not only `instanceof Promise` (a promise of another realm, made in a `vm` context or a test
 * runner's sandbox, is none), so that it is never left unhandled, which Node makes the host's end.
 */
export function whenRejected(returned: unknown, failed: (error: unknown) => void): void {
  if (typeof (returned as PromiseLike<unknown> | null | undefined)?.then === 'function') (returned as PromiseLike<unknown>).then(undefined, failed);
}
