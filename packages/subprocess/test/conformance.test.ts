import { describeConformance } from '@kb-labs/plugin-execution-conformance';
import { SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';

// A child process per execution: it can be killed mid-loop, its crash is not the host's, and
// its globals die with it. The whole suite applies; its file system is sandboxed by Node's
// permission model, which refuses even to create a symlink.
describeConformance('subprocess', (options) => new SubprocessBackend(options), {
  preemptsSyncCode: true,
  isolatesCrashes: true,
  isolatesGlobals: true,
  sandboxesFs: true,
  channelOnFd3: true,
});
