#!/usr/bin/env node
import { existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { WorkspaceManager } from '@kb-labs/plugin-execution-core';
import { nearest } from '@kb-labs/plugin-execution-core/host-kit';
import { printVersion } from './cli-version.js';
import { emptyFlag, emptyFlagMessage, joinNegativeValues, repeatedFlagMessage, unexpandedHomeMessage } from './flag-values.js';
import { initCommand } from './init-command.js';
import { inCliTerms } from './nats-flags.js';
import { handlerIdsOf } from './plugin-folders.js';
import { RUN_OPTIONS, UsageError, runCommand } from './run-command.js';
import { VALIDATE_FLAGS, validateCommand } from './validate-command.js';
import { WORKER_OPTIONS, WORKER_USAGE, WorkerUsageError, runWorkerCommand } from './worker-command.js';
import { endProcess } from './stop-signals.js';
import { printableText } from './terminal-text.js';

/** The command lines, one per command (`worker`'s options are its own help). */
const SYNOPSIS = {
  run: `  kb-plugin-exec run <plugin-dir> <handler> [options]`,
  validate: `  kb-plugin-exec validate <plugin-dir> [<plugin-dir> …] [--backend <type>] [--json]`,
  init: `  kb-plugin-exec init <dir>`,
  sweep: `  kb-plugin-exec sweep [--workspace-root <dir>] [--foreign-older-than <ms>]`,
  worker: `  kb-plugin-exec worker --nats <url> --plugins <dir> [<dir> …] [options]   (see: worker --help)`,
};

const RUN_TEXT = `Runs one handler of the plugin in <plugin-dir> (a folder with kb.plugin.json) and prints what it
returned as JSON on stdout (the whole result, with meta, with --json); stdout holds nothing else
(what an in-process handler or a --platform module prints goes to stderr). Exits 0 on success; on
failure prints "<CODE>: <message>" on stderr and exits 1 (2 for a usage error, a <plugin-dir>
that does not exist or has no kb.plugin.json included; 130/143/129 when SIGINT/SIGTERM/SIGHUP (its
terminal closed: it ends by the signal once done) stopped it: the execution is aborted and its workspace removed). A handler that
ends this process (in-process: process.exit(), an uncaught exception or rejection) is a failure:
WORKER_CRASHED.
What JSON has no form for is printed as: nothing returned (undefined) as null (with --json: no
data key), a Map as [key, value] pairs, a Set as an array, an
Error as { name, message, stack, cause }, typed arrays and Buffers as arrays of numbers, a
BigInt as "10n", NaN and ±Infinity as strings, a reference back to an object it is inside as
"[Circular: <path>]" (the path in the printed JSON, $ its top), an array with holes as
{ "[sparse array]": { "length": <n>, "items": { "<index>": <value>, … } } }. A result too large
(or too deeply nested) to print as JSON fails: "VALIDATION_ERROR: handler result cannot be
printed as JSON: …" on stderr, nothing on stdout, exit 1; so does a result stdout cannot take
(a full disk: "ERROR: standard output could not take …", exit 1).
`;

const VALIDATE_TEXT = `validate checks each <plugin-dir> without running a handler: its kb.plugin.json (each bad field
named by its path, the permissions included), and that each handler's module exists, loads and
exports what the manifest names (HANDLER_NOT_FOUND with the export it may mean). The modules load
on --backend, as run loads them: in-process | worker-pool | subprocess (default: in-process, where a
module's top-level code runs in this process, as with run, and one that blocks the loop as it loads
ends the process past the handler's time limit: TIMEOUT, 137); a queue's handlers load on its workers:
validate with the backend they run. Prints a line per plugin on stdout, "<plugin-dir>: ok (…)", or
its problems, one a line under it (with --json: { ok, backend, plugins: [{ dir, pluginId, version,
ok, handlers, problems: [{ handlerId, code, message, details }] }] }). Exits 0 when every plugin is
valid, 1 otherwise, 2 for a usage error (a <plugin-dir> that does not exist or has no kb.plugin.json).
`;

const INIT_TEXT = `init <dir> creates a plugin there (manifest, one handler, a test) that runs as created, and says
how to add the package with the project's package manager when none is installed above <dir>.
`;

const SWEEP_TEXT = `sweep removes the directories a killed host left under <dir> (default: the backends' default
root, <OS temp dir>/kb-plugin-workspaces-<uid>), and prints what it did as JSON ({ removed,
failed, foreign, kept }; exit 1 when one could not be removed, and for a <dir> given that does
not exist: a mistyped root is not "nothing left"); workspaces kept with --keep-workspace stay.
Directories another machine or container sharing <dir> made are kept ("foreign"), unless
--foreign-older-than <ms> is given and they have not changed for that long.
`;

const RUN_OPTIONS_TEXT = `Options for run:
  --backend <type>          in-process | worker-pool | subprocess | queue   (default: in-process)
  --nats <url>              queue: the NATS server(s), comma-separated     (default: nats://127.0.0.1:4222)
  --pool <name>             queue: the worker pool                         (default: default)
  --prefix <subjects>       queue: subject prefix, as the workers' --prefix (default: kbexec)
  --max-payload-bytes <n>   queue: the largest input, result or event, as the workers'
                            --max-payload-bytes, 1024 to 1073741824     (default: 20971520, 20 MiB)
  --creds, --nkey, --tls-ca, --tls-cert, --tls-key <file>
                            queue: credentials and TLS, as for worker (worker --help); a user
                            and password or a token from NATS_USER/NATS_PASSWORD or NATS_TOKEN
  --input <json|@file|@->   handler input (@-: standard input)       (default: none)
  --context <json|@file|@-> context descriptor, a JSON object        (default: { host: { kind: "cli" } };
                            nothing of the command line: its flag values may be secrets)
  --grant <json|@file|@->   permissions granted to the handler       (default: none)
  --platform <module>       a module exporting the host's services (\`platform\`, or default;
                            an object or a function returning one)   (default: none)
  --timeout <ms>            time limit                               (default: manifest, else 30000)
  --workspace-root <dir>    where execution directories go  (default: <OS temp dir>/kb-plugin-workspaces-<uid>)
  --no-workspace            run without a workspace directory (not with --workspace-root
                            or --keep-workspace)
  --keep-workspace          keep the workspace; its path is in meta (--json), else on stderr
  --logs                    print the handler's log lines on stderr, one line each (their
                            control characters written out: \\n, \\x1b)
  --json                    print the whole result ({ ok, data | error, meta }) on stdout
  --version                 print the version
  -h, --help                show this help
`;

const USAGE = `Usage:\n${Object.values(SYNOPSIS).join('\n')}\n\n${RUN_TEXT}${VALIDATE_TEXT}${INIT_TEXT}${SWEEP_TEXT}\n${RUN_OPTIONS_TEXT}`;

/** `<command> --help` and `help <command>`: that command's part of the help. */
const COMMAND_HELP: Record<string, string> = {
  run: `Usage:\n${SYNOPSIS.run}\n\n${RUN_TEXT}\n${RUN_OPTIONS_TEXT}`,
  validate: `Usage:\n${SYNOPSIS.validate}\n\n${VALIDATE_TEXT}`,
  init: `Usage:\n${SYNOPSIS.init}\n\n${INIT_TEXT}`,
  sweep: `Usage:\n${SYNOPSIS.sweep}\n\n${SWEEP_TEXT}`,
};

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'worker') return runWorkerCommand(argv.slice(1));
  const args = joinNegativeValues(argv, RUN_OPTIONS);
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: RUN_OPTIONS });
  const empty = emptyFlag(values);
  if (empty) throw new UsageError(emptyFlagMessage(empty));
  const repeated = repeatedFlagMessage(args, RUN_OPTIONS);
  if (repeated) throw new UsageError(repeated);
  const home = unexpandedHomeMessage(values);
  if (home) throw new UsageError(home);
  const [command, ...rest] = positionals;
  if (values.version) return printVersion();
  if (values.help || command === 'help') {
    const topic = command === 'help' ? rest[0] : command;
    // `help worker` as `worker --help`.
    if (topic === 'worker') return runWorkerCommand(['--help']);
    // `help rnu`: not the whole help and exit 0, as if it had been understood.
    if (topic !== undefined && topic !== 'help' && !Object.hasOwn(COMMAND_HELP, topic)) throw new UsageError(unknownCommand(topic));
    process.stdout.write((topic !== undefined && Object.hasOwn(COMMAND_HELP, topic) ? COMMAND_HELP[topic] : undefined) ?? USAGE);
    return 0;
  }
  // A usage error as any other: on stderr, the synopsis, exit 2.
  if (!command) throw new UsageError('give a command: run, validate, init, sweep or worker');
  if (command === 'sweep') {
    extraArguments('sweep', rest, 0);
    onlyFlags('sweep', values, ['workspace-root', 'foreign-older-than']);
    return sweepCommand(values['workspace-root'], values['foreign-older-than']);
  }
  if (command === 'validate') {
    if (rest.length === 0) throw new UsageError('validate needs <plugin-dir> (one or more)');
    onlyFlags('validate', values, VALIDATE_FLAGS);
    return validateCommand(rest, values);
  }
  if (command === 'init') {
    if (!rest[0]) throw new UsageError('init needs <dir>');
    extraArguments('init <dir>', rest, 1);
    onlyFlags('init', values, []);
    return initCommand(rest[0], (message) => new UsageError(message));
  }
  if (command !== 'run') throw new UsageError(unknownCommand(command));
  onlyFlags('run', values, Object.keys(RUN_OPTIONS).filter((flag) => flag !== 'foreign-older-than'));
  const [pluginDir, handlerId] = rest;
  if (!pluginDir || !handlerId) {
    const handlers = pluginDir ? handlerIdsOf(pluginDir) : [];
    throw new UsageError(`run needs <plugin-dir> and <handler>${handlers.length ? ` (the handlers of ${pluginDir}: ${handlers.slice(0, 20).join(', ')}${handlers.length > 20 ? ', …' : ''})` : ''}`);
  }
  extraArguments('run <plugin-dir> <handler>', rest, 2, rest[2]?.trim().startsWith('{') || rest[2]?.trim().startsWith('[') ? '; an input goes after --input' : '');
  return runCommand(pluginDir, handlerId, values);
}

