import type { Slot } from './scheduler.js';

/** node:async_hooks's AsyncResource, looked up on first use: importing core does not load it. */
let AsyncResourceClass: typeof import('node:async_hooks').AsyncResource | undefined;

/**
 * `granted`, run in the async context it is made in (the caller's AsyncLocalStorage stores), for
 * a queued execution handed its slot inside another's release. Not AsyncResource.bind: on Node 20
 * each bind also makes two deprecate() wrappers for its `asyncResource` property, a tenth of the
 * host's CPU per queued execution in the worker-pool bench (docs/benchmarks.md).
 */
export function inCallersContext(granted: (slot: Slot) => void): (slot: Slot) => void {
  const context = callersResource('KB_QUEUED_EXECUTION');
  return (slot) => context.runInAsyncScope(granted, undefined, slot);
}

/** Runs a function in the async context its scope was made in. */
export type CallersScope = <T>(fn: () => T) => T;

/**
 * A scope of the async context it is made in (the caller's AsyncLocalStorage stores), for the
 * caller's callbacks (onLog, onEvent, onStart): a runner's messages arrive in the context its
 * thread, process or connection was made in, another caller's or none.
 */
export function callersScope(): CallersScope {
  const context = callersResource('KB_EXECUTION_CALLBACKS');
  return (fn) => context.runInAsyncScope(fn);
}

/** An AsyncResource of the async context it is made in (node:async_hooks loaded on first use). */
function callersResource(type: string): import('node:async_hooks').AsyncResource {
  return new (AsyncResourceClass ??= process.getBuiltinModule('node:async_hooks').AsyncResource)(type);
}
