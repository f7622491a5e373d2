// A host under `exactOptionalPropertyTypes`: what the request's type lets through is what
// execute() takes (checked by types.test.ts with `tsc --noEmit`).
import type { ExecutionRequest } from '@kb-labs/plugin-execution-core';

declare const tenant: { permissions?: { env?: string[] }; requestId?: string };

export const grantedByTheBackend: ExecutionRequest = { pluginId: 'p', handlerId: 'h', context: { requestId: tenant.requestId } };
export const grantedNothing: ExecutionRequest = { pluginId: 'p', handlerId: 'h', context: { permissions: {} } };
// Fields execute() reads as left out when undefined.
export const leftOut: ExecutionRequest = { pluginId: 'p', handlerId: 'h', executionId: undefined, input: undefined, context: undefined };

// @ts-expect-error refused at run time (a tenant's missing grant would run under the backend's wider one)
export const missingGrant: ExecutionRequest = { pluginId: 'p', handlerId: 'h', context: { permissions: tenant.permissions } };

// Options given as undefined are taken as left out: a host passes what it may not have.
import type { BackendOptions, ExecuteOptions } from '@kb-labs/plugin-execution-core';

declare const maybe: { timeoutMs?: number; signal?: AbortSignal; maxQueue?: number; onLog?: (entry: unknown) => void };
export const perCall: ExecuteOptions = { timeoutMs: maybe.timeoutMs, signal: maybe.signal, onLog: maybe.onLog };
export const backend: BackendOptions = { maxQueue: maybe.maxQueue, defaultTimeoutMs: maybe.timeoutMs };