/** A flag of another command is refused, not ignored (`init … --backend subprocess` does nothing with it). */
function onlyFlags(command: string, values: Record<string, unknown>, takes: readonly string[]): void {
  const other = Object.keys(values).find((flag) => values[flag] !== undefined && !takes.includes(flag));
  if (other === undefined) return;
  const what = takes.length ? `it takes ${takes.map((flag) => `--${flag}`).join(', ')}` : 'it takes none';
  throw new UsageError(`--${other} is not an option of ${command} (${what})`);
}

/** Arguments past what `usage` takes are refused, not ignored (an input given without --input, say). */
function extraArguments(usage: string, rest: string[], takes: number, hint = ''): void {
  if (rest.length > takes) throw new UsageError(`${usage} takes no more arguments, got ${rest.slice(takes).map((a) => JSON.stringify(a)).join(' ')}${hint}`);
}

async function sweepCommand(given: string | undefined, foreignOlderThan: string | undefined): Promise<number> {
  // Without --workspace-root, the root every backend uses by default (nothing there yet: nothing to sweep).
  // A file: URL is taken as the backends take it (the manager makes it a path).
  const manager = given === undefined ? WorkspaceManager.default() : new WorkspaceManager({ root: given });
  const root = manager.root;
  const foreignOlderThanMs = foreignOlderThan === undefined ? undefined : /^\d+$/.test(foreignOlderThan) ? Number(foreignOlderThan) : NaN;
  if (foreignOlderThanMs !== undefined && !Number.isSafeInteger(foreignOlderThanMs)) {
    throw new UsageError(`--foreign-older-than must be a whole number of milliseconds, got "${foreignOlderThan}"`);
  }
  // A mistyped root would otherwise report, truthfully but unhelpfully, that nothing was removed.
  if (given !== undefined && !existsSync(root)) {
    process.stderr.write(`WORKSPACE_ERROR: --workspace-root ${printableText(root)} does not exist: nothing to sweep\n`);
    return 1;
  }
  if (given !== undefined && !statSync(root).isDirectory()) throw new UsageError(`--workspace-root ${printableText(root)} is not a folder`);
  const result = await manager.sweep(foreignOlderThanMs === undefined ? {} : { foreignOlderThanMs });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  return result.failed.length ? 1 : 0;
}

