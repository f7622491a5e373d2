export { SubprocessBackend, type SubprocessBackendOptions, type SubprocessRunnerStats } from './subprocess-backend.js';
export type { CrashReason } from './crash.js';
export { DEFAULT_MAX_FRAME_BYTES } from './framing.js';
export { DEFAULT_BASE_ENV } from './child-env.js';
export { detectPermissionFlag, type PermissionFlag } from './permission-flags.js';
export type { SandboxMode, SandboxUser } from './sandbox.js';
