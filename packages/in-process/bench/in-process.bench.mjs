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

// CPU per execution under a load that changes: many in flight, then one at a time, then many
// again. A host's collections of live executions once kept every execution's objects past the
// young-generation collections once the load had changed (core's live-list.ts): every phase after
// the first then cost several times as much.
async function cpuPerExecution(inFlight, total) {
  let started = 0;
  const before = process.cpuUsage();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (started < total) {
        started++;
        const r = await backend.execute(request);
        if (!r.ok) throw r.error;
      }
    }),
  );
  const used = process.cpuUsage(before);
  return (used.user + used.system) / total;
}
heading('in-process backend: CPU per execution as the load changes (echo, 50,000 each)');
const phases = [
  ['64 in flight', 64],
  ['then one at a time', 1],
  ['then 64 in flight again', 64],
];
for (const [label, inFlight] of phases) report(`in-process: CPU per execution, ${label}`, await cpuPerExecution(inFlight, 50_000), 'µs');
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
