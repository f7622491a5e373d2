import { performance } from 'node:perf_hooks';
import type { IExecutionBackend, PluginSource } from '@kb-labs/plugin-execution-core';
import { fuzzPluginSource, FUZZ_A, FUZZ_B } from './fuzz-plugins.js';
import { CRASHING_ACTS, type ExecuteRecord, type FuzzAct, type FuzzRun } from './fuzz-record.js';
import { SeededRandom } from './seeded-random.js';

/** What `registerPlugin` and its kin are on every backend built on core (and the lazy one). */
export interface ChangeablePlugins {
  registerPlugin(source: PluginSource): Promise<unknown>;
  reloadPlugin(pluginId: string): Promise<unknown>;
  unregisterPlugin(pluginId: string): Promise<unknown>;
}

export type FuzzedBackend = IExecutionBackend & ChangeablePlugins;

export interface FuzzDriverOptions {
  /** The backend can survive a handler that exits its runner or throws in a timer. */
  isolatesCrashes: boolean;
  /** How many operations before the shutdown (at a random one of them) and after it. */
  steps: number;
}

/** The model's view of each plugin id: registered, not, or a registerPlugin() of it under way; `change` counts the calls. */
type Registrations = Map<string, { state: ExecuteRecord['registeredAtCall']; change: number }>;

/** Codes an execution gets only once it was dispatched: the plugins had loaded. */
const RAN_CODES = new Set(['HANDLER_ERROR', 'TIMEOUT', 'WORKER_CRASHED']);

const SAFE_ACTS: FuzzAct[] = ['ok', 'throw', 'hang', 'hang-signal', 'sleep', 'spin', 'write', 'log', 'platform'];

/**
 * Drives `backend` with a random interleaving of executions (each act, random time limits and
 * aborts), plugin changes, stats() and health(), then shutdown() at a random step with work in
 * flight, and records everything for `fuzzRunProblems`. Settles once every execution has settled.
 */
