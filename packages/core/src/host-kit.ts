/**
 * The host kit (`@kb-labs/plugin-execution-core/host-kit`): the part of the backend kit that a
 * package adding to the host without running handlers needs (channels, the umbrella): options
 * parsed on first use, backends loaded by name, errors from untrusted values. It is its own
 * entry so that importing those packages does not load the backend machinery (about a third of
 * a host's start-up, docs/benchmarks.md); the backend kit re-exports all of it.
 */
export { DEFAULT_TIMEOUT_MS, MAX_TIMER_MS, option, outputLimits, parseOptions } from './host/backend-options.js';
export { nearest } from './host/nearest-name.js';
export { channelPathParts, repeatedParam, type ChannelPathParts } from './host/channel-path.js';
export { lazySchema, type Zod } from './host/lazy-zod.js';
export { lazyExecutionBackend } from './host/lazy-backend.js';
export { backendLoader, backendLoadError, installCommand, lockFileManager, type BackendConstructor, type BackendLoader } from './host/backend-packages.js';
export { BACKEND_OWN_OPTIONS, backendTakes, isBackendOption, isExecuteOptionOrRequestField } from './host/backend-own-options.js';
export { handlerThrew, toHandlerError, toInternalError } from './errors.js';
export { formatPath, issuesOf, parseWith, validationError } from './validation.js';
export { settlesWithin } from './settles-within.js';
// Timers a host's fake timers installed later do not replace (real-timers.ts): time limits and grace periods use these.
export { clearImmediate, clearInterval, clearTimeout, monotonicNow, setImmediate, setInterval, setTimeout } from './real-timers.js';
export { checkTimeoutOptions } from './host/shutdown-hooks.js';
export { jsonSyntaxProblem } from './host/json-syntax.js';
export { makeDirectories } from './host/make-directories.js';
export { removeTreeSync } from './host/remove-tree-sync.js';
export { checkContextDescriptor } from './host/context-descriptor.js';
export { processShared } from './host/process-shared.js';
export { whenRejected } from './host/when-rejected.js';
export { MAX_PLUGIN_ID_LENGTH } from './host/manifest.js';
export { unnamedWorkingDirectory, unnamedWorkingDirectoryProblem } from './host/working-directory.js';
