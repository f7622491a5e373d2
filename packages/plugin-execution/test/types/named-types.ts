// The types the umbrella's own option types and PluginRegistry's results are made of can be
// named from the umbrella (a host library's declarations name them).
import type { InProcessBackendOptions, LocalBackendType, NatsConnectionOptions, PluginLoadFailure, QueueBackendOptions, ResolvedHandler, SandboxMode, SubprocessBackendOptions, WorkerPoolBackendOptions } from '@kb-labs/plugin-execution';

export const sandbox: SandboxMode = 'required';
export const threads: WorkerPoolBackendOptions = { maxThreads: 2 };
export const child: SubprocessBackendOptions = { sandbox };
export const inProcess: InProcessBackendOptions = { workspace: false };
export const nats: NatsConnectionOptions = { servers: 'nats://127.0.0.1:4222' };
export const queue: QueueBackendOptions = { connection: nats, pool: 'p' };
export const local: LocalBackendType = 'worker-pool';
export const failed = (failure: PluginLoadFailure): string => failure.error.message;
export const entryOf = (resolved: ResolvedHandler): string => resolved.entryPath;
// @ts-expect-error not a sandbox mode
export const wrong: SandboxMode = 'sometimes';
