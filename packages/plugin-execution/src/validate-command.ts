import { AsyncLocalStorage } from 'node:async_hooks';
import { PluginRegistry, type BuiltInBackendType, type ExecutionBackend, type RegisteredPlugin } from '@kb-labs/plugin-execution-core';
import { DEFAULT_TIMEOUT_MS } from '@kb-labs/plugin-execution-core/host-kit';
import { createExecutionBackend } from './create-execution-backend.js';
import { onProcessEnd, uncaughtWords, writeQuietly, type Uncaught } from './exit-guard.js';
import { watchLoop } from './loop-watchdog.js';
import { inCliTerms } from './nats-flags.js';
import { pluginFolderMistake } from './plugin-folders.js';
import { UsageError, backendType, stdoutToStderr } from './run-command.js';
import { loadFailure } from './thrown-where.js';
import { printableText, terminalSafeJson } from './terminal-text.js';

/** The flags `validate` takes (of the command line's, cli.ts). */
export const VALIDATE_FLAGS = ['backend', 'json'] as const;

/** One thing wrong with a plugin: its manifest (no handlerId), or one handler's module. */
interface Problem {
  handlerId?: string;
  code: string;
  message: string;
  details?: unknown;
}

/** What `validate` says of one plugin folder. */
interface PluginReport {
  dir: string;
  pluginId?: string;
  version?: string;
  ok: boolean;
  handlers: string[];
  problems: Problem[];
}

/**
 * `validate <plugin-dir> …`: each plugin's manifest read as a backend reads it (the registry), then
 * each handler's module loaded on the backend `--backend` names, as an execution loads it, but
 * not begun: the execution is given a time to begin by that has passed (`ExecuteOptions.beginBy`),
 * so its runner loads the module, resolves the export (HANDLER_NOT_FOUND with its hint, a load's
 * HANDLER_ERROR) and then asks to begin, which the backend refuses (ABORTED). Exit 0 when every
 * plugin is valid, 1 otherwise.
 */
export async function validateCommand(dirs: readonly string[], values: { backend?: string | undefined; json?: boolean | undefined }): Promise<number> {
  const type = backendType(values.backend);
  // A queue backend's runners are its workers, which load the plugins themselves (and beginBy, on other machines' clocks, is refused).
  if (type === 'queue') throw new UsageError("validate loads handlers where this command runs; a queue's handlers load on its workers: give --backend the backend the workers run (kb-plugin-exec worker --backend)");
  for (const dir of dirs) {
    const mistake = pluginFolderMistake(dir);
    if (mistake) throw new UsageError(mistake);
  }
  // Stdout is for the report: what a plugin's top-level code prints in this process goes to stderr.
  const toStdout = process.stdout.write.bind(process.stdout);
  const progress: Progress = { reports: [] };
  // Without --json each plugin's lines are said as soon as it is checked, so that a module which
  // ends this process as it loads (in-process) does not take the lines of those before it along.
  const onChecked = (report: PluginReport) => {
    progress.reports.push(report);
    if (!values.json) toStdout(reportLines(report));
  };
  const liftEndReport = reportAtProcessEnd(progress, values.json === true, type);
  const restoreStdout = stdoutToStderr();
  try {
    await checkedPlugins(dirs, type, onChecked, progress, blockedReport(progress, values.json === true, type));
  } finally {
    restoreStdout();
    liftEndReport();
  }
  const ok = progress.reports.every((report) => report.ok);
  if (values.json) process.stdout.write(jsonReport(ok, type, progress.reports));
  return ok ? 0 : 1;
}

/** A handler whose module is loaded: what the callbacks that module leaves carry with them (`loads`). */
interface Load {
  report: PluginReport;
  handlerId: string;
}

/**
 * Around each module's load: a timer its top-level code sets keeps the load it was set in, so that
 * the 'exit' listener, run by the process.exit() of such a callback, tells which module's it was.
 */
const loads = new AsyncLocalStorage<Load>();

/** The plugins checked so far, and the handler whose module is loading. */
interface Progress {
  reports: PluginReport[];
  loading?: Load;
}

function jsonReport(ok: boolean, backend: BuiltInBackendType, plugins: PluginReport[]): string {
  return `${terminalSafeJson(JSON.stringify({ ok, backend, plugins }, null, 2))}\n`;
}

/**
 * When this process ends as a module loads (in-process: process.exit() or an uncaught throw at its
 * top, or in a callback a module loaded earlier left running): exit 1, said on stderr as
 * WORKER_CRASHED naming the module whose code ended it, the plugin being checked said with that
 * problem, the one whose callback it was too, and with --json the whole report so far. Returns
 * the function that lifts it.
 */
