import { constants } from 'node:buffer';
import { createReadStream, existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { parseArgs } from 'node:util';
import { PluginRegistry, WorkspaceManager, permissionSpecSchema, serializeError, type BuiltInBackendType, type ExecutionResult, type LogEntry, type PermissionSpec, type Platform } from '@kb-labs/plugin-execution-core';
import { DEFAULT_TIMEOUT_MS, MAX_TIMER_MS, issuesOf, jsonSyntaxProblem, nearest } from '@kb-labs/plugin-execution-core/host-kit';
import { createExecutionBackend } from './create-execution-backend.js';
import { guardExit, guardExitAfterResult } from './exit-guard.js';
import { watchLoop } from './loop-watchdog.js';
import { NATS_FLAGS, NatsFlagError, inCliTerms, natsAuth, natsServers } from './nats-flags.js';
import { commandLineHint, type GrantFlag } from './command-line-hint.js';
import { flagMistake, givenFlags } from './flag-errors.js';
import { pluginFolderMistake } from './plugin-folders.js';
import { printableJson } from './printable-json.js';
import { loadFailure, thrownAt } from './thrown-where.js';
import { readUpTo } from './read-text.js';
import { logLine, printableText, terminalSafeJson } from './terminal-text.js';
import { SIGNAL_EXIT, onStopSignals, type StopSignal } from './stop-signals.js';

/** A mistake in the command line: the CLI prints it with the usage and exits 2. */
export class UsageError extends Error {}

export const RUN_OPTIONS = {
  backend: { type: 'string' },
  nats: { type: 'string' },
  pool: { type: 'string' },
  /** queue: the subject prefix, as the workers were given it. */
  prefix: { type: 'string' },
  /** queue: the largest input, result or event, as the pool's workers were given it. */
  'max-payload-bytes': { type: 'string' },
  ...NATS_FLAGS,
  input: { type: 'string' },
  context: { type: 'string' },
  grant: { type: 'string' },
  platform: { type: 'string' },
  timeout: { type: 'string' },
  'workspace-root': { type: 'string' },
  /** sweep's: remove other hosts' directories (another container's) not modified for this long. */
  'foreign-older-than': { type: 'string' },
  'no-workspace': { type: 'boolean' },
  'keep-workspace': { type: 'boolean' },
  logs: { type: 'boolean' },
  json: { type: 'boolean' },
  version: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export type RunValues = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof RUN_OPTIONS }>>['values'];

/** The flags of `run` that go together (or not), checked before anything loads: the queue's options and the timeout. */
function checkedFlags(values: RunValues, type: BuiltInBackendType) {
  const queueFlags = (['nats', 'pool', 'prefix', 'max-payload-bytes', ...(Object.keys(NATS_FLAGS) as Array<keyof typeof NATS_FLAGS>)] as const).filter((name) => values[name] !== undefined);
  if (type !== 'queue' && queueFlags.length) throw new UsageError(`${queueFlags.map((name) => `--${name}`).join(' and ')} ${queueFlags.length > 1 ? 'are' : 'is'} for --backend queue`);
  const withWorkspace = ['keep-workspace', 'workspace-root'].filter((name) => values[name as 'keep-workspace' | 'workspace-root'] !== undefined);
  if (values['no-workspace'] && withWorkspace.length) throw new UsageError(`--no-workspace runs without a workspace: it does not go with --${withWorkspace.join(' or --')}`);
  if (type === 'queue' && values['workspace-root'] !== undefined) throw new UsageError("--workspace-root is the worker's with --backend queue (the workspace is made on the worker): give it to kb-plugin-exec worker");
  const maxPayloadBytes = values['max-payload-bytes'] === undefined ? undefined : /^\d+$/.test(values['max-payload-bytes']) ? Number(values['max-payload-bytes']) : NaN;
  // Its range is the backend's to check (a refusal there is said as this flag's, flag-errors.ts).
  if (Number.isNaN(maxPayloadBytes)) throw new UsageError(`--max-payload-bytes must be a whole number of bytes, got ${JSON.stringify(values['max-payload-bytes'])}`);
  const queue =
    type === 'queue'
      ? { connection: queueConnection(values), ...(values.pool ? { pool: values.pool } : {}), ...(values.prefix ? { subjectPrefix: values.prefix } : {}), ...(maxPayloadBytes !== undefined ? { maxPayloadBytes } : {}) }
      : {};
  // Digits only: Number() would also take 1.5, 0x10 and 1e3.
  const timeoutMs = values.timeout === undefined ? undefined : /^\d+$/.test(values.timeout) ? Number(values.timeout) : NaN;
  if (timeoutMs !== undefined && !(timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS)) {
    throw new UsageError(`--timeout must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS} (Node's longest timer), got ${JSON.stringify(values.timeout)}`);
  }
  return { queue, timeoutMs };
}

/** `--nats` and the credentials and TLS the flags and the environment give (nats-flags.ts). */
function queueConnection(values: RunValues) {
  try {
    return { ...(values.nats ? { servers: natsServers(values.nats) } : {}), ...natsAuth(values) };
  } catch (error) {
    throw error instanceof NatsFlagError ? new UsageError(error.message) : error;
  }
}

/**
 * `run`: one execution on a backend made for it. Success: the handler's data on stdout (the
 * whole result with --json). Failure: "CODE: message" on stderr (and the result on stdout with
 * --json), exit 1. SIGINT/SIGTERM/SIGHUP abort the execution, remove its workspace, exit 130/143/129.
 */
export async function runCommand(pluginDir: string, handlerId: string, values: RunValues): Promise<number> {
  const type = backendType(values.backend);
  const flags = checkedFlags(values, type);
  // A <plugin-dir> that is not there (or holds no kb.plugin.json) is a typo on the command line: exit 2.
  const folderMistake = pluginFolderMistake(pluginDir);
  if (folderMistake) throw new UsageError(folderMistake);
  // Stdout is for the result alone (a caller pipes it to jq): what other code in this process
  // prints goes to stderr, a --platform module (as it loads, and its services on every backend)
  // and an in-process handler. Other backends capture what their handlers print.
  const restoreStdout = stdoutToStderr();
  try {
    return await loadAndRun(pluginDir, handlerId, values, { type, ...flags }, restoreStdout);
  } finally {
    restoreStdout();
  }
}

/** runCommand's execution, stdout sent to stderr until `restoreStdout` is called (before the result is printed). */
async function loadAndRun(pluginDir: string, handlerId: string, values: RunValues, checked: ReturnType<typeof checkedFlags> & { type: BuiltInBackendType }, restoreStdout: () => void): Promise<number> {
  const { type, queue, timeoutMs } = checked;
  const platform = values.platform ? await loadPlatform(values.platform) : undefined;

  const registry = new PluginRegistry();
  const plugin = await registry.load(pluginDir);
  // Read before the backend is made and before a signal aborts an execution: a Ctrl-C while
  // `@-` waits for standard input ends the command there (nothing ran, nothing to remove).
  const read = await readValues(values).catch((error: unknown) => {
    if (error instanceof StoppedWhileReading) return error;
    throw error;
  });
  if (read instanceof StoppedWhileReading) return SIGNAL_EXIT[read.signal];
  const backend = createExecutionBackend({
    type,
    registry,
    workspace: values['no-workspace'] ? false : values['workspace-root'] ? { root: values['workspace-root'] } : undefined,
    ...(read.grant ? { permissions: read.grant } : {}),
    ...(platform ? { platform } : {}),
    ...queue,
  });
  // In-process, a handler that blocks the loop is out of reach of the time limit and the signals: ended by this thread.
  const limitMs = timeoutMs ?? plugin.manifest.handlers[handlerId]?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // Made here so that the watchdog's TIMEOUT names the execution as its result would.
  const executionId = crypto.randomUUID();
  const watchdog = type === 'in-process' ? watchLoop({ executionId, pluginId: plugin.id, handlerId, limitMs, json: values.json === true }) : undefined;
  const onStart = watchdog ? () => watchdog.started(WorkspaceManager.liveLeases(), values['keep-workspace'] === true) : undefined;
  const signals = abortOnSignals();
  const guarded = { backend: type, pluginId: plugin.id, handlerId, json: values.json === true, platform: platform !== undefined, keepWorkspace: values['keep-workspace'] === true };
  const liftExitGuard = guardExit(guarded);
  try {
    const result = await backend.execute(
      { executionId, pluginId: plugin.id, handlerId, input: read.input, context: read.context },
      {
        signal: signals.signal,
        ...(timeoutMs ? { timeoutMs } : {}),
        ...(values['keep-workspace'] ? { keepWorkspace: true } : {}),
        ...(onStart ? { onStart } : {}),
        ...(values.logs ? { onLog: (entry: LogEntry) => process.stderr.write(logLine(entry)) } : {}),
      },
    );
    // The handler is over: printing a large result blocks the loop for the CLI's own work.
    watchdog?.returned();
    liftExitGuard();
    restoreStdout();
    return exitCodeFor(result, values, signals.stoppedBy, Object.hasOwn(read.context, 'permissions') ? 'context' : read.grant ? 'grant' : undefined, plugin.root);
  } finally {
    // From here until the process exits, what blocks the loop is what the handler left running.
    watchdog?.closing(WorkspaceManager.liveLeases(), values['keep-workspace'] === true);
    liftExitGuard();
    guardExitAfterResult(guarded); // until the command ends the process: what the handler left running may end it first
    restoreStdout();
    // Also what removes the workspace of an execution a signal stopped.
    await backend.shutdown({ timeoutMs: 2000 });
    signals.remove();
  }
}

/** The result printed (or the command line's mistake it shows thrown), and the exit code it makes. */
function exitCodeFor(result: ExecutionResult, values: RunValues, stoppedBy: () => StopSignal | undefined, grantIn: GrantFlag, pluginRoot: string): number {
  // A --context (or --nats, --pool) the backend refused: the command line's mistake, named as its
  // flag. Only a refusal before any runner took the execution (no meta.runnerId): a handler's own
  // VALIDATION_ERROR (one it rethrew from an execution of its own, say) is its failure, exit 1.
  const refused = !result.ok && result.meta.runnerId === undefined;
  const mistake = refused ? flagMistake(result.error, givenFlags(values)) : undefined;
  if (mistake) throw new UsageError(mistake);
  const printed = report(result, values.json === true, grantIn, pluginRoot);
  // A signal seen only once the handler had returned or thrown (it blocked the event loop
  // meanwhile) stopped nothing: the result it printed stands, and so does its exit code.
  const signal = !result.ok && result.error.code === 'ABORTED' ? stoppedBy() : undefined;
  return signal ? SIGNAL_EXIT[signal] : result.ok && printed ? 0 : 1;
}

/**
 * SIGINT, SIGTERM and SIGHUP abort the execution (exit 130 / 143 / 129). Listened to with `on`, not
 * `once`, until removed after the backend's shutdown: a second Ctrl-C while the first one's cleanup
 * runs (at most 2 s) would otherwise end the process and leave the workspace behind.
 */
function abortOnSignals(): { signal: AbortSignal; stoppedBy(): StopSignal | undefined; remove(): void } {
  const controller = new AbortController();
  let stoppedBy: StopSignal | undefined;
  const remove = onStopSignals((signal) => {
    stoppedBy ??= signal;
    controller.abort();
  });
  return { signal: controller.signal, stoppedBy: () => stoppedBy, remove };
}

/** The JSON values of the command line: --grant, --context, --input (each a text, @file or @-). */
async function readValues(values: RunValues): Promise<{ grant: PermissionSpec | undefined; context: Record<string, unknown>; input: unknown }> {
  const grant = values.grant === undefined ? undefined : await readGrant(values.grant);
  // Without --context, only what kind of host runs it; not the command line, whose flag values
  // (a --grant, an --input) may be secrets the handler has no business reading.
  const context = values.context === undefined ? { host: { kind: 'cli' } } : await readContext(values.context);
  // A request's permissions replace the backend's grant: --grant would be silently ignored.
  if (grant !== undefined && Object.hasOwn(context, 'permissions')) {
    throw new UsageError('--grant and a "permissions" field in --context both grant, and the request\'s would replace --grant: give one of them');
  }
  return { grant, context, input: await readJson(values.input, 'input') };
}

/** Sends what is written to stdout to stderr until the returned function is called. */
export function stdoutToStderr(): () => void {
  const stdout = process.stdout;
  const write = stdout.write;
  stdout.write = process.stderr.write.bind(process.stderr) as typeof stdout.write;
  return () => {
    stdout.write = write;
  };
}

/** Prints the result; false when it could not be printed (the command then fails, exit 1). */
function report(result: ExecutionResult, json: boolean, grantIn: GrantFlag, pluginRoot: string): boolean {
  // A handler that returned nothing prints null: stdout is always JSON (a caller pipes it to jq).
  let printed = true;
  if (json) printed = writeJson(result.ok ? result : { ...result, error: serializeError(result.error) });
  else if (result.ok) printed = writeJson(result.data);
  // The message may be the handler's own (a HANDLER_ERROR): its line breaks stay, its escape sequences do not reach the terminal.
  // A handler's error says where in the plugin's files it was thrown, as Node says of an uncaught one
  // (its module's load, or the handler): none where the library made it (a schema that is not one, say).
  const where = !result.ok && result.error.code === 'HANDLER_ERROR' ? thrownAt(result.error.stack, folderNames(pluginRoot)) : undefined;
  if (!result.ok) process.stderr.write(`${printableText(`${result.error.code}: ${inCliTerms(result.error.message)}${where ? ` (at ${where})` : ''}`, { keepNewlines: true })}${commandLineHint(result.error, grantIn)}\n`);
  // Kept: without --json (meta), where it is would be said nowhere.
  // The path on one line, as typed (a root with a newline or an escape sequence in its name is written out).
  if (!json && result.meta.workspaceDir) process.stderr.write(`workspace kept at ${printableText(result.meta.workspaceDir)}\n`);
  return printed;
}

/** A folder by the names its files' stacks may use: as given, and where its links lead (an ES module's URL is its real path). */
function folderNames(folder: string): string[] {
  try {
    const real = realpathSync(folder);
    return real === folder ? [folder] : [folder, real];
  } catch {
    return [folder];
  }
}

/** `value` as JSON on stdout; one that JSON cannot hold (longer than a string can be, or nested deeper than the stack goes) is said on stderr as a VALIDATION_ERROR instead, and false returned. */
function writeJson(value: unknown): boolean {
  let text: string;
  try {
    text = terminalSafeJson(printableJson(value, 2));
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    const why = /call stack/i.test(error.message) ? `it is nested too deeply (${error.message})` : `it is too large (its JSON is longer than the longest string Node makes, ${constants.MAX_STRING_LENGTH} characters)`;
    process.stderr.write(`VALIDATION_ERROR: handler result cannot be printed as JSON: ${why}\n`);
    return false;
  }
  // Apart: a text as long as a string can be has no room for the line break.
  process.stdout.write(text);
  process.stdout.write('\n');
  return true;
}

const BACKEND_TYPES: readonly BuiltInBackendType[] = ['in-process', 'worker-pool', 'subprocess', 'queue'];

export function backendType(given: string | undefined): BuiltInBackendType {
  if (given === undefined) return 'in-process';
  if ((BACKEND_TYPES as readonly string[]).includes(given)) return given as BuiltInBackendType;
  const near = nearest(given, BACKEND_TYPES);
  throw new UsageError(`--backend must be one of ${BACKEND_TYPES.join(', ')}, got "${given}"${near ? `; did you mean "${near}"?` : ''}`);
}

/** `--context`: a context descriptor is an object; `null` would silently be taken as no context at all. */
async function readContext(value: string): Promise<Record<string, unknown>> {
  const context = await readJson(value, 'context');
  if (context === null || typeof context !== 'object' || Array.isArray(context)) {
    throw new UsageError(`--context must be a JSON object (a context descriptor such as {"requestId":"r-1"}), got ${context === null ? 'null' : Array.isArray(context) ? 'an array' : typeof context}`);
  }
  return context as Record<string, unknown>;
}

/** `--grant`: checked here, so that a mistake in it is said as one in --grant, not in backend options the user never wrote. */
export async function readGrant(value: string): Promise<PermissionSpec> {
  const grant = await readJson(value, 'grant');
  const schema = permissionSpecSchema();
  const parsed = schema.safeParse(grant);
  if (parsed.success) return parsed.data;
  const lines = issuesOf(parsed.error, '', schema).map((issue) => `  - ${issue.path || '(the grant)'}: ${issue.message}`);
  throw new UsageError(`--grant is not a permissions object ({ platform, fs, env, network, childProcess }):\n${lines.join('\n')}`);
}

export async function readJson(value: string | undefined, what: string): Promise<unknown> {
  if (value === undefined) return undefined;
  const text = value.startsWith('@') ? await readArgumentFile(value.slice(1), what) : value;
  try {
    return JSON.parse(text);
  } catch (error) {
    const source = value === '@-' ? ' (standard input)' : value.startsWith('@') ? ` (${path.resolve(value.slice(1))})` : '';
    // A bare word (`--input Ada`) is a string the shell took the quotes off: say how to keep them.
    const quote = what === 'input' && !value.startsWith('@') && /^[A-Za-z_]/.test(text.trim()) && !/^(true|false|null)\b/.test(text.trim()) ? `; a string goes in JSON quotes: --${what} '${JSON.stringify(text)}'` : '';
    throw new UsageError(`--${what}${source} is not valid JSON: ${jsonSyntaxProblem(text, error, what === 'input' ? '' : `--${what}`)}${quote}`);
  }
}

/** The file of `--<what> @<file>` (`@-`: standard input): one that cannot be read is a usage error naming it. */
async function readArgumentFile(file: string, what: string): Promise<string> {
  // At most one flag reads it: two are refused before anything is read (repeatedFlagMessage).
  if (file === '-') {
    return readStandardInput(what).catch((error: unknown) => {
      if (error instanceof StoppedWhileReading) throw error;
      throw new UsageError(`--${what} @-: cannot read standard input: ${(error as Error)?.message ?? String(error)}`);
    });
  }
  if (file === '') throw new UsageError(`--${what} @: no file name after the @ (@<file> reads a file, @- standard input)`);
  try {
    return await readUpTo(createReadStream(file), constants.MAX_STRING_LENGTH);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new UsageError(`--${what} @${file}: cannot read ${path.resolve(file)}: ${reason}`);
  }
}

/** A stop signal came while the command line's values were still being read. */
export class StoppedWhileReading extends Error {
  constructor(readonly signal: StopSignal) {
    super(`stopped by ${signal} while reading standard input`);
  }
}

/**
 * All of standard input, as text; a stop signal meanwhile (nobody is typing it) ends the read with
 * StoppedWhileReading. At a terminal it says first what it waits for: the command would seem hung.
 */
async function readStandardInput(what: string): Promise<string> {
  let stoppedBy: StopSignal | undefined;
  // Listening before process.stdin is first touched: that makes its stream (a pipe turns
  // non-blocking), and a signal that came between the two would end the process by its default.
  const remove = onStopSignals((signal) => {
    stoppedBy ??= signal;
    process.stdin.destroy();
  });
  if (process.stdin.isTTY) process.stderr.write(`reading --${what} from the terminal: type it, then Ctrl-D on a line of its own (Ctrl-Z, Enter on Windows)\n`);
  let text = '';
  try {
    text = await readUpTo(process.stdin, constants.MAX_STRING_LENGTH);
  } catch (error) {
    if (!stoppedBy) throw error;
  } finally {
    remove();
  }
  if (stoppedBy) throw new StoppedWhileReading(stoppedBy);
  return text;
}

/**
 * `--platform <module>`: a host module (a file, or a package resolved from the working directory)
 * whose `platform` export — or default export — is the services object, or a function (sync or
 * async) that returns it.
 */
async function loadPlatform(spec: string): Promise<Platform> {
  const file = path.resolve(spec);
  let url: string;
  if (existsSync(file)) url = pathToFileURL(file).href;
  else {
    try {
      url = pathToFileURL(createRequire(path.join(process.cwd(), 'noop.js')).resolve(spec)).href;
    } catch {
      throw new UsageError(`--platform: no file or package "${spec}" (from ${process.cwd()})`);
    }
  }
  let mod: { platform?: unknown; default?: unknown };
  try {
    mod = (await import(url)) as typeof mod;
  } catch (error) {
    throw new UsageError(`--platform: ${spec} failed to load: ${loadFailure(error)}`);
  }
  // A CommonJS module's `module.exports = { platform }` comes as the default export alone.
  const commonJs = mod.default as { platform?: unknown } | null | undefined;
  const exported = mod.platform ?? (commonJs !== null && typeof commonJs === 'object' && 'platform' in commonJs ? commonJs.platform : mod.default);
  let services: unknown;
  try {
    services = typeof exported === 'function' ? await (exported as () => unknown)() : exported;
  } catch (error) {
    throw new UsageError(`--platform: the function ${spec} exports threw: ${loadFailure(error)}`);
  }
  if (services === null || typeof services !== 'object') {
    // A `platform` (or default) export that is there but no object: say what it is, not a name to rename.
    const said = exported === undefined && !('platform' in mod) ? exportsSaid(mod) : ` (${typeof exported === 'function' ? 'the function it exports returned' : 'it exports'} ${services == null ? String(services) : `a ${typeof services}`})`;
    throw new UsageError(`--platform: ${spec} must export \`platform\` (or a default export): an object of services, or a function that returns one${said}`);
  }
  return services as Platform;
}

/** What a --platform module exports instead, for the refusal: " (it exports `platfrom`; rename `platfrom` to `platform`)", or " (it exports nothing)". */
function exportsSaid(mod: object): string {
  const names = Object.keys(mod).filter((name) => name !== 'default');
  if (names.length === 0) return 'default' in mod ? '' : ' (it exports nothing)';
  const near = nearest('platform', names);
  return ` (it exports ${names.slice(0, 5).map((name) => `\`${name}\``).join(', ')}${names.length > 5 ? ', …' : ''}${near ? `; rename \`${near}\` to \`platform\`` : ''})`;
}
