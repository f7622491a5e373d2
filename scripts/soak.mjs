// Soak test and leak audit: many mixed executions (successes, errors, timeouts, crashes, aborts)
// across the three backends with concurrency, then shutdown, then what is left over.
//
//   npm run soak                       # 10 000 executions (the figures in docs/reliability.md)
//   node --expose-gc scripts/soak.mjs --executions 600 --json   # the short run the tests use
//
// Targets: RSS growth < 30 MB; every other leak figure 0.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const { values } = parseArgs({
  options: {
    executions: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
    backends: { type: 'string', default: 'in-process,worker-pool,subprocess' },
    json: { type: 'boolean', default: false },
  },
});
const total = Number(values.executions);
const concurrency = Number(values.concurrency);
const types = values.backends.split(',');

if (typeof globalThis.gc !== 'function') {
  // Re-run with --expose-gc so RSS is measured after a full collection.
  const child = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(child.status ?? 1);
}

const { createExecutionBackend } = await import(path.join(repo, 'packages/plugin-execution/dist/index.js'));
const fixtures = path.join(repo, 'packages/conformance/fixtures/plugins');
const plugins = [path.join(fixtures, 'basic'), path.join(fixtures, 'hostile')];

async function openFds() {
  return (await readdir('/proc/self/fd')).length;
}
async function threads() {
  return (await readdir('/proc/self/task')).length;
}
async function childProcesses() {
  let count = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid) count++;
    } catch {
      // The process ended while we looked.
    }
  }
  return count;
}
function handles() {
  return process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
}
async function settle() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
async function snapshot(root) {
  await settle();
  return {
    resources: process.getActiveResourcesInfo(),
    rssMb: process.memoryUsage().rss / 1024 / 1024,
    heapMb: process.memoryUsage().heapUsed / 1024 / 1024,
    externalMb: process.memoryUsage().external / 1024 / 1024,
    fds: await openFds(),
    handles: handles(),
    threads: await threads(),
    children: await childProcesses(),
    workspaces: (await readdir(root)).length,
  };
}

/** The mix: what each execution is, chosen by its index so runs are repeatable. */
function scenario(i, type) {
  const r = (i * 7919) % 100;
  if (r < 55) return { expect: 'ok', request: { pluginId: '@conformance/basic', handlerId: 'echo', input: { i, pad: 'x'.repeat(i % 200) } } };
  if (r < 65) return { expect: 'ok', request: { pluginId: '@conformance/basic', handlerId: 'writes-workspace', input: { text: String(i) } } };
  if (r < 77) return { expect: 'HANDLER_ERROR', request: { pluginId: '@conformance/basic', handlerId: 'throws' } };
  if (r < 83) return { expect: 'VALIDATION_ERROR', request: { pluginId: '@conformance/basic', handlerId: 'validated', input: { name: 1 } } };
  if (r < 89) return { expect: 'TIMEOUT', request: { pluginId: '@conformance/basic', handlerId: 'never-resolves' }, timeoutMs: 50 };
  if (r < 95) return { expect: 'ABORTED', request: { pluginId: '@conformance/basic', handlerId: 'slow', input: { ms: 1000 } }, abortAfterMs: 5 };
  if (type === 'in-process') return { expect: 'HANDLER_ERROR', request: { pluginId: '@conformance/hostile', handlerId: 'throw-value', input: { kind: 'circular' } } };
  return { expect: 'WORKER_CRASHED', request: { pluginId: '@conformance/hostile', handlerId: 'exit', input: { code: 3 } } };
}

const root = await mkdtemp(path.join(os.tmpdir(), 'kb-soak-'));
// Warm up what Node creates once per process and keeps (libuv's threadpool, the /dev/null
// descriptor it opens for the first child spawned with ignored stdio, module caches) with one
// execution per backend type, so the baseline holds them too and only real leaks show.
// Then a short burst of the same mix at full concurrency, because V8's heap spaces and the
// allocator's per-thread arenas grow to a working size once and stay there: that plateau is
// reported (cold RSS) but is not what a leak looks like. Growth is measured from after the burst.
const cold = await snapshot(root);
for (const type of types) {
  const warm = createExecutionBackend({ type, plugins, workspace: { root } });
  if ((await warm.health()).ok) {
    let n = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (n < 20 * concurrency) {
          const s = scenario(n++, type);
          await warm.execute(s.request, { timeoutMs: s.timeoutMs ?? 20_000, ...(s.abortAfterMs ? { signal: AbortSignal.timeout(s.abortAfterMs) } : {}) });
        }
      }),
    );
  }
  await warm.shutdown();
}
const before = await snapshot(root);
const outcomes = {};
const perBackend = {};
/** Executions whose outcome was not the one their scenario must produce. */
const unexpected = [];
const started = performance.now();