function reportAtProcessEnd(progress: Progress, json: boolean, backend: BuiltInBackendType): () => void {
  return onProcessEnd(
    (code, uncaught) => {
      const loading = progress.loading as Load;
      const by = loads.getStore() ?? loading;
      writeQuietly(2, `WORKER_CRASHED: ${printableText(loadEndedWords(loading, by, backend, uncaught ? uncaughtWords(uncaught) : undefined, code))}\n`);
      const self = by.report === loading.report && by.handlerId === loading.handlerId;
      if (!self) {
        by.report.problems.push({ handlerId: by.handlerId, code: 'WORKER_CRASHED', message: 'a callback its module left running ended this process as a later module loaded (said on stderr)' });
        by.report.ok = false;
      }
      const message = self
        ? 'its module ended this process as it loaded (said on stderr); the plugins after it were not checked'
        : `not checked: this process ended as its module loaded, by a callback the module of ${subject(by)} left running; the plugins after it were not checked either`;
      loading.report.problems.push({ handlerId: loading.handlerId, code: 'WORKER_CRASHED', message });
      loading.report.ok = false;
      const said = by.report === loading.report || !progress.reports.includes(by.report) ? [loading.report] : [by.report, loading.report];
      if (!json) return writeQuietly(1, said.map(reportLines).join(''));
      writeQuietly(1, jsonReport(false, backend, [...progress.reports, loading.report]));
    },
    // Between loads, nothing of a plugin's runs here: the exit is left as it is.
    () => progress.loading === undefined,
  );
}

/**
 * What stdout is given when a module blocks the loop as it loads in-process and the watching thread
 * ends the process (loop-watchdog.ts): as for an exit (reportAtProcessEnd), the plugin being
 * checked with that problem, and with --json the whole report so far, never an empty stdout.
 */
function blockedReport(progress: Progress, json: boolean, backend: BuiltInBackendType): (load: Load, problem: Problem) => string {
  return (load, problem) => {
    const report = { ...load.report, ok: false, problems: [...load.report.problems, problem] };
    return json ? jsonReport(false, backend, [...progress.reports, report]) : reportLines(report);
  };
}

/** The stderr line's words for a load's end: by the loading module itself, or by what one loaded earlier left running. */
function loadEndedWords(loading: Load, by: Load, backend: BuiltInBackendType, uncaught: string | undefined, code: number): string {
  const ended = uncaught ? `ended the CLI's process by ${uncaught} (Node prints it with its stack)` : `called process.exit(${code})`;
  const where = backend === 'in-process' ? "in-process, in the CLI's own process" : `on the ${backend} backend`;
  const hint = backend === 'in-process' ? ' (--backend worker-pool or subprocess loads each module in a thread or process of its own)' : '';
  const who = by.report === loading.report && by.handlerId === loading.handlerId ? `${subject(loading)} ${ended} as its module loaded` : `a callback the module of ${subject(by)} left running ${ended} as ${subject(loading)} loaded`;
  return `${who} ${where}: the CLI ended with it${hint}`;
}

function subject(load: Load): string {
  return `handler "${load.handlerId}" of plugin "${load.report.pluginId}"`;
}

/** Every folder's manifest registered, then every handler of those that registered loaded on one backend of `type`. */
async function checkedPlugins(dirs: readonly string[], type: BuiltInBackendType, onChecked: (report: PluginReport) => void, progress: Progress, blocked: CheckedOn['blockedReport']): Promise<void> {
  const registry = new PluginRegistry();
  const loaded: Array<{ report: PluginReport; plugin?: RegisteredPlugin }> = [];
  for (const dir of dirs) {
    try {
      const plugin = await registry.load(dir);
      loaded.push({ report: { dir, pluginId: plugin.id, version: plugin.manifest.version, ok: true, handlers: Object.keys(plugin.manifest.handlers), problems: [] }, plugin });
    } catch (error) {
      loaded.push({ report: { dir, ok: false, handlers: [], problems: [problemOf(error)] } });
    }
  }
  if (!loaded.some((entry) => entry.plugin)) {
    for (const entry of loaded) onChecked(entry.report);
    return;
  }
  // No workspace: nothing runs that would use one.
  const backend = createExecutionBackend({ type, registry, workspace: false });
  const on = { backend, registry, type, stuckModules: new Map<string, string>(), blockedReport: blocked };
  try {
    for (const { report, plugin } of loaded) {
      if (!plugin) {
        onChecked(report);
        continue;
      }
      for (const handlerId of report.handlers) {
        const load = { report, handlerId };
        progress.loading = load;
        const problem = await loads.run(load, () => handlerProblem(on, plugin, load));
        if (problem) report.problems.push(problem);
      }
      progress.loading = undefined;
      report.ok = report.problems.length === 0;
      onChecked(report);
    }
  } finally {
    await backend.shutdown({ timeoutMs: 2000 });
  }
}

/** What the handlers are checked on; `stuckModules`: the modules whose load timed out, each with the handler that found it. */
interface CheckedOn {
  backend: ExecutionBackend;
  registry: PluginRegistry;
  type: BuiltInBackendType;
  stuckModules: Map<string, string>;
  /** What stdout is given when the module blocks the loop as it loads in-process and the process is ended. */
  blockedReport: (load: Load, problem: Problem) => string;
}

