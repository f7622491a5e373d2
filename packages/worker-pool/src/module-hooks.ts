/**
 * Thread side: module loader hooks a handler registers on its thread (`module.registerHooks`, Node
 * 22.15 and later; `module.register`). They load every later module of the thread through the
 * plugin's code: another plugin's entry, loaded there next, was replaced by the first plugin's
 * code and ran with the second one's environment (measured on Node 22 and 24). Node can neither
 * list nor remove them, so a thread counts as tampered once a handler registered any: both are
 * wrapped here, before any plugin code runs (and Node's ES module view of `node:module` brought in
 * line), and a wrapper replaced or removed counts too.
 */
import { watchCalls } from './call-watch.js';
import { closeHooksThreadInspector } from './inspector-lock.js';

const HOOK_FUNCTIONS = ['registerHooks', 'register'] as const;

export interface ModuleHooksWatch {
  /** Whether a handler registered hooks on this thread (or took a wrapper away). */
  registered(): boolean;
}

export function watchModuleHooks(): ModuleHooksWatch {
  const moduleApi = process.getBuiltinModule('node:module') as unknown as Record<string, unknown> & { syncBuiltinESMExports(): void };
  // Before the watch, so that a call of the plugin's is what the watch sees (inspector-lock.ts).
  closeHooksThreadInspector(moduleApi);
  const registered = watchCalls(moduleApi, HOOK_FUNCTIONS);
  moduleApi.syncBuiltinESMExports();
  return { registered };
}