function unknownCommand(command: string): string {
  const near = nearest(command, ['run', 'validate', 'init', 'sweep', 'worker']);
  return `unknown command "${command}"${near ? `; did you mean "${near}"?` : ''}`;
}

/** node:util parseArgs's words for a command line it cannot take. */
const PARSE_ERRORS = new Set(['ERR_PARSE_ARGS_UNKNOWN_OPTION', 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE', 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL']);

/**
 * The command is done: exit once stdout and stderr have taken what was written. Not by waiting
 * for the event loop to empty: an in-process handler's leftover timer (or one still running after
 * its abort) would keep the process alive after its result. Output stdout could not take (a full
 * disk under `> result.json`) is lost: said, and a failure (exit 1), not a silent exit 0.
 */
function exit(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => {
    // The stream's own error (a later write's is only "destroyed"); EPIPE, a reader gone, is no failure.
    const lost = process.stdout.errored as NodeJS.ErrnoException | null;
    const failed = lost !== null && lost.code !== 'EPIPE';
    const final = failed && code === 0 ? 1 : code;
    process.exitCode = final;
    process.stderr.write(failed ? `ERROR: standard output could not take what the command printed (${lost.message}): it is lost\n` : '', () => endProcess(final));
  });
}

// A reader that went away (`| head -c 1`) is not the command's failure: what it did not read is
// dropped, and the exit code stays the command's own (Node would otherwise die of the EPIPE).
// Nor is another write error a crash (a worker serves on): stdout's is said as the command ends.
process.stdout.on('error', () => {});
// Where stderr fails, nothing can be said.
process.stderr.on('error', () => {});