/** Why the handler's module does not load as the manifest says, or undefined when it does. */
async function handlerProblem(on: CheckedOn, plugin: RegisteredPlugin, load: Load): Promise<Problem | undefined> {
  const { handlerId } = load;
  // Granted what it declares, so that the permission preflight (before any plugin code) lets the load happen.
  const { permissions, timeoutMs: manifestTimeoutMs, entryPath } = on.registry.resolve(plugin.id, handlerId);
  // Only the load is timed: a module whose import never settles (a top-level await) is reported after
  // the default limit at most, not after what the manifest allows the handler's own run (an hour, say);
  // and once: the other handlers of that module would each wait as long again.
  const timeoutMs = Math.min(manifestTimeoutMs ?? DEFAULT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS);
  const stuckFor = on.stuckModules.get(entryPath);
  if (stuckFor !== undefined) return { handlerId, code: 'TIMEOUT', message: `its module did not finish loading for handler "${stuckFor}" (not tried again)` };
  // In-process, a module that blocks the loop as it loads (a `while (true)` at its top) is out of reach of the time limit: ended as run ends it (TIMEOUT, exit 137).
  const executionId = crypto.randomUUID();
  const blocked = { handlerId, code: 'TIMEOUT', message: `its module kept the event loop blocked past its time limit of ${timeoutMs} ms as it loaded (said on stderr): the process was ended; the plugins after it were not checked` };
  const watchdog = on.type === 'in-process' ? watchLoop({ executionId, pluginId: plugin.id, handlerId, limitMs: timeoutMs, json: false, stdout: on.blockedReport(load, blocked) }) : undefined;
  let result;
  try {
    const onStart = watchdog && (() => watchdog.started([], false));
    result = await on.backend.execute({ executionId, pluginId: plugin.id, handlerId, context: { host: { kind: 'cli' }, permissions } }, { beginBy: () => 0, timeoutMs, ...(onStart ? { onStart } : {}) });
  } finally {
    watchdog?.stop();
  }
  if (result.ok) return undefined;
  const { error } = result;
  // Loaded, the export a handler, and refused the begin: what a valid handler gets.
  if (error.code === 'ABORTED' && /beginBy/.test(error.message)) return undefined;
  // The handler did not run: a HANDLER_ERROR is what its module threw as it loaded, said with where.
  if (error.code === 'TIMEOUT') {
    on.stuckModules.set(entryPath, handlerId);
    return { handlerId, code: error.code, message: `its module did not finish loading within ${timeoutMs} ms (an import or top-level await that never settles?)`, details: error.details };
  }
  const message = error.code === 'HANDLER_ERROR' ? `its module failed to load: ${loadFailure(thrownAtLoad(error))}` : error.message;
  return { handlerId, ...problemOf({ code: error.code, message, details: error.details }) };
}

/**
 * What a module threw as it loaded, with its stack for where; but a failure the runtime named the
 * file of (`details.file`: a module that does not parse, a JSON import without its attribute, a .ts
 * entry on Node 20) is said by its message alone: its stack is the runtime's own, in this package's dist/.
 */
function thrownAtLoad(error: { message: string; stack?: string; details?: unknown }): { name: unknown; message: string; stack?: string } {
  const details = error.details as { name?: unknown; file?: unknown } | undefined;
  return { name: details?.name ?? 'Error', message: error.message, ...(typeof details?.file === 'string' ? {} : { stack: error.stack }) };
}

/** A thrown error (the registry's ValidationError, say) as a report's problem. */
function problemOf(error: unknown): Problem {
  const e = error as { code?: unknown; name?: unknown; message?: unknown; details?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'ERROR';
  return { code, message: typeof e?.message === 'string' ? e.message : String(error), ...(e?.details !== undefined ? { details: e.details } : {}) };
}

/**
 * A plugin's line ("<dir>: ok (…)", or "<dir>: N problems") and a line under it for each problem, its
 * control characters written out: a line break in a folder's name too (`\n`), so that each plugin
 * stays on one line whatever its folder is called.
 */
function reportLines(report: PluginReport): string {
  const shown = (text: string) => printableText(inCliTerms(text), { keepNewlines: true });
  const dir = printableText(report.dir);
  const id = report.pluginId ? `${report.pluginId}@${report.version}` : undefined;
  if (report.ok) return `${dir}: ok (${shown(id ?? '')}, handlers: ${shown(report.handlers.join(', '))})\n`;
  const count = `${report.problems.length} problem${report.problems.length > 1 ? 's' : ''}`;
  const problems = report.problems.map((p) => `  - ${p.handlerId !== undefined ? `handler "${p.handlerId}": ` : ''}${p.code}: ${p.message}`.replaceAll('\n', '\n    '));
  return `${dir}: ${count}${id ? ` (${shown(id)})` : ''}\n${shown(problems.join('\n'))}\n`;
}