export async function driveFuzzRun(backend: FuzzedBackend, run: FuzzRun, options: FuzzDriverOptions): Promise<void> {
  const random = new SeededRandom(run.seed);
  const acts = options.isolatesCrashes ? [...SAFE_ACTS, 'exit', 'crash'] as FuzzAct[] : SAFE_ACTS;
  const registered: Registrations = new Map([[FUZZ_A, { state: 'yes', change: 0 }], [FUZZ_B, { state: 'no', change: 0 }]]);
  const settling: Array<Promise<unknown>> = [];
  const abortable: Array<{ record: ExecuteRecord; controller: AbortController }> = [];
  // Now and then at once, while the plugins (and a lazy backend's package) still load at first use.
  const shutdownAt = random.chance(0.15) ? random.int(0, 3) : random.int(Math.floor(options.steps / 2), options.steps);
  let shutdown: Promise<void> | undefined;
  for (let step = 0; step < options.steps + 4; step++) {
    if (step === shutdownAt) {
      const timeoutMs = random.int(0, 1500);
      run.log.push(`shutdown({ timeoutMs: ${timeoutMs} })`);
      run.shutdownCalledAt = performance.now();
      shutdown = backend.shutdown({ timeoutMs });
    }
    if (shutdown && step > shutdownAt && random.chance(0.1)) {
      // A second call (a second Ctrl-C): the same promise, its deadline brought forward.
      const timeoutMs = random.int(0, 300);
      run.log.push(`shutdown({ timeoutMs: ${timeoutMs} }) again`);
      if (backend.shutdown({ timeoutMs }) !== shutdown) run.secondShutdownDiffered = true;
    }
    const op = random.weighted({ execute: 8, change: 2, look: 1, abort: 2, wait: 4 });
    if (op === 'execute') {
      const record = startExecution(backend, run, random, acts, registered, settling);
      if (record) abortable.push(record);
    } else if (op === 'change') {
      changePlugins(backend, run, random, registered);
    } else if (op === 'look') {
      look(backend, run, random);
    } else if (op === 'abort' && abortable.length > 0) {
      const { record, controller } = abortable.splice(random.int(0, abortable.length - 1), 1)[0]!;
      run.log.push(`abort ${record.tag}`);
      record.abortedAt ??= performance.now();
      controller.abort();
    } else if (op === 'wait') {
      const ms = random.pick([0, 1, 5, 20, 50, 150, 400]);
      run.log.push(`wait ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
  }
  await shutdown;
  // shutdown() resolves once no execution is between execute() and its result (a turn for their callbacks).
  await new Promise((resolve) => setImmediate(resolve));
  run.unsettledAtShutdown = run.executions.filter((record) => record.settleCount === 0).map((record) => record.tag);
  const hung = new Promise<void>((resolve) => setTimeout(resolve, HANG_MS).unref());
  await Promise.race([Promise.all(settling), hung]);
}

/** How long the executions may take to settle once shutdown() resolved before the run reports them hung. */
const HANG_MS = 10_000;

function startExecution(
  backend: FuzzedBackend,
  run: FuzzRun,
  random: SeededRandom,
  acts: FuzzAct[],
  registered: Registrations,
  settling: Array<Promise<unknown>>,
): { record: ExecuteRecord; controller: AbortController } | undefined {
  const act = random.pick(acts);
  const pluginId = random.chance(0.75) ? FUZZ_A : FUZZ_B;
  const timeoutMs = random.chance(0.5) ? random.pick([50, 200, 800, 3000]) : undefined;
  const controller = random.chance(0.4) ? new AbortController() : undefined;
  const tag = `e${run.executions.length}`;
  const ms = act === 'spin' ? random.int(0, 60) : random.int(0, 400);
  const record: ExecuteRecord = { tag, pluginId, act, timeoutMs, registeredAtCall: registered.get(pluginId)!.state, settleCount: 0, starts: [], logs: [], events: [] };
  run.executions.push(record);
  const calledBeforeLoaded = !run.pluginsLoaded;
  if (calledBeforeLoaded) run.loadingWaiters.add(record);
  run.log.push(`execute ${tag} ${pluginId} ${act} ms=${ms} timeoutMs=${timeoutMs} signal=${controller !== undefined}`);
  if (controller && random.chance(0.1)) {
    run.log.push(`abort ${tag} before the call`);
    record.abortedAt = performance.now();
    record.abortedBeforeCall = true;
    controller.abort();
  }
  const settle = (update: Partial<ExecuteRecord>) => {
    if (update.result && (update.result.ok || RAN_CODES.has(update.result.error.code))) run.pluginsLoaded = true;
    if (calledBeforeLoaded) run.loadingWaiters.delete(record);
    record.settleCount++;
    record.settledAt ??= performance.now();
    Object.assign(record, update);
  };
  const options = {
    onStart: () => void record.starts.push(performance.now()),
    onLog: () => void record.logs.push(performance.now()),
    onEvent: () => void record.events.push(performance.now()),
    ...(timeoutMs !== undefined && { timeoutMs }), ...(controller && { signal: controller.signal }) };
  const request = { pluginId, handlerId: 'act', input: { tag, act, ms } };
  settling.push(backend.execute(request, options).then((result) => settle({ result }), (rejection: unknown) => settle({ rejection })));
  return controller && !record.abortedBeforeCall ? { record, controller } : undefined;
}

function changePlugins(backend: FuzzedBackend, run: FuzzRun, random: SeededRandom, registered: Registrations): void {
  const pluginId = random.pick([FUZZ_A, FUZZ_B]);
  const op = random.weighted({ register: 2, unregister: 1, reload: 2 });
  const line = `${op} ${pluginId}`;
  run.log.push(line);
  const noted = (error: unknown) => {
    run.changeErrors.push({ op: line, error });
  };
  const model = registered.get(pluginId)!;
  // An execution waiting for the plugins' first load resolves its handler after them, with this change in.
  if (op !== 'reload' && !run.pluginsLoaded) for (const waiter of run.loadingWaiters) if (waiter.pluginId === pluginId) waiter.changedWhileLoading = true;
  const change = ++model.change;
  if (op === 'register') {
    // Until it resolves, an execution of the plugin may get HANDLER_NOT_FOUND telling to await it (plugin-registry.ts).
    model.state = 'pending';
    backend.registerPlugin(fuzzPluginSource(pluginId)).then(() => {
      if (model.change === change) model.state = 'yes';
    }, noted);
  } else if (op === 'unregister') {
    model.state = 'no';
    backend.unregisterPlugin(pluginId).catch(noted);
  } else {
    backend.reloadPlugin(pluginId).catch(noted);
  }
}

function look(backend: FuzzedBackend, run: FuzzRun, random: SeededRandom): void {
  const which = random.pick(['stats', 'health'] as const);
  run.log.push(which);
  const snapshot: FuzzRun['snapshots'][number] = {};
  run.snapshots.push(snapshot);
  (which === 'stats' ? backend.stats().then((stats) => (snapshot.stats = stats)) : backend.health().then((health) => ((run.pluginsLoaded = true), (snapshot.health = health)))).catch(
    (error: unknown) => (snapshot.error = error),
  );
}

export { CRASHING_ACTS };
