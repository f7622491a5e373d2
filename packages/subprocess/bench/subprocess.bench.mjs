// Subprocess backend start-up cost, against the floor it cannot beat: a raw fork() of a bare
// Node script that handshakes with its parent and exits, started with the same environment.
// Each figure is taken with the bubblewrap sandbox (the default where it works) and without it
// (`sandbox: 'off'`), side by side in the same rounds.
//   - cold: one fresh child per execution (prespawn 0), the default workspace lease included;
//   - warm: prespawn 1, sequential executions, each started once the spare has been refilled
//     (the wait for the refill is not timed: it is what a spare buys when requests arrive
//     slower than a child boots). Back-to-back executions with no pause are reported too.
// Rounds interleave the contenders so that they share the machine's noise.
import { fork } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_BASE_ENV, SubprocessBackend } from '@kb-labs/plugin-execution-subprocess';
import { heading, percentile, report } from '../../../scripts/bench-report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pluginDir = path.join(here, 'fixtures', 'echo');
// An ES module, as the echo handler is: both sides bring up Node's ES module loader once.
const bareScript = path.join(here, 'fixtures', 'bare-handshake.mjs');
const ROUNDS = 60;
const WARMUP = 5;
const request = { pluginId: '@bench/echo', handlerId: 'echo', input: { args: ['--verbose'], n: 1 } };

// The environment the backend gives its children (its default allow-list, present values only).
const env = {};
for (const name of DEFAULT_BASE_ENV) if (process.env[name] !== undefined) env[name] = process.env[name];

function rawFork() {
  return new Promise((resolve, reject) => {
    const child = fork(bareScript, [], { env, execArgv: [], stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    let ready = false;
    child.on('message', (m) => (ready = m?.type === 'ready'));
    child.on('error', reject);
    child.on('exit', () => (ready ? resolve() : reject(new Error('bare child exited without its ready message'))));
  });
}

async function timed(fn) {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function execute(backend) {
  const result = await backend.execute(request);
  if (!result.ok) throw result.error;
}

async function spareReady(backend) {
  const until = Date.now() + 10_000;
  while (((await backend.stats()).runners?.spares?.ready ?? 0) < 1) {
    if (Date.now() > until) throw new Error('no spare became ready within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const modes = {
  // Targets: without the sandbox as before; with it, what bubblewrap's own start (~10-20 ms) allows.
  off: { label: 'no sandbox', cold: 1.25, warm: 0.3 },
  required: { label: 'bubblewrap sandbox', cold: 1.5, warm: 0.35 },
};
const backends = {};
for (const sandbox of Object.keys(modes)) {
  backends[sandbox] = {
    cold: new SubprocessBackend({ plugins: [pluginDir], sandbox }),
    warm: new SubprocessBackend({ plugins: [pluginDir], prespawn: 1, sandbox }),
  };
}
for (let i = 0; i < WARMUP; i++) {
  await rawFork();
  for (const { cold, warm } of Object.values(backends)) {
    await execute(cold);
    await execute(warm);
  }
}

const raw = [];
const samples = Object.fromEntries(Object.keys(modes).map((m) => [m, { cold: [], warm: [], backToBack: [] }]));
for (let i = 0; i < ROUNDS; i++) {
  for (const [mode, { cold, warm }] of Object.entries(backends)) {
    await spareReady(warm);
    samples[mode].warm.push(await timed(() => execute(warm)));
    // Let the refill finish so that no spare boots in the background of the next ones.
    await spareReady(warm);
    if (mode === 'off') raw.push(await timed(rawFork));
    samples[mode].cold.push(await timed(() => execute(cold)));
  }
}
for (const [mode, { warm }] of Object.entries(backends)) {
  for (let i = 0; i < 20; i++) samples[mode].backToBack.push(await timed(() => execute(warm)));
}
// A host serving many connections holds thousands of descriptors: a cold start should not grow
// with them beyond what fork() itself pays (its copy of the descriptor table, in the raw figure too).
const BUSY_FDS = 2000;
const held = Array.from({ length: BUSY_FDS }, () => openSync('/dev/null', 'r'));
const busy = { raw: [], cold: [] };
for (let i = 0; i < ROUNDS / 2; i++) {
  busy.raw.push(await timed(rawFork));
  busy.cold.push(await timed(() => execute(backends.off.cold)));
}
for (const fd of held) closeSync(fd);
const stats = await backends.off.warm.stats();
const sandboxed = (await backends.required.cold.health()).isolation;
await Promise.all(Object.values(backends).flatMap(({ cold, warm }) => [cold.shutdown(), warm.shutdown()]));

const rawP50 = percentile(raw, 0.5);
heading(`subprocess backend (echo handler, ${ROUNDS} interleaved rounds, Node ${process.version}, permission model ${stats.runners.permissionModel}; sandbox: ${sandboxed.layers.join(', ')})`);
report('raw fork() of a bare script, handshake + exit: p50', rawP50, 'ms');
for (const [mode, target] of Object.entries(modes)) {
  const { cold, warm, backToBack } = samples[mode];
  const coldP50 = percentile(cold, 0.5);
  const warmP50 = percentile(warm, 0.5);
  report(`${target.label}: cold execution (new child, workspace lease): p50`, coldP50, 'ms');
  report(`${target.label}: cold execution: p95`, percentile(cold, 0.95), 'ms');
  report(`${target.label}: cold p50 / raw fork p50`, coldP50 / rawP50, 'x', { op: '<=', value: target.cold });
  report(`${target.label}: prespawn 1, sequential, spare ready: p50`, warmP50, 'ms');
  report(`${target.label}: prespawn 1, sequential, spare ready: p95`, percentile(warm, 0.95), 'ms');
  report(`${target.label}: prespawn 1 sequential p50 / raw fork p50`, warmP50 / rawP50, 'x', { op: '<=', value: target.warm });
  report(`${target.label}: prespawn 1, back-to-back (spare still booting): p50`, percentile(backToBack, 0.5), 'ms');
}
report(`no sandbox, host holding ${BUSY_FDS} more descriptors: raw fork p50`, percentile(busy.raw, 0.5), 'ms');
report(`no sandbox, host holding ${BUSY_FDS} more descriptors: cold p50`, percentile(busy.cold, 0.5), 'ms');
report(`no sandbox, host holding ${BUSY_FDS} more descriptors: cold p50 / raw fork p50`, percentile(busy.cold, 0.5) / percentile(busy.raw, 0.5), 'x');
