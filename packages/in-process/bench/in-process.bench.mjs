// In-process overhead: a direct call of the handler function vs execute() on the in-process
// backend (no workspace), and WorkspaceManager acquire+release, measured side by side. The
// overhead's yardstick is what any boundary costs at least: structuredClone of the input plus of
// the result (the in-process backend clones both, so a handler sees what it would elsewhere),
// timed in the same rounds; the target is overhead <= 1.0 x that.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkspaceManager } from '@kb-labs/plugin-execution-core';
import { InProcessBackend } from '@kb-labs/plugin-execution-in-process';
import { heading, percentile, report, timeEach } from '../../../scripts/bench-report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pluginDir = path.join(here, 'fixtures', 'echo');
const { default: echo } = await import(path.join(pluginDir, 'echo.mjs'));
const N = 20_000;
const input = { args: ['--verbose'], n: 1 };

const backend = new InProcessBackend({ plugins: [pluginDir], workspace: false });
const request = { pluginId: '@bench/echo', handlerId: 'echo', input };
const first = await backend.execute(request);
if (!first.ok) throw first.error;

// Interleave rounds so both sides see the same machine noise.
const direct = [];
const viaBackend = [];
const clones = [];
const result = first.data;
for (let round = 0; round < 5; round++) {
  direct.push(...(await timeEach(() => echo(input, undefined), N / 5, 2000)));
  viaBackend.push(...(await timeEach(() => backend.execute(request), N / 5, 2000)));
  clones.push(...(await timeEach(() => (structuredClone(input), structuredClone(result)), N / 5, 2000)));
}
const directP50 = percentile(direct, 0.5) * 1000;
const backendP50 = percentile(viaBackend, 0.5) * 1000;
const cloneP50 = percentile(clones, 0.5) * 1000;
const overhead = backendP50 - directP50;
heading('in-process backend (echo handler, no workspace)');
report('in-process: direct handler call p50', directP50, 'µs');
report('in-process: execute() p50', backendP50, 'µs');
report('in-process: execute() overhead per call p50', overhead, 'µs');
report('structuredClone(input) + structuredClone(result) p50', cloneP50, 'µs');
report('in-process: overhead / the two clones', overhead / cloneP50, 'x', { op: '<=', value: 1.0 });
await backend.shutdown();

const root = await mkdtemp(path.join(os.tmpdir(), 'kb-bench-ws-'));
const manager = new WorkspaceManager({ root });
let i = 0;
const ws = await timeEach(async () => {
  const lease = await manager.acquire(`bench-${i++}`);
  await lease.release();
}, 3000, 300);
heading('workspace');
report('workspace: acquire+release p50', percentile(ws, 0.5) * 1000, 'µs', { op: '<=', value: 1000 });
await rm(root, { recursive: true, force: true });