let settled = false;
// The event loop empty with the command still pending (a --platform factory whose promise never
// settles, and nothing else to wait for) is a failure, said, not a silent exit 0.
process.once('beforeExit', () => {
  if (settled) return;
  process.exitCode = 1;
  process.stderr.write("ERROR: the command ended with its work still pending (a promise that never settles, such as a --platform factory's, and nothing left to wait for)\n");
});
main(process.argv.slice(2)).then(
  (code) => {
    settled = true;
    exit(code);
  },
  (error: unknown) => {
    settled = true;
    exit(reportFailure(error));
  },
);

/** parseArgs's "Unknown option '--inptu'. To specify a positional argument …" as what it means, with the option meant. */
function usageMessage(error: Error & { code?: string }, worker: boolean): string {
  const name = error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(-{1,2}[^']+)'/.exec(error.message)?.[1] : undefined;
  if (!name) return error.message;
  const bare = name.replace(/^-+/, '');
  // An option of the other command (`run --concurrency`, `worker --input`): said where it goes.
  const other = worker ? RUN_OPTIONS : WORKER_OPTIONS;
  if (Object.hasOwn(other, bare)) return `unknown option ${name}: it is an option of \`kb-plugin-exec ${worker ? 'run' : 'worker'}\``;
  const known = Object.keys(worker ? WORKER_OPTIONS : RUN_OPTIONS);
  const near = nearest(bare, known) ?? widened(bare, known);
  return `unknown option ${name}${near ? `; did you mean --${near}?` : ''}`;
}

/** The option `bare` is with a word added (`--timeout-ms`, `--input-file`, `--drain-timeout-ms`): the longest one it starts with. */
function widened(bare: string, known: readonly string[]): string | undefined {
  return known.filter((option) => bare.startsWith(`${option}-`)).sort((a, b) => b.length - a.length)[0];
}

/** Say why the command failed; the exit code: 2 for a usage error, else 1. */
function reportFailure(error: unknown): number {
  if (error instanceof UsageError || error instanceof WorkerUsageError || PARSE_ERRORS.has((error as { code?: string })?.code ?? '')) {
    // The error, the synopsis and where the rest is: a usage error should not scroll off under the whole help.
    const worker = process.argv[2] === 'worker';
    const usage = worker ? WORKER_USAGE : USAGE;
    const help = worker ? 'kb-plugin-exec worker --help' : 'kb-plugin-exec --help';
    process.stderr.write(`${shownMessage(usageMessage(error as Error & { code?: string }, worker))}\n\n${usage.slice(0, usage.indexOf('\n\n') + 1)}\n${help} lists the options.\n`);
    return 2;
  }
  const e = error as { code?: string; name?: string; problem?: string; message?: string };
  // A worker's server problem (a QueueServerError) has no execution error code: its kind is one,
  // QUEUE_SERVER_UNREACHABLE, …_AUTH_FAILED, …_NO_JETSTREAM (worker --help lists them).
  const serverProblem = e?.name === 'QueueServerError' && e.problem ? `QUEUE_SERVER_${e.problem.toUpperCase().replaceAll('-', '_')}` : undefined;
  const label = e?.code ?? serverProblem ?? (e?.name && e.name !== 'Error' ? e.name : 'ERROR');
  process.stderr.write(`${label}: ${shownMessage(e?.message ?? String(error))}\n`);
  return 1;
}

/**
 * A failure's message as the terminal is shown it: it may quote what a plugin folder holds (a
 * manifest's keys, a file's name), so its control characters are written out (`\x1b`, `\u009b`,
 * `\u202e`), its line breaks kept.
 */
function shownMessage(message: string): string {
  return printableText(inCliTerms(message), { keepNewlines: true });
}
