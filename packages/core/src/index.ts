/**
 * What hosts and plugin authors use. What a backend author needs besides (BaseBackend, the
 * runner protocol, output capture, option schemas) is in `@kb-labs/plugin-execution-core/backend-kit`;
 * what a runner loads without zod, in `@kb-labs/plugin-execution-core/runner`.
 */
export {
  ERROR_CLASSES,
  ERROR_CODES,
  AbortedError,
  BackendNotInstalledError,
  ExecutionError,
  HandlerError,
  HandlerNotFoundError,
  InternalError,
  PermissionDeniedError,
  QueueFullError,
  ShuttingDownError,
  TimeoutError,
  ValidationError,
  WorkerCrashedError,
  WorkspaceError,
  isErrorCode,
  isExecutionError,
  type ErrorCode,
  type ErrorOf,
  type ExecutionErrorOptions,
  type KnownExecutionError,
} from './errors.js';
export type { CrashReason, ErrorDetailsByCode, Phase, ValidationIssue } from './error-details.js';
export { deserializeError, isSerializedError, serializeError, type SerializedError } from './error-wire.js';
export { HTTP_STATUS_BY_CODE, httpStatusOf } from './http-status.js';
export type {
  BackendHealth,
  BackendState,
  BackendStats,
  BackendType,
  ExecutionBackend,
  ExecutionMeta,
  ExecutionResult,
  IExecutionBackend,
  IsolationReport,
  LatencySummary,
  ShutdownOptions,
} from './types.js';
export type { BackendOptions } from './host/backend-options.js';
export { createExecutionBackend } from './host/create-execution-backend.js';
export type { ExecutionBackendOptions, LazyExecutionBackend } from './host/lazy-backend.js';
export { BACKEND_PACKAGES, type BuiltInBackendType } from './host/backend-packages.js';
export type { ChannelBridge, ContextDescriptor, ExecuteOptions, ExecutionEvent, ExecutionRequest, LogEntry } from './host/request.js';
export { MANIFEST_FILE, pluginManifestSchema, type ChannelSpec, type HandlerSpec, type PluginManifest, type PluginManifestInput } from './host/manifest.js';
export { mergePermissions, missingPermissions, permissionSpecSchema, type PermissionSpec } from './host/permissions.js';
export { PluginRegistry, type PluginLoadFailure, type PluginReloadListener, type PluginSource, type RegisteredPlugin, type ResolvedHandler } from './host/plugin-registry.js';
export type { PluginReloadEvent, WatchOptions } from './host/plugin-watcher.js';
export { WorkspaceManager, type SweepResult, type WorkspaceLease, type WorkspaceManagerOptions } from './host/workspace-manager.js';
export type { Platform } from './host/platform-gateway.js';
export { CALLS_IN_FLIGHT } from './runner/call-window.js';
export { MAX_HELD_CALL_BYTES } from './host/held-calls.js';
export {
  defineHandler,
  type ChannelContext,
  type DefinedHandler,
  type HandlerContext,
  type HandlerDefinition,
  type HandlerLogger,
  type HostPlatform,
  type PlatformServices,
} from './define-handler.js';
