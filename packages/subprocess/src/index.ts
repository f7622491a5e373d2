export { SubprocessBackend, type SubprocessBackendOptions, type SubprocessRunnerStats } from './host/subprocess-backend.js';
export type { ChildCrashReason } from './host/crash.js';
export { DEFAULT_MAX_FRAME_BYTES } from './framing.js';
export { DEFAULT_BASE_ENV } from './host/child-env.js';
export { detectPermissionFlag, type PermissionFlag } from './host/permission-flags.js';
export type { SandboxMode, SandboxUser } from './host/sandbox.js';
