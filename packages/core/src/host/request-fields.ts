// The names execute() reads, on their own: the lazy backend copies what a caller passes by them
// before the backend's package (and request.ts, with its schemas) is loaded.

/** Every field of a request (ExecutionRequest). */
export const REQUEST_FIELDS: ReadonlySet<string> = new Set(['pluginId', 'handlerId', 'input', 'context', 'executionId']);

/** Every option execute() takes (ExecuteOptions). */
export const EXECUTE_OPTIONS: readonly string[] = ['signal', 'timeoutMs', 'onLog', 'onEvent', 'onStart', 'keepWorkspace', 'channel', 'platform', 'platformForward', 'outputPace', 'beginBy', 'traceparent'];