for (const type of types) {
  const backend = createExecutionBackend({ type, plugins, workspace: { root }, maxQueue: 100_000 });
  const health = await backend.health();
  if (!health.ok) {
    perBackend[type] = { skipped: health.problems[0] };
    await backend.shutdown();
    continue;
  }
  const index = types.indexOf(type);
  const share = Math.floor(total / types.length) + (index < total % types.length ? 1 : 0);
  const counts = {};
  let next = 0;
  const worker = async () => {
    while (next < share) {
      const i = next++;
      const s = scenario(i, type);
      const controller = s.abortAfterMs ? new AbortController() : undefined;
      const timer = controller ? setTimeout(() => controller.abort(), s.abortAfterMs) : undefined;
      const result = await backend.execute(s.request, { timeoutMs: s.timeoutMs ?? 20_000, ...(controller ? { signal: controller.signal } : {}) });
      if (timer) clearTimeout(timer);
      const outcome = result.ok ? 'ok' : result.error.code;
      counts[outcome] = (counts[outcome] ?? 0) + 1;
      if (outcome !== s.expect) {
        unexpected.push({ backend: type, handler: s.request.handlerId, expected: s.expect, got: outcome, message: result.ok ? undefined : result.error.message.slice(0, 300) });
      }
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await backend.shutdown({ timeoutMs: 5000 });
  perBackend[type] = counts;
}

const seconds = (performance.now() - started) / 1000;
const after = await snapshot(root);
await rm(root, { recursive: true, force: true });

const figures = {
  executions: Object.values(outcomes).reduce((a, b) => a + b, 0),
  seconds: Math.round(seconds * 10) / 10,
  outcomes,
  perBackend,
  unexpectedOutcomes: unexpected.length,
  unexpectedSamples: unexpected.slice(0, 5),
  rssColdMb: Math.round(cold.rssMb),
  rssBeforeMb: Math.round(before.rssMb),
  rssAfterMb: Math.round(after.rssMb),
  rssGrowthMb: Math.round((after.rssMb - before.rssMb) * 10) / 10,
  heapGrowthMb: Math.round((after.heapMb - before.heapMb) * 10) / 10,
  externalGrowthMb: Math.round((after.externalMb - before.externalMb) * 10) / 10,
  fdsBefore: before.fds,
  fdsAfter: after.fds,
  leakedFds: after.fds - before.fds,
  resourcesAfter: after.resources,
  handlesBefore: before.handles,
  handlesAfter: after.handles,
  leakedHandles: after.handles - before.handles,
  threadsBefore: before.threads,
  threadsAfter: after.threads,
  leakedThreads: after.threads - before.threads,
  childProcessesLeft: after.children,
  workspacesLeft: after.workspaces,
};

if (values.json) {
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} else {
  console.log(`soak: ${figures.executions} executions in ${figures.seconds} s, concurrency ${concurrency}`);
  console.log('  outcomes:', JSON.stringify(outcomes));
  for (const [type, counts] of Object.entries(perBackend)) console.log(`  ${type}:`, JSON.stringify(counts));
  console.log(`  unexpected outcomes: ${unexpected.length}   target 0 ${unexpected.length === 0 ? 'PASS' : 'MISS'}`);
  for (const sample of unexpected.slice(0, 5)) console.log('   ', JSON.stringify(sample));
  const row = (name, value, target) => console.log(`  ${name.padEnd(34)} ${String(value).padStart(10)}   ${target}`);
  row('RSS cold / after warm-up / after (MB)', `${figures.rssColdMb} / ${figures.rssBeforeMb} / ${figures.rssAfterMb}`, '');
  row('RSS growth (MB)', figures.rssGrowthMb, `target < 30 ${figures.rssGrowthMb < 30 ? 'PASS' : 'MISS'}`);
  row('  of which JS heap / external (MB)', `${figures.heapGrowthMb} / ${figures.externalGrowthMb}`, '');
  row('open fds before / after', `${figures.fdsBefore} / ${figures.fdsAfter}`, `target 0 leaked ${figures.leakedFds === 0 ? 'PASS' : 'MISS'}`);
  row('active handles before / after', `${figures.handlesBefore} / ${figures.handlesAfter}`, `target 0 leaked ${figures.leakedHandles === 0 ? 'PASS' : 'MISS'}`);
  row('threads before / after', `${figures.threadsBefore} / ${figures.threadsAfter}`, `target 0 leaked ${figures.leakedThreads === 0 ? 'PASS' : 'MISS'}`);
  row('child processes left', figures.childProcessesLeft, `target 0 ${figures.childProcessesLeft === 0 ? 'PASS' : 'MISS'}`);
  row('workspace directories left', figures.workspacesLeft, `target 0 ${figures.workspacesLeft === 0 ? 'PASS' : 'MISS'}`);
}
const leaked = figures.leakedFds || figures.leakedHandles || figures.leakedThreads || figures.childProcessesLeft || figures.workspacesLeft || unexpected.length;
process.exitCode = leaked ? 1 : 0;
